"""Scale-out: `scaleout_consumer_speedup`, emails per second of two notifications instances in
one consumer group over one instance, measured in one run on the same servers.

Each instance is a uvicorn worker process of its own (`serve --workers N`), with its own
consumer in the group `notifications`; the group splits the partitions of `invoice.issued`
between them. The load and the timing are the notifications bench's (`emails_per_s`): sealed
invoice events over 20 accounts, timed to the last email accepted by an SMTP sink in this
process. The baseline is the one-instance rate; the ratio is the speedup.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from unittest import mock

from bench.notifications import Sink, _emails_per_s, _settings
from devstack.stack import Stack
from notifications.settings import NotificationsSettings

Result = tuple[str, float, str, str, float]


async def _rate(stack: Stack, sink: Sink, instances: int) -> float:
    """Emails per second with this many instances of notifications."""
    env = _settings(stack, sink)
    original = stack.service_env

    def with_sink(service: str) -> dict[str, str]:
        return env if service == "notifications" else original(service)

    stack.service_env = with_sink  # type: ignore[method-assign]
    try:
        await asyncio.to_thread(stack.start_service, "notifications", workers=instances)
    finally:
        del stack.service_env
    try:
        with mock.patch.dict(os.environ, env):
            settings = NotificationsSettings()
        rate, count = await _emails_per_s(settings, sink)
        print(
            f"# scale-out bench: {instances} instance(s): {count} emails, {rate:.1f}/s",
            file=sys.stderr,
            flush=True,
        )
        return rate
    finally:
        stack.stop_services()


async def bench_scaleout(stack: Stack) -> list[Result]:
    """One instance, then two, on a fresh topic namespace each."""
    sink = Sink()
    sink.start()
    try:
        rates = {}
        for instances in (1, 2):
            stack.topic_prefix = f"bench{uuid.uuid4().hex[:6]}."
            stack.database_suffix = f"_scale{instances}{uuid.uuid4().hex[:4]}"
            await asyncio.to_thread(stack.create_databases, ["notifications", "keystore"])
            await asyncio.to_thread(stack.migrate, "notifications")
            await asyncio.to_thread(stack.create_topics)
            rates[instances] = await _rate(stack, sink, instances)
    finally:
        sink.stop()
        stack.database_suffix = ""
    return [
        (
            "scaleout_consumer_speedup",
            rates[2],
            "emails/s with two instances",
            "emails_per_s_one_instance",
            rates[1],
        )
    ]
