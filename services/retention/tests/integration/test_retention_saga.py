"""The termination saga on the real database and broker; the test plays the participants."""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.testing import eventually, produce, read_events, rows_mentioning, running, sealed
from retention.domain import certificate_digest
from retention.main import create_app
from retention.services import RetentionService
from retention.settings import RetentionSettings
from shared.contracts import (
    AccountTerminated,
    ExportDelivered,
    ExportSliceWritten,
    PurgeCompleted,
    new_envelope,
)
from shared.db import create_engine, create_session_factory
from shared.export_store import ExportStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(service_env: Callable[[str], dict[str, Any]]) -> RetentionSettings:
    return RetentionSettings(**service_env("retention"), certificate_key="test-certificate-key")  # type: ignore[arg-type]


async def _publish(settings: RetentionSettings, data: Any, source: str) -> None:
    envelope = new_envelope(data, source=source)
    await produce(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic(envelope.type),
        await sealed(envelope, settings.keystore),
        key=envelope.subject.encode(),
        headers=[("content-type", b"application/json")],
    )


async def _next(settings: RetentionSettings, topic: str, account_id: uuid.UUID) -> dict[str, Any]:
    events = await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic(topic),
        count=1,
        key=str(account_id),
        timeout=60,
        keystore=settings.keystore,
    )
    assert events, f"no {topic} for the account"
    data: dict[str, Any] = events[0]["data"]
    return data


async def test_termination_exports_delivers_purges_and_certifies_across_a_restart(
    settings: RetentionSettings,
) -> None:
    account_id = uuid.uuid4()
    store = ExportStore(settings.export_store_path)
    async with running(create_app(settings)):
        await _publish(
            settings,
            AccountTerminated(
                account_id=account_id,
                account_name="Acme",
                owner_email="ada@acme.example.com",
                terminated_at=datetime.now(UTC),
            ),
            "billing",
        )
        request = await _next(settings, "export.requested", account_id)
        saga_id = uuid.UUID(request["saga_id"])
        slices = {
            "billing": (
                "customer",
                [{"name": "=cmd()", "email": "bob@x.example", "tags": {"vip": True}}],
            ),
            "notifications": ("email", [{"subject": "Invoice INV-1"}]),
            "audit": ("data_access", [{"purpose": "support"}]),
        }
        for service, (record_type, records) in slices.items():
            file = store.write_slice(
                export_key=request["export_key"],
                service=service,
                record_type=record_type,
                records=records,
            )
            await _publish(
                settings,
                ExportSliceWritten(
                    account_id=account_id, saga_id=saga_id, service=service, files=[file]
                ),
                service,
            )
        assembled = await _next(settings, "export.assembled", account_id)

    assert assembled["recipient_email"] == "ada@acme.example.com"
    bundle = zipfile.ZipFile(store.path(assembled["bundle_key"]))
    assert sorted(bundle.namelist()) == [
        "audit-data_access.csv",
        "billing-customer.csv",
        "manifest.json",
        "notifications-email.csv",
    ]
    row = next(csv.DictReader(io.StringIO(bundle.read("billing-customer.csv").decode())))
    assert row["name"] == "'=cmd()", "formula-safe"
    assert json.loads(row["tags"]) == {"vip": True}, "structured fields are JSON"
    manifest = json.loads(bundle.read("manifest.json"))
    assert {f["name"]: f["records"] for f in manifest["files"]}["billing-customer.csv"] == 1

    # Retention was down while the export was delivered: the saga resumes from its table.
    await _publish(
        settings,
        ExportDelivered(account_id=account_id, saga_id=saga_id, message_id="<m@x>"),
        "notifications",
    )
    async with running(create_app(settings)):
        await _next(settings, "purge.requested", account_id)
        for service in ("billing", "notifications", "audit"):
            await _publish(
                settings,
                PurgeCompleted(
                    account_id=account_id, saga_id=saga_id, service=service, rows_deleted=3
                ),
                service,
            )
        purged = await _next(settings, "account.purged", account_id)

    assert purged["services"] == ["audit", "billing", "notifications"]

    async def nothing_left() -> bool:  # account.purged leaves the outbox once acknowledged
        return await rows_mentioning(settings.database_url, str(account_id)) == {}

    await eventually(nothing_left, timeout=15, what="no row about the account")
    assert await rows_mentioning(settings.database_url, str(purged["certificate_id"])) == {
        "purge_certificate": 1
    }

    # The certificate is found from the account id alone (by its keyed hash) and verifies.
    engine = create_engine(settings.database_url)
    try:
        service = RetentionService(
            sessions=create_session_factory(engine),
            export_store=store,
            participants=settings.participants,
            certificate_key=settings.certificate_key.get_secret_value().encode(),
        )
        certificate = await service.certificate_for(account_id)
    finally:
        await engine.dispose()
    assert certificate is not None
    assert str(certificate.id) == purged["certificate_id"]
    assert certificate.services == {"audit": 3, "billing": 3, "notifications": 3}
    assert certificate.digest == certificate_digest(
        certificate.model_dump(mode="json", exclude={"digest"})
    )
