"""The termination saga: export every slice, send the CSV bundle, purge everywhere, certify."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from datetime import UTC, datetime
from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from retention.domain import SagaStatus, account_reference, certificate_digest, records_to_csv
from retention.models import PurgeCertificate, TerminationSaga
from shared.contracts import (
    AccountPurged,
    AccountTerminated,
    Envelope,
    ExportAssembled,
    ExportDelivered,
    ExportRequested,
    ExportSliceWritten,
    PurgeCompleted,
    PurgeRequested,
)
from shared.db import SessionFactory, transaction
from shared.export_store import ExportStore, sha256_file
from shared.inbox import claim_event
from shared.outbox import Outbox, forget_account_events

log = logging.getLogger(__name__)


class RetentionService:
    """Runs termination sagas, one per account, each step in one transaction with its events."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        outbox: Outbox,
        export_store: ExportStore,
        participants: list[str],
        certificate_key: bytes,
    ) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.export_store = export_store
        self.participants = sorted(participants)
        self.certificate_key = certificate_key

    async def _saga(self, session: AsyncSession, saga_id: UUID) -> TerminationSaga | None:
        result = await session.exec(
            select(TerminationSaga).where(TerminationSaga.id == saga_id).with_for_update()
        )
        return result.first()

    async def start_termination(self, *, event: Envelope[AccountTerminated], consumer: str) -> bool:
        """Open the saga and ask every participant for its slice (TERMINATION)."""
        terminated = event.data
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return False
            saga = TerminationSaga(
                account_id=terminated.account_id,
                account_name=terminated.account_name,
                owner_email=terminated.owner_email,
                participants=self.participants,
                terminated_at=terminated.terminated_at,
                export_key="",
            )
            saga.export_key = f"termination-{saga.id}"
            session.add(saga)
            self.outbox.add(
                session,
                ExportRequested(
                    account_id=saga.account_id, saga_id=saga.id, export_key=saga.export_key
                ),
            )
        return True

    async def record_slice(self, *, event: Envelope[ExportSliceWritten], consumer: str) -> bool:
        """Note a participant's slice; when all are in, assemble the bundle and have it sent."""
        written = event.data
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return False
            saga = await self._saga(session, written.saga_id)
            if saga is None or saga.status is not SagaStatus.EXPORTING:
                log.warning("slice for saga %s that is not exporting; ignored", written.saga_id)
                return True
            saga.slices = {**saga.slices, written.service: [f.model_dump() for f in written.files]}
            if set(saga.slices) >= set(saga.participants):
                saga.bundle_key, saga.bundle_sha256 = self._assemble(saga)
                saga.status = SagaStatus.DELIVERING
                self.outbox.add(
                    session,
                    ExportAssembled(
                        account_id=saga.account_id,
                        saga_id=saga.id,
                        bundle_key=saga.bundle_key,
                        sha256=saga.bundle_sha256,
                        account_name=saga.account_name,
                        recipient_email=saga.owner_email,
                    ),
                )
            session.add(saga)
        return True

    def _assemble(self, saga: TerminationSaga) -> tuple[str, str]:
        """Write the ZIP of CSVs (one per service and record type) with a hashed manifest."""
        manifest: dict[str, object] = {
            "format": "RFC 4180 CSV, UTF-8; structured fields are canonical JSON",
            "account_id": str(saga.account_id),
            "saga_id": str(saga.id),
            "files": [],
        }
        files: list[dict[str, object]] = []
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for service in sorted(saga.slices):
                for file in sorted(saga.slices[service], key=lambda f: f["name"]):
                    records = self.export_store.read_slice(
                        export_key=saga.export_key, service=service, name=file["name"]
                    )
                    name = f"{service}-{file['record_type']}.csv"
                    content = records_to_csv(records).encode()
                    bundle.writestr(name, content)
                    files.append(
                        {
                            "name": name,
                            "records": len(records),
                            "sha256": hashlib.sha256(content).hexdigest(),
                        }
                    )
            manifest["files"] = files
            bundle.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
        key = f"{saga.export_key}/quittance-export-{saga.account_id}.zip"
        path = self.export_store.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(buffer.getvalue())
        partial.replace(path)
        for service in saga.slices:
            self.export_store.remove(f"{saga.export_key}/{service}")  # slices served their purpose
        return key, sha256_file(path)

    async def record_delivery(self, *, event: Envelope[ExportDelivered], consumer: str) -> bool:
        """The customer has their export: ask every participant to purge."""
        delivered = event.data
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return False
            saga = await self._saga(session, delivered.saga_id)
            if saga is None or saga.status is not SagaStatus.DELIVERING:
                return True
            saga.status = SagaStatus.PURGING
            saga.delivered_at = datetime.now(UTC)
            session.add(saga)
            self.outbox.add(session, PurgeRequested(account_id=saga.account_id, saga_id=saga.id))
        return True

    async def record_purge(self, *, event: Envelope[PurgeCompleted], consumer: str) -> bool:
        """Note a participant's purge; when all have purged, certify and forget the saga."""
        purged = event.data
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return False
            saga = await self._saga(session, purged.saga_id)
            if saga is None or saga.status is not SagaStatus.PURGING:
                return True
            saga.purged = {**saga.purged, purged.service: purged.rows_deleted}
            if set(saga.purged) < set(saga.participants):
                session.add(saga)
                return True
            certificate = self._certificate(saga)
            session.add(certificate)
            await session.delete(saga)
            # The saga is over: its events about the account are not kept for replay.
            await forget_account_events(session, account_id=saga.account_id)
            self.outbox.add(
                session,
                AccountPurged(
                    account_id=saga.account_id,
                    saga_id=saga.id,
                    certificate_id=certificate.id,
                    services=sorted(saga.purged),
                ),
                replayable=False,
            )
        return True

    def _certificate(self, saga: TerminationSaga) -> PurgeCertificate:
        assert saga.bundle_sha256 is not None
        assert saga.delivered_at is not None
        certificate = PurgeCertificate(
            saga_id=saga.id,
            account_reference=account_reference(saga.account_id, self.certificate_key),
            services=dict(sorted(saga.purged.items())),
            bundle_sha256=saga.bundle_sha256,
            terminated_at=saga.terminated_at,
            delivered_at=saga.delivered_at,
            completed_at=datetime.now(UTC),
            digest="",
        )
        certificate.digest = certificate_digest(
            certificate.model_dump(mode="json", exclude={"digest"})
        )
        return certificate

    async def certificate_for(self, account_id: UUID) -> PurgeCertificate | None:
        """The purge certificate of an account, found by its keyed reference."""
        reference = account_reference(account_id, self.certificate_key)
        async with self.sessions() as session:
            result = await session.exec(
                select(PurgeCertificate).where(PurgeCertificate.account_reference == reference)
            )
            return result.first()
