"""The runtime's shutdown: a background job that will not stop does not hold the service up."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiokafka.errors import KafkaConnectionError

from shared import runtime as runtime_module
from shared.kafka import waiting_out_outages
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


async def test_a_start_up_step_waits_out_an_outage_and_nothing_else() -> None:
    """What a service's start does with each step that needs the broker: an outage is waited
    for (within a bound), any other error fails the start at once."""
    attempts: list[int] = []

    async def broker_back_on_the_third_try() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9)]")

    await waiting_out_outages("the broker", broker_back_on_the_third_try)
    assert len(attempts) == 3

    async def misconfigured() -> None:
        attempts.append(1)
        raise ValueError("no such topic prefix")

    attempts.clear()
    with pytest.raises(ValueError, match="no such topic prefix"):
        await waiting_out_outages("the broker", misconfigured)
    assert len(attempts) == 1

    async def never_back() -> None:
        raise KafkaConnectionError("Unable to bootstrap")

    with pytest.raises(KafkaConnectionError):
        await waiting_out_outages("the broker", never_back, wait_s=0.6)
