"""Optional sampling profiles of the services while a benchmark runs (py-spy, if named)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from devstack.stack import Stack


def start_profilers(stack: Stack, services: list[str]) -> list[subprocess.Popen[bytes]]:
    """With BENCH_PROFILE=<py-spy binary>, record each service's profile in the temp folder."""
    py_spy = os.environ.get("BENCH_PROFILE")
    if not py_spy:
        return []
    return [
        subprocess.Popen(  # noqa: S603 - a binary the person running the bench named
            [
                py_spy,
                "record",
                "--subprocesses",
                "--rate",
                "100",
                "--format",
                "speedscope",
                "-o",
                str(Path(tempfile.gettempdir()) / f"bench-{name}.json"),
                "--pid",
                str(stack.services[name].pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in services
    ]


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    """Stop recording; each profile is written as its recorder exits."""
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
        profiler.wait()
