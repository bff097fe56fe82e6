"""The termination saga: collect every slice, send the CSV bundle (attached, or as a signed link
for the plan's grace period), purge everywhere, certify."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import zlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from opentelemetry import metrics, propagate, trace
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from retention.domain import (
    ExportLink,
    PlanTerms,
    Purge,
    SagaStatus,
    account_reference,
    certificate_payload,
    plan_terms,
)
from retention.models import AccountPlan, PurgeCertificate, TerminationSaga
from shared.contracts import (
    AccessActor,
    AccessPurpose,
    AccountPurged,
    AccountTerminated,
    DataAccessed,
    Envelope,
    ExportAssembled,
    ExportBundleChunk,
    ExportDelivered,
    ExportRequested,
    ExportSliceChunk,
    ExportSliceWritten,
    LegalHoldPlaced,
    LegalHoldReleased,
    PurgeCompleted,
    PurgeRequested,
)
from shared.db import SessionFactory
from shared.deflate import Zip64Writer
from shared.export_store import ExportStore
from shared.keystore import KeyStore
from shared.legal_holds import forget_holds, note_placed, note_released, standing_holds
from shared.outbox import forget_account_events
from shared.signing import SigningKey, key_id_of, verify
from shared.unit_of_work import UnitsOfWork, Work

log = logging.getLogger(__name__)

BUNDLE_NAME = "quittance-export.zip"
BUNDLE_CHUNK_BYTES = 448 * 1024  # in base64 and sealed, a chunk stays below 1 MB
PUBLISH_EVERY = 8  # chunks in flight at once
# Termination to certificate: minutes when all goes well, days under a grace period.
TERMINATION_BUCKETS_S = (10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400, 30 * 86400)


@dataclass(frozen=True)
class SagaTiming:
    """How long a step may take, and how often it is asked for before a person must look."""

    step_timeout: timedelta
    max_attempts: int


class RetentionService:
    """Runs termination sagas, one per account, each step in one unit of work with its events."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        units: UnitsOfWork,
        store: ExportStore,
        keys: KeyStore,
        participants: list[str],
        certificate_key: bytes,
        signing_key: SigningKey,
        timing: SagaTiming,
        plans: dict[str, PlanTerms],
        public_url: str,
        retired_public_keys: list[bytes] | None = None,
        meter: metrics.Meter | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.sessions = sessions
        self.tracer = tracer or trace.get_tracer("quittance.retention")
        self.units = units
        self.store = store
        self.keys = keys
        self.participants = sorted(participants)
        self.certificate_key = certificate_key
        self.signing_key = signing_key
        self.timing = timing
        self.plans = plans
        self.public_url = public_url.rstrip("/")
        # Every public key that verifies our signatures, by id: the current one and those
        # rotated out (published for the certificates they signed).
        self.public_keys = {signing_key.key_id: signing_key.public_pem()} | {
            key_id_of(pem): pem for pem in retired_public_keys or []
        }
        meter = meter or metrics.get_meter("quittance.retention")
        self._to_certificate = meter.create_histogram(
            "quittance.retention.termination.duration",
            unit="s",
            description="Time from an account's termination to its signed purge certificate.",
            explicit_bucket_boundaries_advisory=TERMINATION_BUCKETS_S,
        )
        self._sagas = meter.create_gauge(
            "quittance.retention.sagas",
            unit="{saga}",
            description="Termination sagas in flight, by step and whether one needs a person"
            " (held: a legal hold blocks the purge).",
        )
        self._held_purges = meter.create_gauge(
            "quittance.retention.purges.held",
            unit="{saga}",
            description="Terminations whose purge a legal hold blocks (LAW): exported, keys"
            " kept, waiting for the hold's release.",
        )

    async def _saga(self, session: AsyncSession, saga_id: UUID) -> TerminationSaga | None:
        result = await session.exec(
            select(TerminationSaga).where(TerminationSaga.id == saga_id).with_for_update()
        )
        return result.first()

    @contextmanager
    def _step(self, saga: TerminationSaga, step: str) -> Iterator[None]:
        """The span of one step of the saga, in the saga's own trace (the one its termination
        started), whatever woke the step: a participant's event of that trace, the deadline
        watch (no trace), a legal hold's release (another trace, linked). The events the step
        emits carry it on, so every service's part of the termination is in one trace."""
        current = trace.get_current_span().get_span_context()
        context, links = None, []
        if saga.trace_parent is None:  # the first step: the saga's trace is this one
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            saga.trace_parent = carrier.get("traceparent")
        else:
            started = propagate.extract({"traceparent": saga.trace_parent})
            origin = trace.get_current_span(started).get_span_context()
            if origin.trace_id != current.trace_id:
                context = started
                links = [trace.Link(current)] if current.is_valid else []
        with self.tracer.start_as_current_span(
            f"termination {step}",
            context=context,
            links=links,
            attributes={"quittance.saga.id": str(saga.id), "quittance.saga.step": step},
        ):
            yield

    def _next_step(self, saga: TerminationSaga, status: SagaStatus) -> None:
        saga.status = status
        saga.step_attempt = 1
        saga.step_deadline_at = datetime.now(UTC) + self.timing.step_timeout

    # ------------------------------------------------------------------ export

    async def start_termination(self, *, terminated: AccountTerminated, work: Work) -> None:
        """Open the saga and ask every participant for its slice (TERMINATION)."""
        existing = await work.session.exec(
            select(TerminationSaga).where(TerminationSaga.account_id == terminated.account_id)
        )
        if existing.first() is not None:
            log.warning("a termination of this account is already running; this one is ignored")
            return
        saga = TerminationSaga(
            account_id=terminated.account_id,
            account_name=terminated.account_name,
            owner_email=terminated.owner_email,
            participants=self.participants,
            terminated_at=terminated.terminated_at,
            step_deadline_at=datetime.now(UTC) + self.timing.step_timeout,
            plan=terminated.plan,
        )
        grace = plan_terms(self.plans, terminated.plan).grace_period
        if grace:  # read-only and downloadable until then (the account is already read-only)
            saga.purge_due_at = terminated.terminated_at + grace
        work.session.add(saga)
        with self._step(saga, "export"):
            work.emit(ExportRequested(account_id=saga.account_id, saga_id=saga.id))

    async def receive_slice_chunk(self, *, event: Envelope[ExportSliceChunk], work: Work) -> None:
        """Keep a chunk of a participant's slice; assemble when it was the last one missing."""
        chunk = event.data
        key = _chunk_key(chunk.saga_id, event.producer, chunk.transfer_id, chunk.file, chunk.index)
        # Kept deflated as it came: the bundle takes these bytes without compressing again.
        await asyncio.to_thread(self.store.write_bytes, key, base64.b64decode(chunk.content))
        await self._assemble_if_complete(chunk.saga_id, work)

    async def record_slice(self, *, event: Envelope[ExportSliceWritten], work: Work) -> None:
        """Note which files a participant sent; assemble when every slice is complete."""
        written = event.data
        saga = await self._saga(work.session, written.saga_id)
        if saga is None or saga.status is not SagaStatus.EXPORTING:
            log.info("a slice for a saga that is not exporting; ignored")
            return
        saga.slices = {
            **saga.slices,
            event.producer: {
                "transfer_id": str(written.transfer_id),
                "files": [f.model_dump() for f in written.files],
            },
        }
        work.session.add(saga)
        await self._assemble_if_complete(saga.id, work, saga=saga)

    async def _assemble_if_complete(
        self, saga_id: UUID, work: Work, *, saga: TerminationSaga | None = None
    ) -> None:
        saga = saga or await self._saga(work.session, saga_id)
        if saga is None or saga.status is not SagaStatus.EXPORTING:
            return
        if set(saga.slices) < set(saga.participants) or not await asyncio.to_thread(
            self._all_chunks_present, saga
        ):
            return
        try:
            size, sha256, saga.manifest_sha256 = await asyncio.to_thread(self._assemble, saga)
        except _CorruptSliceError as exc:
            # A chunk did not add up to what its participant hashed: ask for that slice again.
            log.error("slice of %s failed its checksum; asking for it again", exc.service)
            saga.slices = {k: v for k, v in saga.slices.items() if k != exc.service}
            saga.step_attempt += 1
            work.session.add(saga)
            with self._step(saga, "export"):
                work.emit(
                    ExportRequested(
                        account_id=saga.account_id, saga_id=saga.id, attempt=saga.step_attempt
                    )
                )
            return
        with self._step(saga, "deliver"):
            await self._send_bundle(saga, size=size, sha256=sha256, work=work)
        work.after_commit(self.store.removal(f"{saga.id}/slices"))

    def _all_chunks_present(self, saga: TerminationSaga) -> bool:
        # One directory read per slice, not a look-up per chunk: this runs for every chunk.
        return all(
            self.store.count(f"{saga.id}/slices/{service}/{slice_['transfer_id']}")
            >= sum(file["chunks"] for file in slice_["files"])
            for service, slice_ in saga.slices.items()
        )

    def _assemble(self, saga: TerminationSaga) -> tuple[int, str, str]:
        """Write the ZIP of CSVs (one per service and table) with a manifest, streaming.

        The participants' deflate pieces go into the ZIP as they are; each file is inflated
        once on the way only to check it against the CRC-32 its participant computed.
        """
        manifest: dict[str, Any] = {
            "format": "RFC 4180 CSV, UTF-8, with a header row; structured fields are JSON",
            "saga_id": str(saga.id),
            "terminated_at": saga.terminated_at.isoformat(),
            "files": [],
        }
        key = f"{saga.id}/bundle/{BUNDLE_NAME}"
        with self.store.writer(key) as handle:
            bundle = Zip64Writer(handle)
            for service in sorted(saga.slices):
                slice_ = saga.slices[service]
                for file in sorted(slice_["files"], key=lambda f: f["name"]):
                    check = _InflatingCheck()
                    bundle.add_deflated(
                        f"{service}-{file['record_type']}.csv",
                        check.through(self._pieces(saga, service, slice_, file)),
                        crc32=file["crc32"],
                        size=file["size"],
                    )
                    if not check.matches(crc32=file["crc32"], size=file["size"]):
                        raise _CorruptSliceError(service)
                    manifest["files"].append(
                        {
                            "name": f"{service}-{file['record_type']}.csv",
                            "records": file["records"],
                            "sha256": file["sha256"],
                        }
                    )
            manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
            bundle.add_bytes("manifest.json", manifest_bytes)
            bundle.close()
        # The certificate names the manifest: the customer hashes the one in their bundle.
        manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
        return self.store.size(key), self.store.sha256(key), manifest_sha256

    def _pieces(
        self, saga: TerminationSaga, service: str, slice_: dict[str, Any], file: dict[str, Any]
    ) -> Iterator[bytes]:
        for index in range(file["chunks"]):
            chunk_key = _chunk_key(saga.id, service, slice_["transfer_id"], file["name"], index)
            with self.store.reader(chunk_key) as chunk:
                yield chunk.read()

    async def _send_bundle(
        self, saga: TerminationSaga, *, size: int, sha256: str, work: Work
    ) -> None:
        """Ask notifications to mail the bundle: with a grace period, a signed link to it that
        works until the purge; without one, the bundle itself, sent as sealed chunks."""
        transfer_id = uuid4()
        if saga.purge_due_at is not None and saga.purge_due_at > datetime.now(UTC):
            link = ExportLink(
                saga_id=saga.id,
                account_id=saga.account_id,
                expires=int(saga.purge_due_at.timestamp()),
            )
            signature = self.signing_key.sign(link.message())
            url = f"{self.public_url}/exports/download?{link.query(signature)}"
            self._assembled(saga, transfer_id, 0, size, sha256, work, url)
            return
        chunks = 0
        batch: list[ExportBundleChunk] = []
        key = f"{saga.id}/bundle/{BUNDLE_NAME}"
        with await asyncio.to_thread(self.store.reader, key) as bundle:
            while block := await asyncio.to_thread(bundle.read, BUNDLE_CHUNK_BYTES):
                batch.append(
                    ExportBundleChunk(
                        account_id=saga.account_id,
                        saga_id=saga.id,
                        transfer_id=transfer_id,
                        index=chunks,
                        content=base64.b64encode(block).decode("ascii"),
                    )
                )
                chunks += 1
                if len(batch) == PUBLISH_EVERY:
                    await work.publish_now(batch)
                    batch = []
        await work.publish_now(batch)
        self._assembled(saga, transfer_id, max(chunks, 1), size, sha256, work, None)

    def _assembled(
        self,
        saga: TerminationSaga,
        transfer_id: UUID,
        chunks: int,
        size: int,
        sha256: str,
        work: Work,
        download_url: str | None,
    ) -> None:
        saga.bundle_transfer_id, saga.bundle_size, saga.bundle_sha256 = transfer_id, size, sha256
        self._next_step(saga, SagaStatus.DELIVERING)
        work.session.add(saga)
        work.emit(
            ExportAssembled(
                account_id=saga.account_id,
                saga_id=saga.id,
                transfer_id=transfer_id,
                chunks=chunks,
                file_name=BUNDLE_NAME,
                size=size,
                sha256=sha256,
                account_name=saga.account_name,
                recipient_email=saga.owner_email,
                download_url=download_url,
                link_expires_at=saga.purge_due_at if download_url else None,
            )
        )

    # ------------------------------------------------------------------ delivery and purge

    async def record_delivery(self, *, delivered: ExportDelivered, work: Work) -> None:
        """The customer has their export: ask every participant to purge, unless a legal
        hold stands (then the saga waits, keys and all, until it is released)."""
        saga = await self._saga(work.session, delivered.saga_id)
        if saga is None or saga.status is not SagaStatus.DELIVERING:
            return
        saga.delivered_at = datetime.now(UTC)
        if saga.purge_due_at is not None and saga.purge_due_at > saga.delivered_at:
            # The grace period: the link works, nothing is purged; the deadline watch goes on
            # at its end.
            with self._step(saga, "grace"):
                self._next_step(saga, SagaStatus.GRACE)
                saga.step_deadline_at = saga.purge_due_at
                work.session.add(saga)
            return
        await self._purge_unless_held(saga, work)

    async def _purge_unless_held(self, saga: TerminationSaga, work: Work) -> None:
        holds = await standing_holds(work.session, saga.account_id)
        if holds:
            with self._step(saga, "hold"):
                self._next_step(saga, SagaStatus.HELD)
                saga.waiting_for_holds = [str(hold) for hold in holds]
                work.session.add(saga)
            log.warning("saga %s waits: %d legal hold(s) stand", saga.id, len(holds))
            return
        with self._step(saga, "purge"):
            await self._purge(saga, work)

    async def _purge(self, saga: TerminationSaga, work: Work) -> None:
        # The customer has everything; nobody needs to read the account's events again. The
        # key goes now, before the purges: every copy of those events (topics, dead letters,
        # broker backups) becomes unreadable, and an event that reaches a participant late
        # can no longer put a row back after its purge. Destroying twice is harmless.
        saga.destroyed_keys = sorted(
            {*saga.destroyed_keys, *await self.keys.destroy(saga.account_id)}
        )
        self._next_step(saga, SagaStatus.PURGING)
        saga.waiting_for_holds = []
        work.session.add(saga)
        work.after_commit(self.store.removal(f"{saga.id}/bundle"))  # the link dies with it
        work.emit(
            PurgeRequested(account_id=saga.account_id, saga_id=saga.id, attempt=saga.step_attempt)
        )

    async def note_hold_placed(self, *, placed: LegalHoldPlaced, work: Work) -> None:
        """Keep the hold; a saga still purging stops asking (what is purged stays purged)."""
        await note_placed(work.session, placed)
        saga = await self._saga_of_account(work.session, placed.account_id)
        if saga is not None and saga.status is SagaStatus.PURGING:
            with self._step(saga, "hold"):
                self._next_step(saga, SagaStatus.HELD)
                saga.waiting_for_holds = [str(placed.hold_id)]
                work.session.add(saga)

    async def note_hold_released(self, *, released: LegalHoldReleased, work: Work) -> None:
        """Drop the hold; a saga that waited for it goes on when no other hold stands."""
        await note_released(work.session, released)
        saga = await self._saga_of_account(work.session, released.account_id)
        if saga is not None and saga.status is SagaStatus.HELD:
            await self._purge_unless_held(saga, work)

    async def _saga_of_account(
        self, session: AsyncSession, account_id: UUID
    ) -> TerminationSaga | None:
        result = await session.exec(
            select(TerminationSaga)
            .where(TerminationSaga.account_id == account_id)
            .with_for_update()
        )
        return result.first()

    async def record_purge(self, *, event: Envelope[PurgeCompleted], work: Work) -> None:
        """Note a participant's purge; when all have purged, certify and forget the saga."""
        purged = event.data
        saga = await self._saga(work.session, purged.saga_id)
        if saga is None or saga.status is not SagaStatus.PURGING:
            return
        saga.purged = {**saga.purged, event.producer: purged.rows_deleted}
        saga.purged_at = {**saga.purged_at, event.producer: event.time.isoformat()}
        if set(saga.purged) < set(saga.participants):
            work.session.add(saga)
            return
        with self._step(saga, "certificate"):
            await self._certify(saga, work)

    async def _certify(self, saga: TerminationSaga, work: Work) -> None:
        certificate = self._certificate(saga, saga.destroyed_keys)
        work.session.add(certificate)
        await work.session.delete(saga)
        await forget_account_events(work.session, account_id=saga.account_id)
        await forget_holds(work.session, saga.account_id)  # released: nothing of it stays
        plan = await work.session.get(AccountPlan, saga.account_id)
        if plan is not None:
            await work.session.delete(plan)
        work.emit(
            AccountPurged(
                account_id=saga.account_id,
                saga_id=saga.id,
                certificate_id=certificate.id,
                services=sorted(saga.purged),
                certificate=certificate.payload,
                signature=certificate.signature,
                signing_key_id=certificate.signing_key_id,
            ),
            replayable=False,
        )
        work.after_commit(self.store.removal(str(saga.id)))  # the bundle goes with the saga
        took = (certificate.completed_at - saga.terminated_at).total_seconds()

        async def measure() -> None:
            self._to_certificate.record(took)

        work.after_commit(measure)

    def _certificate(self, saga: TerminationSaga, destroyed_keys: list[str]) -> PurgeCertificate:
        """The purge certificate, signed: what was exported, what each service deleted and
        when, which keys were destroyed; verifiable offline with the published public key."""
        assert saga.bundle_sha256 is not None
        assert saga.delivered_at is not None
        certificate = PurgeCertificate(
            saga_id=saga.id,
            account_reference=account_reference(saga.account_id, self.certificate_key),
            services=dict(sorted(saga.purged.items())),
            destroyed_keys=sorted(destroyed_keys),
            bundle_sha256=saga.bundle_sha256,
            terminated_at=saga.terminated_at,
            delivered_at=saga.delivered_at,
            completed_at=datetime.now(UTC),
            digest="",
            signing_key_id=self.signing_key.key_id,
        )
        payload = certificate_payload(
            certificate_id=certificate.id,
            saga_id=certificate.saga_id,
            account_reference=certificate.account_reference,
            bundle_sha256=certificate.bundle_sha256,
            manifest_sha256=saga.manifest_sha256,
            purges={
                service: Purge(rows=rows, at=saga.purged_at.get(service, ""))
                for service, rows in saga.purged.items()
            },
            destroyed_keys=certificate.destroyed_keys,
            terminated_at=certificate.terminated_at,
            delivered_at=certificate.delivered_at,
            completed_at=certificate.completed_at,
            signing_key_id=self.signing_key.key_id,
        )
        certificate.payload = payload.decode()
        certificate.digest = hashlib.sha256(payload).hexdigest()
        certificate.signature = base64.b64encode(self.signing_key.sign(payload)).decode()
        return certificate

    # ------------------------------------------------------------------ deadlines

    async def chase_overdue_steps(self, now: datetime | None = None) -> int:
        """Ask again for every overdue step; past its attempts, mark the saga for a person."""
        now = now or datetime.now(UTC)
        chased = 0
        async with self.units() as work:
            overdue = await work.session.exec(
                select(TerminationSaga)
                .where(
                    col(TerminationSaga.step_deadline_at) < now,
                    col(TerminationSaga.needs_attention).is_(None),
                )
                .order_by(col(TerminationSaga.step_deadline_at))
                .limit(100)
                .with_for_update(skip_locked=True)
            )
            for saga in overdue.all():
                chased += 1
                if saga.status in (SagaStatus.HELD, SagaStatus.GRACE):
                    # Waiting for the law, or for the grace period's end, is not a stall: look
                    # again, go on if the hold ended (the grace period has).
                    await self._purge_unless_held(saga, work)
                    continue
                if saga.step_attempt >= self.timing.max_attempts:
                    saga.needs_attention = (
                        f"{saga.status} step overdue after {saga.step_attempt} requests; "
                        f"waiting for {', '.join(self._missing(saga)) or 'nothing'}"
                    )
                    log.error(
                        "termination saga %s needs a person: %s", saga.id, saga.needs_attention
                    )
                else:
                    saga.step_attempt += 1
                    saga.step_deadline_at = now + self.timing.step_timeout
                    with self._step(saga, f"{saga.status} again"):
                        self._request_again(saga, work)
                work.session.add(saga)
        return chased

    def waiting_for(self, saga: TerminationSaga) -> list[str]:
        """The services the saga's current step still waits for."""
        return self._missing(saga)

    def steps(self, saga: TerminationSaga) -> list[dict[str, Any]]:
        """The saga's steps in order, each done, current or pending; the current one with
        what it waits for, and each participant's part of the export and purge."""
        order = [
            (SagaStatus.EXPORTING, "export", sorted(saga.slices)),
            (SagaStatus.DELIVERING, "delivery", ["notifications"] if saga.delivered_at else []),
            (SagaStatus.GRACE, "grace period", []),
            (SagaStatus.HELD, "legal hold", []),
            (SagaStatus.PURGING, "purge", sorted(saga.purged)),
        ]
        if saga.status is not SagaStatus.HELD:
            order = [step for step in order if step[0] is not SagaStatus.HELD]
        if saga.purge_due_at is None:
            order = [step for step in order if step[0] is not SagaStatus.GRACE]
        current = next(i for i, (status, _, _) in enumerate(order) if status is saga.status)
        steps: list[dict[str, Any]] = []
        for index, (_, name, done_by) in enumerate(order):
            state = "done" if index < current else "current" if index == current else "pending"
            step: dict[str, Any] = {"step": name, "state": state, "done_by": done_by}
            if state == "current":
                step["waiting_for"] = self._missing(saga)
                step["attempt"] = saga.step_attempt
            steps.append(step)
        steps.append({"step": "certificate", "state": "pending", "done_by": []})
        return steps

    def _missing(self, saga: TerminationSaga) -> list[str]:
        done: dict[str, Any] = {
            SagaStatus.EXPORTING: saga.slices,
            SagaStatus.PURGING: saga.purged,
        }.get(saga.status, {})
        if saga.status is SagaStatus.DELIVERING:
            return ["notifications"]
        if saga.status is SagaStatus.HELD:
            return [f"legal hold {hold}" for hold in saga.waiting_for_holds]
        if saga.status is SagaStatus.GRACE and saga.purge_due_at is not None:
            return [f"the grace period's end at {saga.purge_due_at.isoformat()}"]
        return sorted(set(saga.participants) - set(done))

    def _request_again(self, saga: TerminationSaga, work: Work) -> None:
        log.warning("saga %s: %s step overdue, asking again", saga.id, saga.status)
        if saga.status is SagaStatus.EXPORTING:
            work.emit(
                ExportRequested(
                    account_id=saga.account_id, saga_id=saga.id, attempt=saga.step_attempt
                )
            )
        elif saga.status is SagaStatus.DELIVERING:
            work.after_commit(self._resender(saga.id))
        else:
            work.emit(
                PurgeRequested(
                    account_id=saga.account_id, saga_id=saga.id, attempt=saga.step_attempt
                )
            )

    def _resender(self, saga_id: UUID) -> Callable[[], Awaitable[None]]:
        async def resend() -> None:
            async with self.units() as work:
                saga = await self._saga(work.session, saga_id)
                if saga is None or saga.status is not SagaStatus.DELIVERING:
                    return
                assert saga.bundle_size is not None
                assert saga.bundle_sha256 is not None
                with self._step(saga, "deliver"):
                    await self._send_bundle(
                        saga, size=saga.bundle_size, sha256=saga.bundle_sha256, work=work
                    )

        return resend

    # ------------------------------------------------------------------ the export link

    def check_link(self, link: ExportLink, signature: bytes, now: datetime | None = None) -> str:
        """Why the link does not open the export ("" when it does): signed by this service
        for this saga and account, and not past its end."""
        message = link.message()
        if not any(verify(pem, message, signature) for pem in self.public_keys.values()):
            return "forged"
        if (now or datetime.now(UTC)).timestamp() >= link.expires:
            return "expired"
        return ""

    async def open_download(self, link: ExportLink) -> tuple[str, int] | None:
        """Record a download of the account's export as a data access, then give the bundle's
        store key and size; None once the saga is past its grace period (the link died)."""
        async with self.units() as work:
            saga = await self._saga(work.session, link.saga_id)
            if (
                saga is None
                or saga.account_id != link.account_id
                or saga.status not in (SagaStatus.DELIVERING, SagaStatus.GRACE)
                or saga.bundle_size is None
            ):
                return None
            saga.downloads += 1
            work.session.add(saga)
            work.emit(
                DataAccessed(
                    account_id=saga.account_id,
                    access_id=uuid4(),
                    actor=AccessActor.EXPORT_LINK,
                    actor_id="export-link",
                    actor_name="the holder of the export link mailed to the account's owner",
                    purpose=AccessPurpose.CUSTOMER_SELF_SERVICE,
                    reason="the termination's export was downloaded",
                    grant_id=None,
                    resource_type="export_bundle",
                    resource_id=str(saga.id),
                    accessed_at=datetime.now(UTC),
                )
            )
            return f"{saga.id}/bundle/{BUNDLE_NAME}", saga.bundle_size

    async def certificate(self, certificate_id: UUID) -> PurgeCertificate | None:
        """A purge certificate by its id."""
        async with self.sessions() as session:
            return await session.get(PurgeCertificate, certificate_id)

    async def sagas(self) -> list[TerminationSaga]:
        """Every saga in flight, those needing a person first (for operators)."""
        async with self.sessions() as session:
            result = await session.exec(
                select(TerminationSaga).order_by(
                    col(TerminationSaga.needs_attention).is_(None),
                    col(TerminationSaga.step_deadline_at),
                )
            )
            return list(result.all())

    async def measure_sagas(self) -> None:
        """Set the sagas gauge: how many are at each step, and how many of them need a person
        (every pair, zeros too, so a saga that moved on leaves no stale count)."""
        async with self.sessions() as session:
            rows = await session.exec(
                select(
                    TerminationSaga.status,
                    col(TerminationSaga.needs_attention).is_not(None),
                    func.count(),
                ).group_by(
                    TerminationSaga.status, col(TerminationSaga.needs_attention).is_not(None)
                )
            )
            counts = {(status, bool(stuck)): number for status, stuck, number in rows.all()}
        self._held_purges.set(
            sum(n for (status, _), n in counts.items() if status == SagaStatus.HELD)
        )
        for status in SagaStatus:
            for stuck in (False, True):
                self._sagas.set(
                    counts.get((status, stuck), 0),
                    {"status": status.value, "needs_person": str(stuck).lower()},
                )

    async def run_deadline_watch(self, interval_s: float) -> None:
        """Forever: chase overdue steps (instances skip each other's locked rows), then
        measure where the sagas stand."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.chase_overdue_steps()
                await self.measure_sagas()
            except Exception:
                log.exception("chasing overdue saga steps failed; trying again")


class _InflatingCheck:
    """Inflates deflate pieces as they pass, to check them against a CRC-32 and a size."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(-15)
        self._crc32 = 0
        self._size = 0
        self._broken = False

    def through(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        """Yield the pieces unchanged, checking each on the way."""
        for piece in pieces:
            try:
                content = self._inflater.decompress(piece)
            except zlib.error:
                self._broken = True
                content = b""
            self._crc32 = zlib.crc32(content, self._crc32)
            self._size += len(content)
            yield piece

    def matches(self, *, crc32: int, size: int) -> bool:
        """Whether what passed inflates to the announced content."""
        return not self._broken and self._crc32 == crc32 and self._size == size


class _CorruptSliceError(Exception):
    def __init__(self, service: str) -> None:
        super().__init__(service)
        self.service = service


def _chunk_key(saga_id: UUID, service: str, transfer_id: Any, file: str, index: int) -> str:
    return f"{saga_id}/slices/{service}/{transfer_id}/{file}.{index:06d}"


async def certificate_for(
    sessions: SessionFactory, *, account_id: UUID, certificate_key: bytes
) -> PurgeCertificate | None:
    """The purge certificate of an account, found by its keyed reference."""
    reference = account_reference(account_id, certificate_key)
    async with sessions() as session:
        result = await session.exec(
            select(PurgeCertificate).where(PurgeCertificate.account_reference == reference)
        )
        return result.first()
