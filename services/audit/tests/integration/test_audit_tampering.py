"""STAFF-ACCESS: the trail on the real database, tampered with in SQL as someone with the
database's password would; each kind of tampering is found and the first bad entry named. The
chains are written by the service's own append, on a database of this module's own (each test
starts from an empty trail)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.api import audit_routes
from audit.domain import EntryKind
from audit.main import MIGRATIONS_DIR
from audit.repository import AuditRepository
from audit.services import Act, AuditService
from devstack.stack import Stack
from shared.contracts import (
    AccessActor,
    AccessGrantChanged,
    AccessPurpose,
    AccountPurged,
    DataAccessed,
    PurgeRequested,
    new_envelope,
)
from shared.db import create_engine, create_session_factory
from shared.keystore import MemoryKeyStore
from shared.migrations import upgrade_database
from shared.outbox import Outbox
from shared.settings import KafkaSettings
from shared.signing import SigningKey
from shared.telemetry import create_telemetry
from shared.unit_of_work import UnitOfWorkFactory

pytestmark = [pytest.mark.integration, pytest.mark.clause("STAFF-ACCESS")]
TABLES = (
    "audit_personal, audit_entry, chain_link, audit_checkpoint, purged_account, "
    "audit_alert, access_grant_mark, purge_record"
)
REFERENCE_KEY = "test-reference-key"
SIGNING_KEY = SigningKey.generate()


@pytest.fixture(scope="module")
async def database(infrastructure: Stack) -> AsyncIterator[tuple[AsyncEngine, str]]:
    name = f"audit_tamper_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(infrastructure.create_databases, [name], suffixed=False)
    url = infrastructure.database_url("x").rsplit("/", 1)[0] + f"/{name}"
    await asyncio.to_thread(upgrade_database, MIGRATIONS_DIR, url)
    engine = create_engine(url)
    yield engine, url.replace("+asyncpg", "")
    await engine.dispose()


@pytest.fixture
async def trail(database: tuple[AsyncEngine, str]) -> tuple[AuditService, str]:
    engine, dsn = database
    await _sql(dsn, f"TRUNCATE {TABLES}")
    sessions = create_session_factory(engine)
    outbox = Outbox(source="audit", kafka=KafkaSettings(), keys=MemoryKeyStore())
    service = AuditService(
        sessions=sessions,
        units=UnitOfWorkFactory(sessions=sessions, outbox=outbox),
        reference_key=REFERENCE_KEY.encode(),
        signing_key=SIGNING_KEY,
    )
    return service, dsn


async def _sql(dsn: str, statement: str, *args: Any) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.execute(statement, *args)
    finally:
        await connection.close()


async def _record(service: AuditService, account_id: uuid.UUID, count: int) -> None:
    assert service.units is not None
    for number in range(count):
        async with service.units() as work:
            await service.append(
                work,
                Act(
                    account_id=account_id,
                    event_id=uuid.uuid4(),
                    kind=EntryKind.DATA_ACCESS,
                    actor_type="staff",
                    actor_id="staff-1",
                    purpose="support",
                    grant_id=uuid.uuid4(),
                    outcome="granted",
                    resource_type="customer",
                    resource_id=f"c-{number}",
                    occurred_at=datetime.now(UTC),
                    actor_name="Sam Support",
                    reason=f"TICKET-{number}",
                ),
            )


async def _two_accounts(service: AuditService) -> tuple[uuid.UUID, uuid.UUID]:
    """Two accounts' entries interleaved: a1 1-3, a2 1-2, a1 4-5 (globally 1-7)."""
    first, second = uuid.uuid4(), uuid.uuid4()
    await _record(service, first, 3)
    await _record(service, second, 2)
    await _record(service, first, 2)
    return first, second


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_an_empty_trail_or_a_range_past_its_end_verifies_with_nothing_checked(
    trail: tuple[AuditService, str],
) -> None:
    """A new installation's trail has no entry yet: verifying it (whole, one account's, or a
    range) checks nothing and finds nothing wrong; so does a range that starts past the end
    (the fuzz run found the empty trail answered 500)."""
    service, _ = trail
    for account_id, first in [(None, 1), (uuid.uuid4(), 1), (None, 5)]:
        result = await service.verify(account_id, first=first)
        assert result.finding is None, (account_id, first, result)
        assert result.entries == 0
    await _record(service, uuid.uuid4(), 2)
    beyond = await service.verify(first=3)
    assert beyond.finding is None
    assert beyond.entries == 0
    assert (await service.verify()).entries == 2


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_an_untouched_trail_verifies_and_is_checkpointed(
    trail: tuple[AuditService, str],
) -> None:
    service, _ = trail
    first, _ = await _two_accounts(service)
    checkpoint = await service.checkpoint()
    assert checkpoint is not None
    assert checkpoint.global_seq == 7
    assert str(first) not in checkpoint.payload, "accounts by keyed reference only"
    assert await service.checkpoint() is None, "nothing new, no checkpoint"
    await _record(service, first, 1)
    second_checkpoint = await service.checkpoint()
    assert second_checkpoint is not None
    assert checkpoint.sha256 in second_checkpoint.payload, "each names the one before"
    result = await service.verify()
    assert (result.entries, result.links, result.checkpoints) == (8, 8, 2)
    assert result.finding is None


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_a_changed_field_is_named(trail: tuple[AuditService, str]) -> None:
    service, dsn = trail
    first, _ = await _two_accounts(service)
    await _sql(
        dsn,
        "UPDATE audit_entry SET purpose = 'security' WHERE account_id = $1 AND account_seq = 2",
        first,
    )
    finding = (await service.verify()).finding
    assert finding is not None
    assert (finding.problem, finding.global_seq) == ("changed", 2)


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_a_changed_personal_part_is_named(
    trail: tuple[AuditService, str],
) -> None:
    service, dsn = trail
    first, _ = await _two_accounts(service)
    await _sql(
        dsn,
        "UPDATE audit_personal SET reason = 'routine' WHERE global_seq = 6 AND account_id = $1",
        first,
    )
    finding = (await service.verify()).finding
    assert finding is not None
    assert (finding.problem, finding.account_id, finding.account_seq) == (
        "personal-part-changed",
        str(first),
        4,
    )


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_a_removed_entry_is_named(trail: tuple[AuditService, str]) -> None:
    service, dsn = trail
    await _two_accounts(service)
    await _sql(dsn, "DELETE FROM audit_entry WHERE global_seq = 4")
    finding = (await service.verify()).finding
    assert finding is not None
    assert (finding.problem, finding.global_seq) == ("removed", 4)
    await _sql(dsn, "DELETE FROM chain_link WHERE global_seq = 4")
    finding = (await service.verify()).finding
    assert finding is not None
    assert (finding.problem, finding.global_seq) == ("removed", 4), "with its link too"


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_an_inserted_entry_is_named(trail: tuple[AuditService, str]) -> None:
    service, dsn = trail
    first, _ = await _two_accounts(service)
    # A copy of entry 5 of the account, slipped in as its 6th (its link never written).
    await _sql(
        dsn,
        "INSERT INTO audit_entry SELECT 99, account_id, 6, gen_random_uuid(), kind, actor_type, "
        "actor_id, purpose, grant_id, outcome, resource_type, resource_id, occurred_at, "
        "recorded_at, personal_commitment, account_hash, account_hash FROM audit_entry "
        "WHERE account_id = $1 AND account_seq = 5",
        first,
    )
    finding = (await service.verify()).finding
    assert finding is not None
    assert (finding.problem, finding.global_seq) == ("inserted", 99)


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_reordered_entries_are_named(trail: tuple[AuditService, str]) -> None:
    service, dsn = trail
    first, _ = await _two_accounts(service)
    # Entries 2 and 3 of the account trade places (their sequence numbers swapped).
    for old, new in ((2, 1000), (3, 2), (1000, 3)):
        await _sql(
            dsn,
            "UPDATE audit_entry SET account_seq = $3 WHERE account_id = $1 AND account_seq = $2",
            first,
            old,
            new,
        )
    finding = (await service.verify()).finding
    assert finding is not None
    assert finding.global_seq in (2, 3)
    assert finding.problem in ("changed", "reordered")


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_a_range_is_verified_on_its_own_and_joined_to_what_precedes_it(
    trail: tuple[AuditService, str],
) -> None:
    """A range of global sequences verifies while a change lies outside it, names the change
    inside it, and is caught when the entry or link just before it no longer leads into it."""
    service, dsn = trail
    first, _ = await _two_accounts(service)  # a1 1-3, a2 4-5, a1 6-7 (a1's 4 and 5)
    await service.checkpoint()
    await _sql(dsn, "UPDATE audit_entry SET outcome = 'refused' WHERE global_seq = 2")
    after = await service.verify(first=4, last=7)
    assert (after.finding, after.entries, after.links) == (None, 4, 4)
    finding = (await service.verify(first=1, last=3)).finding
    assert finding is not None
    assert (finding.problem, finding.global_seq) == ("changed", 2)
    # a1's entry 3 (global 3, before the range) rewritten with a consistent hash of its own:
    # a1's next entry (global 6, in the range) no longer follows it.
    await _sql(dsn, "UPDATE audit_entry SET account_hash = repeat('ab', 32) WHERE global_seq = 3")
    finding = (await service.verify(first=5, last=7)).finding
    assert finding is not None
    assert (finding.global_seq, finding.account_id) == (6, str(first))
    await _sql(dsn, "DELETE FROM chain_link WHERE global_seq = 4")
    finding = (await service.verify(first=5, last=7)).finding
    assert finding is not None
    assert (finding.problem, finding.global_seq) == ("removed", 4)


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_an_account_chain_not_starting_from_genesis_is_named(
    trail: tuple[AuditService, str],
) -> None:
    """An account's only entry re-linked after a forged predecessor, its own hash recomputed to
    match (the entry's content, and so the global chain, untouched; no checkpoint yet)."""
    service, dsn = trail
    await _two_accounts(service)
    lone = uuid.uuid4()
    await _record(service, lone, 1)  # global 8
    await _sql(
        dsn,
        "UPDATE audit_entry e SET account_previous_hash = repeat('cd', 32), "
        "account_hash = encode(sha256(decode(repeat('cd', 32), 'hex') || decode(l.digest, "
        "'hex')), 'hex') FROM chain_link l WHERE l.global_seq = e.global_seq AND e.global_seq = 8",
    )
    finding = (await service.verify()).finding
    assert finding is not None
    assert (finding.problem, finding.global_seq, finding.account_id) == ("inserted", 8, str(lone))


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_a_verification_spread_over_processes_joins_their_stretches(
    trail: tuple[AuditService, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stretch scanned in a process of its own (spawned, on its own connection), joined
    where the next begins: the intact trail verifies, a change in the second stretch is named."""
    service, dsn = trail
    spread = AuditService(
        sessions=service.sessions,
        units=service.units,
        reference_key=REFERENCE_KEY.encode(),
        signing_key=SIGNING_KEY,
        verify_processes=2,
        database_url=dsn,
    )
    monkeypatch.setattr("audit.services.SCAN_PART_MIN", 3)
    first, _ = await _two_accounts(spread)
    await spread.checkpoint()
    assert spread._split(1, 7) == [(1, 4), (5, 7)]
    result = await spread.verify()
    assert (result.finding, result.entries, result.links) == (None, 7, 7)
    await _sql(dsn, "UPDATE audit_entry SET outcome = 'refused' WHERE global_seq = 6")
    assert await spread._scan(1, None) is None, "the second stretch's process saw the change"
    finding = (await spread.verify()).finding
    assert finding is not None
    assert (finding.problem, finding.global_seq, finding.account_id) == ("changed", 6, str(first))


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_the_verify_api_checks_a_range_and_refuses_a_bad_one(
    trail: tuple[AuditService, str],
) -> None:
    """`GET /verify?first=&last=` for operators: a range's result, RFC 9457 problems naming
    the field for a bad bound, and no answer without the operator token."""
    service, dsn = trail
    await _two_accounts(service)
    await _sql(dsn, "UPDATE audit_entry SET resource_id = 'c-other' WHERE global_seq = 2")
    routes = dict(audit_routes(service, "operator-secret"))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await routes[scope["path"]](scope, receive, send)

    operator = {"Authorization": "Bearer operator-secret"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://audit") as api:
        assert (await api.get("/verify?first=3")).status_code == 401
        intact = await api.get("/verify?first=3&last=7", headers=operator)
        assert intact.status_code == 200, intact.text
        assert intact.json()["verified"] is True
        assert (intact.json()["entries"], intact.json()["first"]) == (5, 3)
        whole = (await api.get("/verify", headers=operator)).json()
        assert whole["verified"] is False
        assert whole["first_problem"]["global_seq"] == 2
        for query, field in [
            ("first=0", "first"),
            ("first=x", "first"),
            ("first=%C2%B2", "first"),  # '²': a digit to str.isdigit, not to int()
            ("last=%EF%BC%91", "last"),  # a fullwidth '1'
            ("first=1234567890123456789", "first"),
            ("last=-1", "last"),
            ("first=5&last=4", "last"),
            ("account_id=nope", "account_id"),
        ]:
            refused = await api.get(f"/verify?{query}", headers=operator)
            assert refused.status_code == 422, query
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert field in refused.text, query


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_truncation_after_a_checkpoint_is_named(
    trail: tuple[AuditService, str],
) -> None:
    """The newest entries, their personal parts and their links removed together: nothing in
    the tables shows it, but the signed checkpoint does."""
    service, dsn = trail
    first, _ = await _two_accounts(service)
    assert await service.checkpoint() is not None
    await _sql(dsn, "DELETE FROM chain_link WHERE global_seq >= 6")
    await _sql(dsn, "DELETE FROM audit_entry WHERE global_seq >= 6")
    finding = (await service.verify()).finding
    assert finding is not None
    assert (finding.problem, finding.global_seq) == ("truncated", 6)
    finding = (await service.verify(first)).finding
    assert finding is not None
    assert finding.problem == "truncated"
    # The command an operator runs on the server says the same, and fails.
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "audit.verify",
        env={
            **os.environ,
            "AUDIT_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
            "AUDIT_REFERENCE_KEY": REFERENCE_KEY,
            "AUDIT_CHECKPOINT_SIGNING_KEY": SIGNING_KEY.private_pem(),
        },
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await command.communicate()
    assert command.returncode == 1
    assert json.loads(output)["first_problem"]["problem"] == "truncated"


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_a_forged_or_removed_checkpoint_is_named(
    trail: tuple[AuditService, str],
) -> None:
    service, dsn = trail
    for _ in range(3):
        await _record(service, uuid.uuid4(), 1)
        assert await service.checkpoint() is not None
    await _sql(dsn, "DELETE FROM audit_checkpoint WHERE number = 2")
    finding = (await service.verify()).finding
    assert finding is not None
    assert (finding.problem, finding.detail) == ("removed", "before checkpoint 3")
    await _sql(
        dsn,
        "UPDATE audit_checkpoint SET payload = replace(payload, '\"number\":3', "
        "'\"number\":2') WHERE number = 3",
    )
    finding = (await service.verify()).finding
    assert finding is not None
    assert (finding.problem, finding.detail) == ("changed", "checkpoint 3")


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_erased_personal_parts_and_a_purged_account_still_verify(
    trail: tuple[AuditService, str],
) -> None:
    """Erasable yet verifiable: a person's names and reasons go, and a whole account goes at
    its purge; both chains still verify, and the purged account's links stay."""
    service, dsn = trail
    _first, second = await _two_accounts(service)
    await service.checkpoint()
    assert await service.erase_personal_part(2)
    assert (await service.verify()).finding is None
    await _sql(dsn, "DELETE FROM audit_personal WHERE account_id = $1", second)
    await _sql(dsn, "DELETE FROM audit_entry WHERE account_id = $1", second)
    finding = (await service.verify()).finding
    assert finding is not None
    assert finding.problem == "removed", "gone without a purge: found"
    assert service.units is not None
    async with service.units() as work:
        await service.note_purged(PurgeRequested(account_id=second, saga_id=uuid.uuid4()), work)
    result = await service.verify()
    assert result.finding is None, result.finding
    assert result.links == 7
    assert result.entries == 5


async def _change_grant(
    service: AuditService,
    account_id: uuid.UUID,
    grant_id: uuid.UUID,
    change: str,
    at: datetime,
    expires_at: datetime,
    staff_id: uuid.UUID | None = None,
) -> None:
    """Record billing's access_grant.changed as audit's handler does."""
    assert service.units is not None
    async with service.units() as work:
        await service.record_grant(
            event=new_envelope(
                AccessGrantChanged(
                    account_id=account_id,
                    grant_id=grant_id,
                    change=change,
                    staff_id=staff_id or uuid.uuid4(),
                    purpose=AccessPurpose.SUPPORT,
                    reason="TICKET-1",
                    expires_at=expires_at,
                    changed_by=uuid.uuid4(),
                    changed_by_name="Olga Owner",
                    changed_at=at,
                ),
                source="billing",
            ),
            work=work,
        )


def _read(account_id: uuid.UUID, staff: str, grant_id: uuid.UUID, at: datetime) -> Any:
    return new_envelope(
        DataAccessed(
            account_id=account_id,
            access_id=uuid.uuid4(),
            actor=AccessActor.STAFF,
            actor_id=staff,
            actor_name="Sam Support",
            purpose=AccessPurpose.SUPPORT,
            reason="TICKET-1",
            grant_id=grant_id,
            resource_type="customer",
            resource_id="c-1",
            accessed_at=at,
        ),
        source="billing",
    )


async def _alerts(dsn: str) -> list[tuple[str, str]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT kind, actor_id FROM audit_alert ORDER BY raised_at")
        announced = await connection.fetchval(
            "SELECT count(*) FROM outbox_message WHERE topic = 'audit.alert_raised'"
        )
    finally:
        await connection.close()
    assert announced == len(rows), "each alert kept is announced once"
    return [(row["kind"], row["actor_id"]) for row in rows]


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_grants_are_in_the_trail_and_a_read_after_revocation_alerts(
    trail: tuple[AuditService, str],
) -> None:
    """A grant's opening and revocation are chained; a read recorded under the grant after
    its revocation (which billing would refuse: audit checks anyway) raises an alert, once."""
    service, dsn = trail
    await _sql(dsn, "TRUNCATE audit_alert, access_grant_mark, outbox_message")
    account_id, grant_id, staff_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    opened_at = datetime.now(UTC)
    assert service.units is not None
    for change, at in (("opened", opened_at), ("revoked", opened_at + timedelta(minutes=5))):
        await _change_grant(
            service, account_id, grant_id, change, at, opened_at + timedelta(hours=2), staff_id
        )
    before = _read(account_id, str(staff_id), grant_id, opened_at + timedelta(minutes=1))
    after = _read(account_id, str(staff_id), grant_id, opened_at + timedelta(minutes=6))
    for event in (before, after, after):
        async with service.units() as work:
            if not await AuditRepository(work.session).recorded(event.id):
                await service.record_accesses([event], work)
    kinds = [entry.kind for entry, _ in await service.access_log(account_id)]
    assert kinds == ["grant-opened", "grant-revoked", "data-access", "data-access"]
    assert await _alerts(dsn) == [("read-under-ended-grant", str(staff_id))]
    assert (await service.verify(account_id)).finding is None


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_one_staff_member_reading_many_accounts_alerts_once_an_hour(
    trail: tuple[AuditService, str],
) -> None:
    service, dsn = trail
    await _sql(dsn, "TRUNCATE audit_alert, access_grant_mark, outbox_message")
    watchful = AuditService(
        sessions=service.sessions,
        units=service.units,
        reference_key=service.reference_key,
        signing_key=service.signing_key,
        alert_accounts_per_hour=2,
    )
    assert watchful.units is not None
    now = datetime.now(UTC)
    for number in range(5):
        async with watchful.units() as work:
            event = _read(uuid.uuid4(), "staff-curious", uuid.uuid4(), now)
            await watchful.record_accesses([event], work)
        if number == 1:
            assert await _alerts(dsn) == [], "two accounts: within the limit"
    assert await _alerts(dsn) == [("many-accounts-read", "staff-curious")]


HOSTILE = [
    'quote " backslash \\ slash / ',
    "controls \x01\x08\t\n\x0b\x0c\r\x1f\x7f end",
    "line\u2028para\u2029 bidi\u202e nbsp\u00a0",
    "ünïcödé 中文 עברית emoji 🧾 and \U0001f600",
    "'; DROP TABLE audit_entry; --",
    "",
]


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_the_fast_scan_and_the_exact_check_agree_on_hostile_text(
    trail: tuple[AuditService, str],
) -> None:
    """The whole trail is scanned from the database's text first: its canonical JSON must be
    the exact check's byte for byte over any text (tabs and newlines included, which the
    scan's rows are separated by), or an intact trail would be reported altered. Many acts of
    interleaved accounts in one append, with times with and without microseconds."""
    service, _ = trail
    accounts = [uuid.uuid4(), uuid.uuid4()]
    whole_second = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    acts = [
        Act(
            account_id=accounts[number % 2],
            event_id=uuid.uuid4(),
            kind=EntryKind.DATA_ACCESS,
            actor_type="staff",
            actor_id=text,
            purpose=text or "support",
            grant_id=None if number % 3 else uuid.uuid4(),
            outcome="granted",
            resource_type=text[::-1],
            resource_id=text,
            occurred_at=whole_second + timedelta(microseconds=number % 2 * 120_000),
            actor_name=text,
            reason=text * 3,
        )
        for number, text in enumerate(HOSTILE * 2)
    ]
    assert service.units is not None
    async with service.units() as work:
        sequences = await service.append_many(work, acts)
    assert sequences == list(range(1, len(acts) + 1))
    await service.checkpoint()
    scanned = await service._scan(1, None)
    assert scanned is not None, "the fast scan found a difference in an intact trail"
    assert scanned.finding is None
    assert (scanned.entries, scanned.links) == (len(acts), len(acts))
    for first, last in [(1, 3), (4, 9), (5, len(acts))]:
        part = await service._scan(first, last)
        assert part is not None, f"the fast scan of {first}..{last} found a difference"
        assert (part.entries, part.links) == (last - first + 1, last - first + 1)
    exactly = await service._verify_exactly(None)
    assert exactly.finding is None, exactly.finding
    for account in accounts:
        assert (await service.verify(account)).finding is None


async def _certify_purge(service: AuditService, account_id: uuid.UUID) -> None:
    assert service.units is not None
    async with service.units() as work:
        await service.note_purged(PurgeRequested(account_id=account_id, saga_id=uuid.uuid4()), work)
    certificate = json.dumps({"account": "keyed-hash", "services": ["audit", "billing"]})
    event = new_envelope(
        AccountPurged(
            account_id=account_id,
            saga_id=uuid.uuid4(),
            certificate_id=uuid.uuid4(),
            services=["audit", "billing"],
            certificate=certificate,
            signature="c2lnbmF0dXJl",
            signing_key_id="retention-1",
        ),
        source="retention",
    )
    async with service.units() as work:
        await service.record_purge_certificate(event=event, work=work)
    async with service.units() as work:  # a second delivery chains nothing more
        await service.record_purge_certificate(event=event, work=work)


@pytest.mark.clause("TERMINATION", "STAFF-ACCESS")
async def test_termination_the_purge_certificate_is_chained_and_its_removal_or_change_caught(
    trail: tuple[AuditService, str],
) -> None:
    """TERMINATION, STAFF-ACCESS: the account's entries go with its purge; its signed
    certificate is chained into the global chain and kept, and cannot go or change unseen."""
    service, dsn = trail
    _first, second = await _two_accounts(service)
    await _sql(dsn, "DELETE FROM audit_personal WHERE account_id = $1", second)
    await _sql(dsn, "DELETE FROM audit_entry WHERE account_id = $1", second)
    await _certify_purge(service, second)
    await service.checkpoint()
    result = await service.verify()
    assert result.finding is None, result.finding
    assert result.links == 8, "seven entries' links and the certificate's"
    await _sql(dsn, "UPDATE purge_record SET certificate_sha256 = repeat('0', 64)")
    changed = (await service.verify()).finding
    assert changed is not None
    assert (changed.problem, changed.global_seq) == ("changed", 8)
    await _sql(dsn, "DELETE FROM purge_record")
    removed = (await service.verify()).finding
    assert removed is not None
    assert (removed.problem, removed.global_seq) == ("removed", 8)


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_a_grant_that_lapses_unrevoked_is_noted_once(
    trail: tuple[AuditService, str],
) -> None:
    """STAFF-ACCESS: grants opened, revoked and expired are all in the trail."""
    service, dsn = trail
    await _sql(dsn, "TRUNCATE audit_alert, access_grant_mark, outbox_message")
    account_id = uuid.uuid4()
    opened_at = datetime.now(UTC) - timedelta(hours=3)
    lapsing, revoked, running = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert service.units is not None
    changes = [
        (lapsing, "opened", opened_at, timedelta(hours=1)),
        (revoked, "opened", opened_at, timedelta(hours=1)),
        (revoked, "revoked", opened_at + timedelta(minutes=10), timedelta(hours=1)),
        (running, "opened", opened_at, timedelta(hours=5)),
    ]
    for grant_id, change, at, lasting in changes:
        await _change_grant(service, account_id, grant_id, change, at, opened_at + lasting)
    assert await service.record_lapsed_grants() == 1
    assert await service.record_lapsed_grants() == 0, "each lapse once"
    log = [(entry.kind, entry.grant_id) for entry, _ in await service.access_log(account_id)]
    assert log[-1] == ("grant-expired", lapsing)
    assert [kind for kind, _ in log].count("grant-expired") == 1
    assert (await service.verify()).finding is None


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_a_failed_verification_raises_one_alert(
    trail: tuple[AuditService, str],
) -> None:
    """The scheduled check of the trail alerts when it finds it altered, once per finding, and
    the service's /metrics says so (the verification gauge, the alerts counter)."""
    trusting, dsn = trail
    telemetry = create_telemetry("audit")
    service = AuditService(
        sessions=trusting.sessions,
        units=trusting.units,
        reference_key=REFERENCE_KEY.encode(),
        signing_key=SIGNING_KEY,
        meter=telemetry.meter("quittance.audit"),
    )
    registry = telemetry.registry
    await _sql(dsn, "TRUNCATE audit_alert, access_grant_mark, outbox_message")
    await _two_accounts(service)
    assert (await service.check_trail()).finding is None
    assert await _alerts(dsn) == []
    assert registry.get_sample_value("quittance_audit_chain_verified") == 1
    await _sql(dsn, "UPDATE audit_entry SET resource_id = 'other' WHERE global_seq = 4")
    for _ in range(2):
        finding = (await service.check_trail()).finding
        assert finding is not None
        assert finding.global_seq == 4
    assert await _alerts(dsn) == [("verification-failed", "audit")]
    assert registry.get_sample_value("quittance_audit_chain_verified") == 0
    failed = {"kind": "verification-failed"}
    assert registry.get_sample_value("quittance_audit_alerts_total", failed) == 1
