"""The runtime's shutdown: a background job that will not stop does not hold the service up."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from shared import runtime as runtime_module
from shared.runtime import create_runtime
from shared.settings import ServiceSettings


async def test_a_background_job_that_ignores_cancellation_is_left_behind_at_shutdown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Otherwise the consumers never leave their group, and the next instance waits on it."""
    runtime = create_runtime(
        "billing",
        ServiceSettings(
            environment="development", database_url="postgresql+asyncpg://x@127.0.0.1:1/x"
        ),
        topics=[],
        configure_logs=False,
    )
    monkeypatch.setattr(runtime_module, "BACKGROUND_STOP_S", 0.2)
    relay_stopped = asyncio.Event()

    async def stop_relay() -> None:
        relay_stopped.set()

    monkeypatch.setattr(runtime.relay, "stop", stop_relay)

    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    async def polite() -> None:
        await asyncio.sleep(3600)

    stuck = asyncio.create_task(stubborn(), name="stubborn")
    runtime._tasks.extend([stuck, asyncio.create_task(polite(), name="polite")])
    await asyncio.sleep(0)
    await asyncio.wait_for(runtime.stop_background(), timeout=5)
    assert relay_stopped.is_set()
    assert "background job stubborn did not stop" in caplog.text
    assert "polite" not in caplog.text
    released.set()  # the test's own cleanup
    await stuck
