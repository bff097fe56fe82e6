"""PLAN-RETENTION: the scheduled sweep on the real database and broker, with two instances."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from devstack.testing import eventually, produce, read_events, running, sealed
from retention.main import create_app
from retention.settings import RetentionSettings
from shared.contracts import AccountPlanChanged, new_envelope
from shared.signing import SigningKey

pytestmark = [pytest.mark.integration, pytest.mark.clause("PLAN-RETENTION")]


@pytest.fixture(scope="module")
def settings(service_env: Callable[[str], dict[str, Any]]) -> RetentionSettings:
    return RetentionSettings(
        **service_env("retention"),
        certificate_key="test-certificate-key",  # type: ignore[arg-type]
        certificate_signing_key=SigningKey.generate().private_pem(),  # type: ignore[arg-type]
        sweep_every_s=0.5,
        sweep_check_interval_s=0.1,
    )


@pytest.mark.clause("PLAN-RETENTION")
async def test_plan_retention_each_scheduled_sweep_runs_once_across_two_instances(
    settings: RetentionSettings,
) -> None:
    """Two instances look for the due sweep ten times a second; each half-second slot is
    taken by one of them, and the account is asked once per slot, never twice."""
    account_id = uuid.uuid4()
    envelope = new_envelope(
        AccountPlanChanged(account_id=account_id, plan="enterprise", changed_at=datetime.now(UTC)),
        source="billing",
    )
    await produce(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic(envelope.type),
        await sealed(envelope, settings.keystore),
        key=envelope.subject.encode(),
        headers=[("content-type", b"application/json")],
    )
    database = settings.database_url.replace("+asyncpg", "")

    async def known() -> bool:
        connection = await asyncpg.connect(database)
        try:
            plan = await connection.fetchval(
                "SELECT plan FROM account_plan WHERE account_id = $1", account_id
            )
        finally:
            await connection.close()
        return plan == "enterprise"

    async def sweep_ids(since: datetime, until: datetime | None = None) -> list[uuid.UUID]:
        connection = await asyncpg.connect(database)
        try:
            rows = await connection.fetch(
                "SELECT id FROM retention_sweep WHERE slot >= $1 AND ($2::timestamptz IS NULL"
                " OR slot < $2) ORDER BY slot",
                since,
                until,
            )
        finally:
            await connection.close()
        return [row["id"] for row in rows]

    async def asked(count: int, wait_s: float) -> list[str]:
        requests = await read_events(
            settings.kafka.bootstrap_servers,
            settings.kafka.topic("retention.sweep_requested"),
            count=count,
            key=str(account_id),
            timeout=wait_s,
        )
        return [event["data"]["sweep_id"] for event in requests]

    async with running(create_app(settings)), running(create_app(settings)):
        await eventually(known, what="retention learning the account's plan")
        began = datetime.now(UTC)

        async def three_slots_taken() -> bool:
            return len(await sweep_ids(began)) >= 3

        # However busy the machine: a fixed window once saw two sweeps when CI was loaded.
        await eventually(three_slots_taken, timeout=30, what="three half-second sweeps")
        ended = datetime.now(UTC)
        slots = await sweep_ids(began, ended)

        async def all_published() -> bool:
            # The relay publishes after the commit: wait for it before stopping the instances.
            published = set(await asked(len(slots), wait_s=1))
            return all(str(sweep_id) in published for sweep_id in slots)

        await eventually(all_published, what="each sweep's request published")
    every_slot_since = await sweep_ids(began)
    connection = await asyncpg.connect(database)
    try:
        # The database outlives the module: later tests' sweeps need not ask this account.
        await connection.execute("DELETE FROM account_plan WHERE account_id = $1", account_id)
    finally:
        await connection.close()
    assert len(slots) >= 3, "a sweep in each half-second slot"
    window = (ended - began).total_seconds()
    assert len(slots) <= window / 0.5 + 1, "one sweep per slot, not one per instance or look"
    # One more than were made: a duplicate request would show up.
    requested = await asked(len(every_slot_since) + 1, wait_s=2)
    for sweep_id in slots:
        assert requested.count(str(sweep_id)) == 1, "each sweep asks the account once"
    assert len(requested) == len(set(requested)), "no sweep asked twice"
    requests = await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("retention.sweep_requested"),
        count=1,
        key=str(account_id),
        timeout=2,
    )
    cutoffs = requests[-1]["data"]["cutoffs"]
    assert set(cutoffs) == {"delivery-log", "request-metadata"}
