"""Audit against the real database and broker: the trail is appended once and tamper-evident."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from audit.main import create_app, create_service
from audit.services import AuditService
from audit.settings import AuditSettings
from devstack.testing import eventually, produce, running, sealed
from shared.contracts import (
    AccessActor,
    AccessPurpose,
    DataAccessed,
    LegalHoldPlaced,
    LegalHoldReleased,
    new_envelope,
)
from shared.db import create_engine, create_session_factory
from shared.legal_holds import LegalHolds

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(service_env: Callable[[str], dict[str, Any]]) -> AuditSettings:
    return AuditSettings(**service_env("audit"))


@pytest.fixture(scope="module")
async def audit(settings: AuditSettings) -> AsyncIterator[AuditService]:
    engine = create_engine(settings.database_url)
    service = create_service(settings, sessions=create_session_factory(engine))
    async with running(create_app(settings)):
        yield service
    await engine.dispose()


def _access(account_id: uuid.UUID, purpose: AccessPurpose, reason: str) -> Any:
    return new_envelope(
        DataAccessed(
            account_id=account_id,
            access_id=uuid.uuid4(),
            actor=AccessActor.STAFF,
            actor_id="staff-1",
            actor_name="Sam Support",
            purpose=purpose,
            reason=reason,
            grant_id=uuid.uuid4(),
            resource_type="customer",
            resource_id="c-1",
            accessed_at=datetime.now(UTC),
        ),
        source="billing",
    )


async def _publish(settings: AuditSettings, envelope: Any) -> None:
    await produce(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("data.accessed"),
        await sealed(envelope, settings.keystore),
        key=envelope.subject.encode(),
        headers=[("content-type", b"application/json")],
    )


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_each_access_is_recorded_once_with_its_purpose(
    audit: AuditService, settings: AuditSettings
) -> None:
    account_id = uuid.uuid4()
    first = _access(account_id, AccessPurpose.SUPPORT, "TICKET-1")
    await _publish(settings, first)
    await _publish(settings, first)  # redelivered
    await _publish(settings, _access(account_id, AccessPurpose.LEGAL, "COURT-ORDER-9"))
    entries = await eventually(lambda: _entries(audit, account_id, 2), what="two entries")
    assert [(e.account_seq, e.purpose, p.reason if p else None) for e, p in entries] == [
        (1, "support", "TICKET-1"),
        (2, "legal", "COURT-ORDER-9"),
    ]
    assert (await audit.verify(account_id)).finding is None


async def _entries(audit: AuditService, account_id: uuid.UUID, count: int) -> Any:
    entries = await audit.access_log(account_id)
    return entries if len(entries) >= count else None


@pytest.mark.clause("LAW")
async def test_law_placing_and_releasing_a_legal_hold_are_in_the_trail_and_known_to_audit(
    audit: AuditService, settings: AuditSettings
) -> None:
    """Each act on a hold is a chained entry naming the legal staff member, the basis and
    the reason; audit's own purge of the account would be refused while the hold stands."""
    account_id, hold_id, staff_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    placed = new_envelope(
        LegalHoldPlaced(
            account_id=account_id,
            hold_id=hold_id,
            legal_basis="Court order 2030/117",
            reason="Litigation",
            placed_by=staff_id,
            placed_by_name="Lea Legal",
            placed_at=datetime.now(UTC),
        ),
        source="billing",
    )
    await _publish_to(settings, "legal_hold.placed", placed)
    await eventually(lambda: _entries(audit, account_id, 1), what="the placing recorded")
    guard = LegalHolds(create_engine(settings.database_url))
    try:
        assert await guard.purge_blocked(account_id) is not None, "audit knows of the hold"
        released = new_envelope(
            LegalHoldReleased(
                account_id=account_id,
                hold_id=hold_id,
                released_by=staff_id,
                released_by_name="Lea Legal",
                reason="Settled",
                released_at=datetime.now(UTC),
            ),
            source="billing",
        )
        await _publish_to(settings, "legal_hold.released", released)
        entries = await eventually(
            lambda: _entries(audit, account_id, 2), what="the release recorded"
        )
        assert await guard.purge_blocked(account_id) is None, "the release lifts it"
    finally:
        await guard.engine.dispose()
    assert [(e.kind, e.actor_type, e.actor_id, e.purpose) for e, _ in entries] == [
        ("legal-hold-placed", "legal", str(staff_id), "legal"),
        ("legal-hold-released", "legal", str(staff_id), "legal"),
    ]
    assert [p.reason for _, p in entries if p] == [
        "Court order 2030/117: Litigation",
        "Settled",
    ]
    assert {e.resource_id for e, _ in entries} == {str(hold_id)}
    assert (await audit.verify(account_id)).finding is None


async def _publish_to(settings: AuditSettings, topic: str, envelope: Any) -> None:
    await produce(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic(topic),
        await sealed(envelope, settings.keystore),
        key=envelope.subject.encode(),
        headers=[("content-type", b"application/json")],
    )
