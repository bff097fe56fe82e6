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
from uuid import UUID, uuid4

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, delete, select

from audit.domain import (
    GENESIS_HASH,
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
)
from audit.repository import AuditRepository, TrailQuery, query_trail
from shared.contracts import (
    AccessActor,
    AccessGrantChanged,
    AccessOutcome,
    AccessPurpose,
    AuditAlertRaised,
    DataAccessed,
    Envelope,
    LegalHoldPlaced,
    LegalHoldReleased,
    PurgeRequested,
)
from shared.db import SessionFactory
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
    ) -> None:
        self.sessions = sessions
        self.units = units
        self.reference_key = reference_key
        self.signing_key = signing_key
        self.alert_accounts_per_hour = alert_accounts_per_hour

    def reference(self, account_id: UUID) -> str:
        """The account's keyed reference."""
        return account_reference(account_id, self.reference_key)

    # ------------------------------------------------------------------ recording

    async def record_access(self, *, event: Envelope[DataAccessed], work: Work) -> None:
        """Append an access, granted or refused, to the chains (STAFF-ACCESS, PURPOSE)."""
        access = event.data
        await self.append(
            work,
            Act(
                account_id=access.account_id,
                event_id=event.id,
                kind=EntryKind.DATA_ACCESS,
                actor_type=access.actor,
                actor_id=access.actor_id,
                purpose=access.purpose,
                grant_id=access.grant_id,
                outcome=access.outcome,
                resource_type=access.resource_type,
                resource_id=access.resource_id,
                occurred_at=access.accessed_at,
                actor_name=access.actor_name,
                reason=access.reason,
            ),
        )
        await self._alert_if_needed(event, work)

    async def _alert_if_needed(self, event: Envelope[DataAccessed], work: Work) -> None:
        """Raise an alert for a read under a grant that had ended, or for a staff member
        reading more accounts in an hour than the limit (each alert once)."""
        access = event.data
        if access.outcome == AccessOutcome.GRANTED and access.grant_id is not None:
            mark = await work.session.get(GrantMark, access.grant_id)
            ended = mark is not None and (
                mark.expires_at <= access.accessed_at
                or (mark.revoked_at is not None and mark.revoked_at <= access.accessed_at)
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
            window = access.accessed_at - timedelta(hours=1)
            accounts = await work.session.exec(
                select(func.count(func.distinct(AuditEntry.account_id))).where(
                    AuditEntry.actor_id == access.actor_id,
                    AuditEntry.kind == EntryKind.DATA_ACCESS,
                    col(AuditEntry.occurred_at) > window,
                )
            )
            count = accounts.one()
            if count > self.alert_accounts_per_hour:
                hour = access.accessed_at.astimezone(UTC).strftime("%Y-%m-%dT%H")
                await self._raise(
                    work,
                    AlertKind.MANY_ACCOUNTS_READ,
                    access.actor_id,
                    f"many:{access.actor_id}:{hour}",
                    f"{count} accounts read within an hour (limit {self.alert_accounts_per_hour})",
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

    async def append(self, work: Work, act: Act) -> AuditEntry:
        """Chain the act after the account's head and the global head, under the chains' lock;
        its personal part apart, committed to with a fresh salt."""
        repo = AuditRepository(work.session)
        await repo.lock_chains()
        global_head = await repo.global_head()
        account_head = await repo.account_head(act.account_id)
        salt = secrets.token_hex(16)
        entry = AuditEntry(
            global_seq=(global_head.global_seq + 1) if global_head else 1,
            account_id=act.account_id,
            account_seq=(account_head.account_seq + 1) if account_head else 1,
            event_id=act.event_id,
            kind=act.kind,
            actor_type=act.actor_type,
            actor_id=act.actor_id,
            purpose=act.purpose,
            grant_id=act.grant_id,
            outcome=act.outcome,
            resource_type=act.resource_type,
            resource_id=act.resource_id,
            # In UTC: the database gives it back so, and the digest must come out the same.
            occurred_at=act.occurred_at.astimezone(UTC),
            recorded_at=datetime.now(UTC),
            personal_commitment=personal_commitment(
                salt, {"actor_name": act.actor_name, "reason": act.reason}
            ),
            account_previous_hash=account_head.account_hash if account_head else GENESIS_HASH,
            account_hash="",
        )
        digest = entry_digest(entry.chained_fields())
        entry.account_hash = link(entry.account_previous_hash, digest)
        previous = global_head.hash if global_head else GENESIS_HASH
        work.session.add(entry)
        await work.session.flush()  # the entry before what references it
        work.session.add(
            AuditPersonal(
                global_seq=entry.global_seq,
                account_id=act.account_id,
                salt=salt,
                actor_name=act.actor_name,
                reason=act.reason,
            )
        )
        work.session.add(
            ChainLink(
                global_seq=entry.global_seq,
                account_reference=self.reference(act.account_id),
                digest=digest,
                previous_hash=previous,
                hash=link(previous, digest),
            )
        )
        return entry

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
        """Forever: a checkpoint each interval; a failure waits for the next."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.checkpoint()
            except Exception:
                log.exception("signing a checkpoint failed; trying again next round")

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

    async def verify(self, account_id: UUID | None = None) -> Verification:
        """Check the global chain, then each account's (or one account's) against the signed
        checkpoints; the first thing wrong is named."""
        async with self.sessions() as session:
            repo = AuditRepository(session)
            checkpoints = list(await repo.checkpoints())
            links = list(await repo.links())
            entries = list(await repo.all_entries())
            parts = await repo.personal_parts(account_id)
            purged = await repo.purged_references()
        finding, global_head, heads = self._signed_heads(checkpoints)
        by_seq = {entry.global_seq: entry.chained() for entry in entries}
        if finding is None:
            finding = check_global_chain(
                (
                    Link(x.global_seq, x.account_reference, x.digest, x.previous_hash, x.hash)
                    for x in links
                ),
                by_seq,
                purged=purged,
                signed_head=global_head,
            )
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
        if account_id is not None:
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
            finding = check_account_chain(
                (entry.chained() for entry in sorted(chain, key=lambda e: e.account_seq)),
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
