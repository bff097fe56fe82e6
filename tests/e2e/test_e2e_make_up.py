"""`make up`'s command: everything starts, Ctrl-C stops everything, and the data survives."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devstack.processes import free_port, port_is_open, wait_until
from devstack.stack import SERVICES

pytestmark = [pytest.mark.e2e, pytest.mark.system]  # `make test-system`


def _up(var_dir: Path, ports: dict[str, int], log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "devstack.cli", "up", "--var-dir", str(var_dir)]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    return subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _wait_running(process: subprocess.Popen[bytes], log: Path) -> None:
    def running() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"up exited:\n{log.read_text()}")
        return "Quittance is running" in log.read_text()

    wait_until(running, timeout=120, what="make up")


def _interrupt(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    return process.wait(timeout=60)


def test_up_serves_stops_cleanly_on_ctrl_c_and_keeps_its_data(tmp_path: Path) -> None:
    names = [
        "postgres",
        "kafka",
        "smtp",
        "mail-web",
        "payment-gateway",
        "dashboard",
        *(spec.name for spec in SERVICES),
    ]
    ports = {name: free_port() for name in names}
    log = tmp_path / "up.log"
    billing = f"http://127.0.0.1:{ports['billing']}"

    first = _up(tmp_path / "var", ports, log)
    try:
        _wait_running(first, log)
        for spec in SERVICES:
            assert f"http://127.0.0.1:{ports[spec.name]}" in log.read_text()
            health = httpx.get(f"http://127.0.0.1:{ports[spec.name]}/healthz", timeout=10)
            assert health.status_code == 200, spec.name
        assert httpx.get(f"http://127.0.0.1:{ports['mail-web']}/", timeout=10).status_code == 200
        gateway = f"http://127.0.0.1:{ports['payment-gateway']}"
        assert gateway in log.read_text()
        assert httpx.get(f"{gateway}/healthz", timeout=10).status_code == 200
        dashboard = f"http://127.0.0.1:{ports['dashboard']}"
        printed = re.search(
            rf"{re.escape(dashboard)}\s+\(staff: (\S+), password: (\S+)\)", log.read_text()
        )
        assert printed, "the dashboard's address, its staff member and password are printed"
        signed_in = httpx.post(
            f"{dashboard}/sign-in",
            data={"email": printed.group(1), "password": printed.group(2)},
            timeout=30,
        )
        assert signed_in.status_code == 303, "the printed staff member signs in"
        opened = httpx.post(
            f"{billing}/accounts",
            timeout=10,
            json={
                "name": "Durable Ltd",
                "owner": {"name": "Ada", "email": "ada@durable.example.com"},
            },
        )
        assert opened.status_code == 201
    finally:
        assert _interrupt(first) == 0
    assert "stopped." in log.read_text()
    time.sleep(0.5)
    assert [name for name, port in ports.items() if port_is_open(port)] == [], "all stopped"

    log = tmp_path / "up-again.log"
    second = _up(tmp_path / "var", ports, log)
    try:
        _wait_running(second, log)
        account = httpx.get(
            f"{billing}/account",
            timeout=10,
            headers={"Authorization": f"Bearer {opened.json()['api_key']}"},
        )
        assert account.status_code == 200
        assert account.json()["name"] == "Durable Ltd"
    finally:
        assert _interrupt(second) == 0
