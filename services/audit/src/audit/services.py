"""Audit's use cases: append acts to the chains, sign checkpoints, verify, erase personal parts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4, uuid5

from opentelemetry import metrics
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, delete, select

from audit.domain import (
    GENESIS_HASH,
    PURGE_RECORD_PREFIX,
    AlertKind,
    EntryKind,
    Finding,
    Head,
    Link,
    account_reference,
    check_account_chain,
    check_global_chain,
    checkpoint_payload,
    entry_digest,
    json_time,
    link,
    personal_commitment,
)
from audit.models import (
    AuditAlert,
    AuditCheckpoint,
    AuditEntry,
    AuditPersonal,
    ChainLink,
    GrantMark,
    PurgedAccount,
    PurgeRecord,
)
from audit.repository import GLOBAL_CHAIN_LOCK, AuditRepository, TrailQuery, query_trail
from audit.scan import ScanPart, TrailScan, scan_in_process, scan_stretch
from shared.contracts import (
    AccessActor,
    AccessGrantChanged,
    AccessOutcome,
    AccessPurpose,
    AccountPurged,
    AuditAlertRaised,
    DataAccessed,
    Envelope,
    LegalHoldPlaced,
    LegalHoldReleased,
    PurgeRequested,
)
from shared.db import SessionFactory, driver_dsn
from shared.signing import SigningKey, verify
from shared.unit_of_work import UnitsOfWork, Work

log = logging.getLogger(__name__)
# Alerts are about staff, not an account: their events are keyed by this (nil) id.
ALERTS_KEY = UUID(int=0)


@dataclass(frozen=True)
class Act:
    """An act to record, before it is chained: the chained part and the personal part."""

    account_id: UUID
    event_id: UUID
    kind: EntryKind
    actor_type: str
    actor_id: str
    purpose: str
    grant_id: UUID | None
    outcome: str
    resource_type: str
    resource_id: str
    occurred_at: datetime
    actor_name: str
    reason: str


@dataclass(frozen=True)
class Verification:
    """What a verification checked, and the first thing wrong, if any."""

    entries: int
    links: int
    checkpoints: int
    finding: Finding | None


class AuditService:
    """The trail: appends, checkpoints, verification, erasure."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        units: UnitsOfWork | None = None,
        reference_key: bytes,
        signing_key: SigningKey,
        alert_accounts_per_hour: int = 20,
        verify_processes: int = 1,
        database_url: str | None = None,
        meter: metrics.Meter | None = None,
    ) -> None:
        if verify_processes > 1 and database_url is None:
            raise ValueError("verifying in several processes needs the database's URL")
        self.sessions = sessions
        self.verify_processes = verify_processes
        self.database_url = database_url
        self.units = units
        self.reference_key = reference_key
        self.signing_key = signing_key
        self.alert_accounts_per_hour = alert_accounts_per_hour
        meter = meter or metrics.get_meter("quittance.audit")
        self._alerts = meter.create_counter(
            "quittance.audit.alerts", unit="{alert}", description="Alerts raised, by kind."
        )
        self._verified = meter.create_gauge(
            "quittance.audit.chain.verified",
            description="1 when the last scheduled verification found the trail intact, else 0.",
        )

    def reference(self, account_id: UUID) -> str:
        """The account's keyed reference."""
        return account_reference(account_id, self.reference_key)

    # ------------------------------------------------------------------ recording

    async def record_accesses(self, events: list[Envelope[DataAccessed]], work: Work) -> None:
        """Append accesses, granted or refused, to the chains at once, then raise what alerts
        they call for (STAFF-ACCESS, PURPOSE)."""
        await self.append_many(
            work,
            [
                Act(
                    account_id=event.data.account_id,
                    event_id=event.id,
                    kind=EntryKind.DATA_ACCESS,
                    actor_type=event.data.actor,
                    actor_id=event.data.actor_id,
                    purpose=event.data.purpose,
                    grant_id=event.data.grant_id,
                    outcome=event.data.outcome,
                    resource_type=event.data.resource_type,
                    resource_id=event.data.resource_id,
                    occurred_at=event.data.accessed_at,
                    actor_name=event.data.actor_name,
                    reason=event.data.reason,
                )
                for event in events
            ],
        )
        await self._alert_if_needed(events, work)

    async def _alert_if_needed(self, events: list[Envelope[DataAccessed]], work: Work) -> None:
        """Raise an alert for a read under a grant that had ended, or for a staff member
        reading more accounts in an hour than the limit (each alert once)."""
        granted = {
            event.data.grant_id
            for event in events
            if event.data.outcome == AccessOutcome.GRANTED and event.data.grant_id is not None
        }
        # Each grant's end: (expires_at, revoked_at). One statement with an array, not an
        # IN list the ORM compiles anew for every batch.
        ends: dict[UUID, tuple[datetime, datetime | None]] = {}
        if granted:
            driver = await work.driver()
            ends = {
                row[0]: (row[1], row[2])
                for row in await driver.fetch(
                    "SELECT grant_id, expires_at, revoked_at FROM access_grant_mark"
                    " WHERE grant_id = ANY($1::uuid[])",
                    list(granted),
                )
            }
        latest_read: dict[str, datetime] = {}
        for event in events:
            access = event.data
            end = None
            if access.outcome == AccessOutcome.GRANTED and access.grant_id is not None:
                end = ends.get(access.grant_id)
            ended = end is not None and (
                end[0] <= access.accessed_at
                or (end[1] is not None and end[1] <= access.accessed_at)
            )
            if ended:
                await self._raise(
                    work,
                    AlertKind.READ_UNDER_ENDED_GRANT,
                    access.actor_id,
                    f"ended:{event.id}",
                    f"read {access.resource_type} {access.resource_id} under grant "
                    f"{access.grant_id}, which had ended",
                )
            if access.actor == AccessActor.STAFF:
                seen = latest_read.get(access.actor_id)
                if seen is None or access.accessed_at > seen:
                    latest_read[access.actor_id] = access.accessed_at
        if latest_read:
            await self._alert_if_many_accounts(work, latest_read)

    async def _alert_if_many_accounts(self, work: Work, latest_read: dict[str, datetime]) -> None:
        """Alert once an hour for each staff member who read more accounts in the hour up to
        their latest read than the limit: one query for all of them, each count stopping at
        the limit, and none for whoever was alerted this hour already."""
        hours = {
            actor_id: read_at.astimezone(UTC).strftime("%Y-%m-%dT%H")
            for actor_id, read_at in latest_read.items()
        }
        driver = await work.driver()
        raised = {
            row[0]
            for row in await driver.fetch(
                "SELECT once_key FROM audit_alert WHERE once_key = ANY($1::text[])",
                [f"many:{actor_id}:{hour}" for actor_id, hour in hours.items()],
            )
        }
        pending = [
            (actor_id, read_at - timedelta(hours=1))
            for actor_id, read_at in latest_read.items()
            if f"many:{actor_id}:{hours[actor_id]}" not in raised
        ]
        if not pending:
            return
        counts = await driver.fetch(
            MANY_ACCOUNTS_SQL,
            [actor_id for actor_id, _ in pending],
            [since for _, since in pending],
            EntryKind.DATA_ACCESS.value,
            self.alert_accounts_per_hour + 1,
        )
        for actor_id, count in counts:
            if count > self.alert_accounts_per_hour:
                await self._raise(
                    work,
                    AlertKind.MANY_ACCOUNTS_READ,
                    actor_id,
                    f"many:{actor_id}:{hours[actor_id]}",
                    f"more than {self.alert_accounts_per_hour} accounts read within an hour",
                )

    async def _raise(
        self, work: Work, kind: AlertKind, actor_id: str, once_key: str, detail: str
    ) -> None:
        """Keep the alert and announce it, unless it was raised already."""
        alert_id, now = uuid4(), datetime.now(UTC)
        created = await work.session.exec(
            insert(AuditAlert)
            .values(
                id=alert_id,
                kind=kind,
                actor_id=actor_id,
                once_key=once_key,
                detail=detail,
                raised_at=now,
            )
            .on_conflict_do_nothing(index_elements=["once_key"])
            .returning(col(AuditAlert.id))
        )
        if created.first() is None:
            return
        log.warning("audit alert %s for %s: %s", kind, actor_id, detail)
        self._alerts.add(1, {"kind": kind.value})
        work.emit(
            AuditAlertRaised(
                account_id=ALERTS_KEY,
                alert_id=alert_id,
                kind=kind,
                actor_id=actor_id,
                detail=detail,
                raised_at=now,
            )
        )

    async def record_grant(self, *, event: Envelope[AccessGrantChanged], work: Work) -> None:
        """Append a grant's opening or revocation to the chains, and keep the grant to check
        reads against (STAFF-ACCESS)."""
        change = event.data
        opened = change.change == "opened"
        await self.append(
            work,
            Act(
                account_id=change.account_id,
                event_id=event.id,
                kind=EntryKind.GRANT_OPENED if opened else EntryKind.GRANT_REVOKED,
                actor_type="user",
                actor_id=str(change.changed_by),
                purpose=change.purpose,
                grant_id=change.grant_id,
                outcome=change.change,
                resource_type="access_grant",
                resource_id=str(change.staff_id),
                occurred_at=change.changed_at,
                actor_name=change.changed_by_name,
                reason=change.reason,
            ),
        )
        statement = insert(GrantMark).values(
            grant_id=change.grant_id,
            account_id=change.account_id,
            staff_id=change.staff_id,
            purpose=change.purpose,
            expires_at=change.expires_at,
            revoked_at=None if opened else change.changed_at,
        )
        revoked = func.coalesce(GrantMark.revoked_at, statement.excluded.revoked_at)
        await work.session.exec(
            statement.on_conflict_do_update(
                index_elements=["grant_id"],
                # A revocation seen before its opening (another partition) is kept.
                set_={"revoked_at": revoked},
            )
        )

    async def alerts(self, limit: int = 100) -> list[AuditAlert]:
        """The newest alerts (for operators)."""
        async with self.sessions() as session:
            found = await session.exec(
                select(AuditAlert).order_by(col(AuditAlert.raised_at).desc()).limit(limit)
            )
            return list(found.all())

    async def record_legal_hold(
        self, event: Envelope[LegalHoldPlaced] | Envelope[LegalHoldReleased], work: Work
    ) -> None:
        """Append the placing or releasing of a legal hold to the chains (LAW)."""
        act = event.data
        if isinstance(act, LegalHoldPlaced):
            who, name, when = act.placed_by, act.placed_by_name, act.placed_at
            reason, kind = f"{act.legal_basis}: {act.reason}", EntryKind.LEGAL_HOLD_PLACED
        else:
            who, name, when = act.released_by, act.released_by_name, act.released_at
            reason, kind = act.reason, EntryKind.LEGAL_HOLD_RELEASED
        await self.append(
            work,
            Act(
                account_id=act.account_id,
                event_id=event.id,
                kind=kind,
                actor_type=AccessActor.LEGAL,
                actor_id=str(who),
                purpose=AccessPurpose.LEGAL,
                grant_id=None,
                outcome=kind.removeprefix("legal-"),
                resource_type="legal_hold",
                resource_id=str(act.hold_id),
                occurred_at=when,
                actor_name=name,
                reason=reason,
            ),
        )

    async def append(self, work: Work, act: Act) -> int:
        """Chain one act; its global sequence (see `append_many`)."""
        return (await self.append_many(work, [act]))[0]

    async def append_many(self, work: Work, acts: list[Act]) -> list[int]:
        """Chain the acts, in order, after their accounts' heads and the global head, under the
        chains' lock; each personal part apart, committed to with a fresh salt. Their global
        sequences."""
        if not acts:
            return []
        driver = await work.driver()
        await driver.execute("SELECT pg_advisory_xact_lock($1)", GLOBAL_CHAIN_LOCK)
        head = await driver.fetchrow(
            "SELECT global_seq, hash FROM chain_link ORDER BY global_seq DESC LIMIT 1"
        )
        global_seq, global_hash = (head[0], head[1]) if head else (0, GENESIS_HASH)
        accounts = list({act.account_id: None for act in acts})
        references = {account: self.reference(account) for account in accounts}  # one HMAC each
        heads = {
            row[0]: (row[1], row[2]) for row in await driver.fetch(ACCOUNT_HEADS_SQL, accounts)
        }
        recorded_at = datetime.now(UTC)
        recorded_text = json_time(recorded_at)
        entries, personal, links, sequences = [], [], [], []
        for act in acts:
            account_seq, previous = heads.get(act.account_id, (0, GENESIS_HASH))
            account_seq += 1
            global_seq += 1
            salt = secrets.token_hex(16)
            commitment = personal_commitment(
                salt, {"actor_name": act.actor_name, "reason": act.reason}
            )
            occurred_at = act.occurred_at.astimezone(UTC)  # as the database gives it back
            digest = entry_digest(
                {
                    "account_id": str(act.account_id),
                    "account_seq": account_seq,
                    "event_id": str(act.event_id),
                    "kind": act.kind.value,
                    "actor_type": act.actor_type,
                    "actor_id": act.actor_id,
                    "purpose": act.purpose,
                    "grant_id": None if act.grant_id is None else str(act.grant_id),
                    "outcome": act.outcome,
                    "resource_type": act.resource_type,
                    "resource_id": act.resource_id,
                    "occurred_at": json_time(occurred_at),
                    "recorded_at": recorded_text,
                    "personal_commitment": commitment,
                }
            )
            account_hash = link(previous, digest)
            entries.append(
                (
                    global_seq,
                    act.account_id,
                    account_seq,
                    act.event_id,
                    act.kind.value,
                    act.actor_type,
                    act.actor_id,
                    act.purpose,
                    act.grant_id,
                    act.outcome,
                    act.resource_type,
                    act.resource_id,
                    occurred_at,
                    recorded_at,
                    commitment,
                    previous,
                    account_hash,
                )
            )
            personal.append((global_seq, act.account_id, salt, act.actor_name, act.reason))
            next_hash = link(global_hash, digest)
            links.append((global_seq, references[act.account_id], digest, global_hash, next_hash))
            heads[act.account_id] = (account_seq, account_hash)
            global_hash = next_hash
            sequences.append(global_seq)
        # COPY, not INSERT: a batch of a thousand acts is three statements, not three thousand.
        await driver.copy_records_to_table("audit_entry", records=entries, columns=ENTRY_COLUMNS)
        await driver.copy_records_to_table(
            "audit_personal", records=personal, columns=PERSONAL_COLUMNS
        )
        await driver.copy_records_to_table("chain_link", records=links, columns=LINK_COLUMNS)
        return sequences

    async def record_purge_certificate(self, *, event: Envelope[AccountPurged], work: Work) -> None:
        """Chain the account's signed purge certificate into the global chain (its own chain
        went with the purge); it names the account only by keyed reference (TERMINATION)."""
        purged = event.data
        if purged.certificate is None or purged.signature is None or not purged.signing_key_id:
            log.warning("account.purged %s carries no signed certificate; not chained", event.id)
            return
        repo = AuditRepository(work.session)
        await repo.lock_chains()
        reference = PURGE_RECORD_PREFIX + self.reference(purged.account_id)
        known = await work.session.exec(
            select(PurgeRecord.global_seq).where(PurgeRecord.account_reference == reference)
        )
        if known.first() is not None:
            return  # one certificate an account: a second purge of it finds nothing to delete
        global_head = await repo.global_head()
        record = PurgeRecord(
            global_seq=(global_head.global_seq + 1) if global_head else 1,
            account_reference=reference,
            event_id=event.id,
            certificate_id=purged.certificate_id,
            certificate=purged.certificate,
            certificate_sha256=hashlib.sha256(purged.certificate.encode()).hexdigest(),
            signature=purged.signature,
            signing_key_id=purged.signing_key_id,
            recorded_at=datetime.now(UTC),
        )
        work.session.add(record)
        work.session.add(
            _next_link(
                global_head, record.global_seq, reference, entry_digest(record.chained_fields())
            )
        )

    async def record_lapsed_grants(self, now: datetime | None = None, batch: int = 500) -> int:
        """Append a grant-expired entry for each grant that reached its end unrevoked; how many.
        Each lapse once: its entry's event id is derived from the grant (STAFF-ACCESS)."""
        assert self.units is not None
        now = now or datetime.now(UTC)
        recorded = 0
        while True:
            async with self.units() as work:
                lapsed = (
                    await work.session.exec(
                        select(GrantMark)
                        .where(
                            col(GrantMark.expires_at) <= now,
                            col(GrantMark.revoked_at).is_(None),
                            col(GrantMark.expiry_recorded).is_(False),
                        )
                        .order_by(col(GrantMark.expires_at))
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                for mark in lapsed:
                    await self.append(
                        work,
                        Act(
                            account_id=mark.account_id,
                            event_id=uuid5(GRANT_LAPSE_NAMESPACE, str(mark.grant_id)),
                            kind=EntryKind.GRANT_EXPIRED,
                            actor_type="system",
                            actor_id="audit",
                            purpose=mark.purpose,
                            grant_id=mark.grant_id,
                            outcome="expired",
                            resource_type="access_grant",
                            resource_id=str(mark.staff_id),
                            occurred_at=mark.expires_at,
                            actor_name="",
                            reason="",
                        ),
                    )
                    mark.expiry_recorded = True
                    work.session.add(mark)
            recorded += len(lapsed)
            if len(lapsed) < batch:
                return recorded

    async def note_purged(self, request: PurgeRequested, work: Work) -> None:
        """After the purge: the account's links stay, known by reference as purged."""
        reference = self.reference(request.account_id)
        await work.session.exec(
            insert(PurgedAccount)
            .values(account_reference=reference, purged_at=datetime.now(UTC))
            .on_conflict_do_nothing()
        )

    async def erase_personal_part(self, global_seq: int) -> bool:
        """Erase one entry's personal part (a person's erasure request); the chains still
        verify, the commitment proves nothing about the erased words."""
        async with self.sessions() as session:
            result = await session.exec(
                delete(AuditPersonal).where(col(AuditPersonal.global_seq) == global_seq)
            )
            await session.commit()
        return bool(result.rowcount)

    # ------------------------------------------------------------------ checkpoints

    async def checkpoint(self) -> AuditCheckpoint | None:
        """Sign the chains' heads now, linked to the previous checkpoint; None when nothing was
        appended since. Instances take turns on the chains' lock."""
        assert self.units is not None
        async with self.units() as work:
            repo = AuditRepository(work.session)
            await repo.lock_chains()
            head = await repo.global_head()
            last = await repo.latest_checkpoint()
            if head is None or (last is not None and last.global_seq >= head.global_seq):
                return None
            since = last.global_seq if last else 0
            accounts = {
                self.reference(account_id): Head(seq, hash_)
                for account_id, seq, hash_ in await repo.heads_since(since)
            }
            created_at = datetime.now(UTC)
            number = (last.number + 1) if last else 1
            payload = checkpoint_payload(
                number=number,
                previous_checkpoint=last.sha256 if last else GENESIS_HASH,
                global_head=Head(head.global_seq, head.hash),
                account_heads=accounts,
                created_at=created_at.isoformat(),
                signing_key_id=self.signing_key.key_id,
            )
            checkpoint = AuditCheckpoint(
                number=number,
                global_seq=head.global_seq,
                global_hash=head.hash,
                payload=payload.decode(),
                sha256=hashlib.sha256(payload).hexdigest(),
                signature=base64.b64encode(self.signing_key.sign(payload)).decode(),
                signing_key_id=self.signing_key.key_id,
                created_at=created_at,
            )
            work.session.add(checkpoint)
        return checkpoint

    async def run_checkpoints(self, interval_s: float) -> None:
        """Forever: each interval, note the grants that lapsed, then sign a checkpoint; a
        failure waits for the next round."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.record_lapsed_grants()
                await self.checkpoint()
            except Exception:
                log.exception("signing a checkpoint failed; trying again next round")

    async def run_verification(self, interval_s: float) -> None:
        """Forever: each interval, verify the whole trail (alerting on a finding)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check_trail()
            except Exception:
                log.exception("verifying the trail failed; trying again next round")

    async def check_trail(self) -> Verification:
        """Verify the whole trail; a finding raises an alert, once per finding, and the
        verification gauge says whether the trail is intact (STAFF-ACCESS)."""
        assert self.units is not None
        result = await self.verify()
        self._verified.set(1 if result.finding is None else 0)
        if result.finding is not None:
            finding = result.finding
            where = f"{finding.global_seq}:{finding.account_id}:{finding.account_seq}"
            async with self.units() as work:
                await self._raise(
                    work,
                    AlertKind.VERIFICATION_FAILED,
                    "audit",
                    f"verify:{finding.problem}:{where}",
                    f"the trail does not verify: {finding.problem} at global entry "
                    f"{finding.global_seq}, account entry {finding.account_seq}: {finding.detail}",
                )
        return result

    async def checkpoints(self, after: int = 0, limit: int = 100) -> list[AuditCheckpoint]:
        """Published checkpoints after a number."""
        async with self.sessions() as session:
            found = await AuditRepository(session).checkpoints()
        return [c for c in found if c.number > after][:limit]

    # ------------------------------------------------------------------ verification

    def _signed_heads(
        self, checkpoints: list[AuditCheckpoint]
    ) -> tuple[Finding | None, Head | None, dict[str, Head]]:
        """Check the checkpoints' own chain and signatures; the newest global head they sign,
        and each account's newest signed head."""
        previous, global_head, accounts = GENESIS_HASH, None, {}
        public = self.signing_key.public_pem()
        for checkpoint in checkpoints:
            payload = checkpoint.payload.encode()
            document: dict[str, Any] = json.loads(payload)
            valid = verify(public, payload, base64.b64decode(checkpoint.signature))
            if not valid or hashlib.sha256(payload).hexdigest() != checkpoint.sha256:
                return (
                    Finding("changed", None, None, None, f"checkpoint {checkpoint.number}"),
                    None,
                    {},
                )
            if document["previous_checkpoint_sha256"] != previous:
                return (
                    Finding("removed", None, None, None, f"before checkpoint {checkpoint.number}"),
                    None,
                    {},
                )
            previous = checkpoint.sha256
            global_head = Head(document["global"]["seq"], document["global"]["hash"])
            for reference, head in document["accounts"].items():
                accounts[reference] = Head(head["seq"], head["hash"])
        return None, global_head, accounts

    async def verify(
        self, account_id: UUID | None = None, *, first: int = 1, last: int | None = None
    ) -> Verification:
        """Check the global chain, then each account's (or one account's) against the signed
        checkpoints, over the whole trail or the global sequences `first` to `last`; the first
        thing wrong is named.

        The range is first scanned in one streamed pass (`scan.TrailScan`: every hash
        recomputed, both chains followed); only when that finds a difference, or for one
        account, is it read again and checked entry by entry, which names the problem.
        """
        if first < 1 or (last is not None and last < first):
            raise ValueError("a range runs from global sequence 1 up, its end not before its start")
        if account_id is None:
            intact = await self._scan(first, last)
            if intact is not None:
                return intact
        return await self._verify_exactly(account_id, first, last)

    async def _scan(self, first: int, last: int | None) -> Verification | None:
        """The verification if the fast scan finds the range intact, else None."""
        async with self.sessions() as session:
            repo = AuditRepository(session)
            checkpoints = list(await repo.checkpoints())
            finding, global_head, _ = self._signed_heads(checkpoints)
            if finding is not None:
                return Verification(0, 0, len(checkpoints), finding)
            end = await repo.trail_end()
            last = end if last is None else min(last, end)
            if global_head is not None and global_head.seq > end:
                return None  # truncated after a checkpoint
            if last < first:  # an empty trail, or a range that starts past its end
                return Verification(0, 0, len(checkpoints), None)
            parts = []
            for part_first, part_last in self._split(first, last):
                before = GENESIS_HASH if part_first == 1 else await repo.link_hash(part_first - 1)
                if before is None:
                    return None
                parts.append(ScanPart(part_first, part_last, before))
            records = await repo.purge_records()
            purged = await repo.purged_references()
            digests = {r.global_seq: entry_digest(r.chained_fields()) for r in records}
            scans = await self._scan_parts(repo, parts, purged, digests)
            # Each stretch must end where the next begins, with the hash it began from: the
            # links run unbroken to the range's end (so every entry in it has its link), and
            # every account chain met from its start starts at genesis.
            for part, scan in zip(parts, scans, strict=True):
                if scan is None or scan.expected_seq != part.last + 1:
                    return None
                if not scan.chains_start_at_genesis():
                    return None
            for scan, following in zip(scans, parts[1:], strict=False):
                if scan is None or scan.previous_hash != following.previous_hash:
                    return None
            if (
                global_head is not None
                and first <= global_head.seq <= last
                and await repo.link_hash(global_head.seq) != global_head.hash
            ):
                return None
            intact = [scan for scan in scans if scan is not None]
            if not all([await self._accounts_follow_on(repo, scan) for scan in intact]):
                return None
        entries, links = sum(s.entries for s in intact), sum(s.links for s in intact)
        return Verification(entries, links, len(checkpoints), None)

    def _split(self, first: int, last: int) -> list[tuple[int, int]]:
        """The range in stretches of at least SCAN_PART_MIN links, one a process, as many as
        `verify_processes` allows."""
        count = max(1, min(self.verify_processes, (last - first + 1) // SCAN_PART_MIN))
        size = -(-(last - first + 1) // count)
        return [(start, min(start + size - 1, last)) for start in range(first, last + 1, size)]

    async def _scan_parts(
        self,
        repo: AuditRepository,
        parts: list[ScanPart],
        purged: frozenset[str],
        digests: dict[int, str],
    ) -> list[TrailScan | None]:
        """Each stretch scanned: one here, in this process; several each in a process of its
        own (the hashing is Python's, so one process uses one core)."""
        if len(parts) == 1:
            return [await scan_stretch(await repo.driver(), parts[0], purged, digests)]
        assert self.database_url is not None
        dsn = driver_dsn(self.database_url)
        return list(
            await asyncio.gather(*(scan_in_process(dsn, part, purged, digests) for part in parts))
        )

    async def _accounts_follow_on(self, repo: AuditRepository, scan: TrailScan) -> bool:
        """Whether each account's first entry in the range follows its entry before the range.

        The accounts' signed heads need no check of their own here: every entry's digest is
        in the global chain, whose signed head the scan held, so an account chain cut short
        or rewritten shows there (the exact check still names it by the account's heads).
        """
        expected = {(UUID(account), seq): hash_ for account, seq, hash_ in scan.openings()}
        return await repo.account_hashes(list(expected)) == expected

    async def _verify_exactly(
        self, account_id: UUID | None, first: int = 1, last: int | None = None
    ) -> Verification:
        """Read the range (or one account's chain in it, with the range's global chain) and
        check it entry by entry, naming the first problem."""
        async with self.sessions() as session:
            repo = AuditRepository(session)
            checkpoints = list(await repo.checkpoints())
            end = await repo.trail_end()
            whole = first == 1 and (last is None or last >= end)
            last = end if last is None else min(last, end)
            links = list(await repo.links_between(first, last))
            entries = list(await repo.entries_between(first, last))
            parts = await repo.personal_parts(account_id)
            purged = await repo.purged_references()
            records = [r for r in await repo.purge_records() if first <= r.global_seq <= last]
            start_previous = GENESIS_HASH if first == 1 else await repo.link_hash(first - 1)
            openings = {}
            if not whole:
                starts: dict[UUID, int] = {}
                for entry in entries:
                    starts.setdefault(entry.account_id, entry.account_seq)
                openings = await repo.account_hashes(
                    [(account, seq - 1) for account, seq in starts.items() if seq > 1]
                )
        finding, global_head, heads = self._signed_heads(checkpoints)
        if not whole:
            heads = {}  # a range is checked on its own: the signed heads only for the whole
            if global_head is not None and not first <= global_head.seq <= last:
                global_head = None
        by_seq = {entry.global_seq: entry.chained() for entry in entries}
        by_seq.update((record.global_seq, record.chained()) for record in records)
        if finding is None and start_previous is None:
            finding = Finding("removed", first - 1, None, None, "the link before the range")
        if finding is None:
            finding = check_global_chain(
                (
                    Link(x.global_seq, x.account_reference, x.digest, x.previous_hash, x.hash)
                    for x in links
                ),
                by_seq,
                start_previous=start_previous or GENESIS_HASH,
                purged=purged,
                signed_head=global_head,
            )
        if finding is None and links and links[0].global_seq != first:
            finding = Finding("removed", first, None, None, "the range's first link is missing")
        if finding is None:
            linked = {x.global_seq for x in links}
            stray = next((e for e in entries if e.global_seq not in linked), None)
            if stray is not None:
                finding = Finding(
                    "inserted",
                    stray.global_seq,
                    str(stray.account_id),
                    stray.account_seq,
                    "an entry the global chain does not hold",
                )
        personal = {
            part.global_seq: (part.salt, {"actor_name": part.actor_name, "reason": part.reason})
            for part in parts
        }
        accounts: dict[UUID, list[AuditEntry]] = {}
        for entry in entries:
            if account_id is None or entry.account_id == account_id:
                accounts.setdefault(entry.account_id, []).append(entry)
        if account_id is not None and whole:
            accounts.setdefault(account_id, [])
        for account, chain in sorted(accounts.items(), key=lambda item: str(item[0])):
            if finding is not None:
                break
            reference = self.reference(account)
            if reference in purged and chain:
                finding = Finding(
                    "inserted", None, str(account), None, "entries of an account purged"
                )
                break
            chain.sort(key=lambda e: e.account_seq)
            start_seq = chain[0].account_seq if chain and not whole else 1
            finding = check_account_chain(
                (entry.chained() for entry in chain),
                start_seq=start_seq,
                start_previous=openings.get((account, start_seq - 1), GENESIS_HASH),
                signed_head=heads.get(reference),
                personal=personal,
            )
            if finding is not None and finding.account_id is None:
                finding = Finding(
                    finding.problem,
                    finding.global_seq,
                    str(account),
                    finding.account_seq,
                    finding.detail,
                )
        return Verification(
            entries=len(entries), links=len(links), checkpoints=len(checkpoints), finding=finding
        )

    async def query(self, query: TrailQuery) -> list[tuple[AuditEntry, AuditPersonal | None]]:
        """Entries matching a query, a page at a time."""
        async with self.sessions() as session:
            return list(await query_trail(session, query))

    async def access_log(self, account_id: UUID) -> list[tuple[AuditEntry, AuditPersonal | None]]:
        """The account's trail, oldest first, with each entry's personal part if kept."""
        async with self.sessions() as session:
            repo = AuditRepository(session)
            entries = await repo.entries(account_id)
            parts = {part.global_seq: part for part in await repo.personal_parts(account_id)}
        return [(entry, parts.get(entry.global_seq)) for entry in entries]


# The fewest links a verification gives a process of its own: below it, starting a process
# costs more than it saves.
SCAN_PART_MIN = 100_000

# Namespace of the event ids of grant-expired entries (uuid5 of the grant id): each lapse once.
GRANT_LAPSE_NAMESPACE = UUID("6b1d4f0e-8a52-5c1e-9d3b-2f7a0c9e4b61")


def _next_link(head: ChainLink | None, global_seq: int, reference: str, digest: str) -> ChainLink:
    """The global chain's next link after `head`."""
    previous = head.hash if head else GENESIS_HASH
    return ChainLink(
        global_seq=global_seq,
        account_reference=reference,
        digest=digest,
        previous_hash=previous,
        hash=link(previous, digest),
    )


# COPY's columns: each table's, in the order `append_many` builds its rows.
ENTRY_COLUMNS = tuple(AuditEntry.model_fields)
PERSONAL_COLUMNS = tuple(AuditPersonal.model_fields)
LINK_COLUMNS = tuple(ChainLink.model_fields)
# How many accounts each staff member read since a time, counted up to a limit ($4).
MANY_ACCOUNTS_SQL = (
    "SELECT reader.actor_id, (SELECT count(*) FROM (SELECT DISTINCT e.account_id "
    "FROM audit_entry e WHERE e.actor_id = reader.actor_id AND e.kind = $3 "
    "AND e.occurred_at > reader.since LIMIT $4) AS read) "
    "FROM unnest($1::text[], $2::timestamptz[]) AS reader(actor_id, since)"
)
# Each account's newest entry, by a backward index scan per account (not all its entries).
ACCOUNT_HEADS_SQL = (
    "SELECT head.account_id, head.account_seq, head.account_hash "
    "FROM unnest($1::uuid[]) AS account(id) CROSS JOIN LATERAL ("
    "SELECT account_id, account_seq, account_hash FROM audit_entry "
    "WHERE account_id = account.id ORDER BY account_seq DESC LIMIT 1) AS head"
)
