"""Audit's handlers on the in-memory broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from audit.data_map import DATA_MAP
from audit.handlers import create_routes
from devstack.testing import HandlerHarness, RecordingParticipant
from shared.contracts import (
    AccessActor,
    AccessPurpose,
    DataAccessed,
    Envelope,
    ExportRequested,
    PurgeRequested,
)
from shared.telemetry import create_telemetry


class _Trail:
    def __init__(self) -> None:
        self.recorded: list[Envelope[DataAccessed]] = []
        self.purged: list[PurgeRequested] = []

    async def record_accesses(self, events: list[Envelope[DataAccessed]], work: Any) -> None:
        self.recorded.extend(events)

    async def record_legal_hold(self, event: Envelope[Any], work: Any) -> None:
        self.recorded.append(event)

    async def note_purged(self, request: PurgeRequested, work: Any) -> None:
        self.purged.append(request)


def _harness() -> tuple[HandlerHarness, _Trail, RecordingParticipant]:
    trail, participant = _Trail(), RecordingParticipant(DATA_MAP)
    routes = create_routes(
        service=trail,  # type: ignore[arg-type]
        participant=participant.kit,
        telemetry=create_telemetry("audit"),
    )
    return HandlerHarness(routes, service="audit"), trail, participant


@pytest.mark.clause("PURPOSE", "STAFF-ACCESS")
async def test_staff_access_each_data_access_is_recorded_once_with_its_actor_opened() -> None:
    """STAFF-ACCESS, PURPOSE: the handler gets the access with the actor's name readable."""
    harness, trail, _ = _harness()
    access = DataAccessed(
        account_id=uuid4(),
        access_id=uuid4(),
        actor=AccessActor.STAFF,
        actor_id="s-1",
        actor_name="Sam Support",
        purpose=AccessPurpose.SUPPORT,
        reason="TICKET-1",
        grant_id=uuid4(),
        resource_type="customer",
        resource_id="c-1",
        accessed_at=datetime.now(UTC),
    )
    await harness.deliver((access, "billing"), repeat=3)
    assert [e.data for e in trail.recorded] == [access]
    assert harness.dead == []


@pytest.mark.clause("TERMINATION")
async def test_termination_audit_exports_and_purges_through_the_kit() -> None:
    """After the kit's purge, audit notes the account as purged (its links stay)."""
    harness, trail, participant = _harness()
    export = ExportRequested(account_id=uuid4(), saga_id=uuid4())
    purge = PurgeRequested(account_id=export.account_id, saga_id=export.saga_id)
    await harness.deliver((export, "retention"), (purge, "retention"))
    assert participant.calls == [("export", export), ("purge", purge)]
    assert trail.purged == [purge]
