"""Billing's handlers on the in-memory broker: the participant kit exports and purges, once."""

from __future__ import annotations

from uuid import uuid4

import pytest

from billing.data_map import DATA_MAP
from billing.handlers import create_routes
from devstack.testing import HandlerHarness, RecordingParticipant
from shared.contracts import ExportRequested, PurgeRequested
from shared.telemetry import create_telemetry


@pytest.mark.clause("TERMINATION")
async def test_termination_export_and_purge_requests_reach_the_kit_once_each() -> None:
    """TERMINATION: billing's part is the kit's, driven by its data map; redeliveries skipped."""
    participant = RecordingParticipant(DATA_MAP)
    routes = create_routes(participant=participant.kit, telemetry=create_telemetry("billing"))
    harness = HandlerHarness(routes, service="billing")
    export = ExportRequested(account_id=uuid4(), saga_id=uuid4())
    purge = PurgeRequested(account_id=export.account_id, saga_id=export.saga_id)
    await harness.deliver((export, "retention"), (purge, "retention"), repeat=2)
    assert participant.calls == [("export", export), ("purge", purge)]
    assert harness.dead == []


@pytest.mark.clause("TERMINATION")
async def test_a_purge_request_not_from_retention_purges_nothing() -> None:
    """TERMINATION: only retention may ask for a purge; a forged request is dead-lettered."""
    participant = RecordingParticipant(DATA_MAP)
    routes = create_routes(participant=participant.kit, telemetry=create_telemetry("billing"))
    harness = HandlerHarness(routes, service="billing")
    await harness.deliver((PurgeRequested(account_id=uuid4(), saga_id=uuid4()), "notifications"))
    assert participant.calls == []
    assert len(harness.dead) == 1
