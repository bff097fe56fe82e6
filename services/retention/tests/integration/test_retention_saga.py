"""The termination saga on the real database and broker; the test plays the participants."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import shutil
import subprocess
import uuid
import zipfile
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlmodel import select

from devstack.testing import eventually, produce, read_events, rows_mentioning, running, sealed
from retention.domain import ExportLink
from retention.main import create_app
from retention.services import certificate_for
from retention.settings import RetentionSettings
from retention.verify_certificate import check
from shared.contracts import (
    AccountTerminated,
    ExportDelivered,
    ExportFile,
    ExportSliceChunk,
    ExportSliceWritten,
    LegalHoldPlaced,
    LegalHoldReleased,
    PurgeCompleted,
    new_envelope,
)
from shared.crypto import KeyDestroyedError
from shared.db import create_engine, create_session_factory
from shared.deflate import deflate_piece
from shared.export_store import FolderExportStore
from shared.keystore import create_key_store
from shared.signing import SigningKey
from shared.telemetry import create_telemetry

pytestmark = pytest.mark.integration
PARTICIPANTS = ("billing", "notifications", "audit")
# The README's offline check uses the openssl command; Debian and macOS ship it.
OPENSSL = shutil.which("openssl") or "openssl"


@pytest.fixture(scope="module")
def settings(service_env: Callable[[str], dict[str, Any]]) -> RetentionSettings:
    return RetentionSettings(
        **service_env("retention"),
        certificate_key="test-certificate-key",  # type: ignore[arg-type]
        certificate_signing_key=SigningKey.generate().private_pem(),  # type: ignore[arg-type]
    )


async def _publish(settings: RetentionSettings, data: Any, source: str) -> None:
    envelope = new_envelope(data, source=source)
    await produce(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic(envelope.type),
        await sealed(envelope, settings.keystore),
        key=envelope.subject.encode(),
        headers=[("content-type", b"application/json")],
    )


async def _events(
    settings: RetentionSettings, topic: str, account_id: uuid.UUID, count: int = 1
) -> list[dict[str, Any]]:
    events = await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic(topic),
        count=count,
        key=str(account_id),
        timeout=60,
        keystore=settings.keystore,
    )
    assert len(events) >= count, f"no {topic} for the account"
    return [event["data"] for event in events]


async def _terminate(settings: RetentionSettings, account_id: uuid.UUID) -> None:
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


async def _send_slice(
    settings: RetentionSettings,
    *,
    service: str,
    account_id: uuid.UUID,
    saga_id: uuid.UUID,
    files: dict[str, bytes],
    chunk_bytes: int = 40,
    summary_first: bool = False,
    corrupt: bool = False,
) -> None:
    """Play a participant: its files as chunks, then the summary (or the other way round)."""
    transfer_id = uuid.uuid4()
    chunks: list[ExportSliceChunk] = []
    summary: list[ExportFile] = []
    for name, content in files.items():
        pieces = [content[i : i + chunk_bytes] for i in range(0, len(content), chunk_bytes)]
        for index, piece in enumerate(pieces):
            if corrupt and index == 0:
                piece = piece.upper()
            chunks.append(
                ExportSliceChunk(
                    account_id=account_id,
                    saga_id=saga_id,
                    transfer_id=transfer_id,
                    file=name,
                    index=index,
                    content=base64.b64encode(deflate_piece(piece)).decode(),
                )
            )
        summary.append(
            ExportFile(
                name=name,
                record_type=name.removesuffix(".csv"),
                records=content.count(b"\r\n") - 1,
                sha256=hashlib.sha256(content).hexdigest(),
                crc32=zlib.crc32(content),
                size=len(content),
                chunks=len(pieces),
            )
        )
    written = ExportSliceWritten(
        account_id=account_id, saga_id=saga_id, transfer_id=transfer_id, files=summary
    )
    if summary_first:
        await _publish(settings, written, service)
    for chunk in chunks:
        await _publish(settings, chunk, service)
    if not summary_first:
        await _publish(settings, written, service)


SLICES = {
    "billing": {"customer.csv": b'id,name,tags\r\n1,\'=cmd(),"{""vip"":true}"\r\n'},
    "notifications": {"email.csv": b"id,subject\r\n1,Invoice INV-1\r\n"},
    "audit": {"data_access.csv": b"id,purpose\r\n1,support\r\n2,legal\r\n"},
}


async def _bundle(settings: RetentionSettings, account_id: uuid.UUID) -> zipfile.ZipFile:
    assembled = (await _events(settings, "export.assembled", account_id))[-1]
    chunks = await _events(settings, "export.bundle_chunk", account_id, assembled["chunks"])
    mine = sorted(
        (c for c in chunks if c["transfer_id"] == assembled["transfer_id"]),
        key=lambda c: c["index"],
    )
    content = b"".join(base64.b64decode(c["content"]) for c in mine)
    assert hashlib.sha256(content).hexdigest() == assembled["sha256"]
    assert assembled["recipient_email"] == "ada@acme.example.com"
    return zipfile.ZipFile(io.BytesIO(content))


@pytest.mark.clause("TERMINATION")
async def test_termination_collects_chunked_slices_delivers_purges_and_certifies_across_a_restart(
    settings: RetentionSettings,
) -> None:
    account_id = uuid.uuid4()
    store = FolderExportStore(settings.export_store_path)  # type: ignore[arg-type]
    async with running(create_app(settings)):
        await _terminate(settings, account_id)
        await _terminate(settings, account_id)  # a second termination of the account: one saga
        request = (await _events(settings, "export.requested", account_id))[0]
        saga_id = uuid.UUID(request["saga_id"])
        for service, files in SLICES.items():
            # The summary may overtake its chunks (another topic): the saga waits for both.
            await _send_slice(
                settings,
                service=service,
                account_id=account_id,
                saga_id=saga_id,
                files=files,
                summary_first=service == "audit",
            )
        bundle = await _bundle(settings, account_id)

    assert sorted(bundle.namelist()) == [
        "audit-data_access.csv",
        "billing-customer.csv",
        "manifest.json",
        "notifications-email.csv",
    ]
    assert bundle.read("billing-customer.csv") == SLICES["billing"]["customer.csv"]
    row = next(csv.DictReader(io.StringIO(bundle.read("billing-customer.csv").decode())))
    assert row["name"] == "'=cmd()"
    assert json.loads(row["tags"]) == {"vip": True}, "structured fields are JSON"
    manifest = json.loads(bundle.read("manifest.json"))
    assert {f["name"]: f["records"] for f in manifest["files"]} == {
        "audit-data_access.csv": 2,
        "billing-customer.csv": 1,
        "notifications-email.csv": 1,
    }
    assert not [p for p in store.files() if "/slices/" in str(p)], "slices dropped after commit"

    # Retention was down while the export was delivered: the saga resumes from its table.
    await _publish(
        settings,
        ExportDelivered(account_id=account_id, saga_id=saga_id, message_id="<m@x>"),
        "notifications",
    )
    async with running(create_app(settings)):
        await _events(settings, "purge.requested", account_id)
        # The key went with the delivery, before any purge: a late event can't be opened.
        keys = create_key_store(settings.keystore)
        await keys.start()
        try:
            assert await keys.destroy(account_id) == [], "already destroyed"
        finally:
            await keys.close()
        for service in PARTICIPANTS:
            await _publish(
                settings,
                PurgeCompleted(account_id=account_id, saga_id=saga_id, rows_deleted=3),
                service,
            )
        purged = (await _events(settings, "account.purged", account_id))[0]

    assert purged["services"] == ["audit", "billing", "notifications"]

    async def nothing_left() -> bool:
        return await rows_mentioning(settings.database_url, str(account_id)) == {}

    await eventually(nothing_left, timeout=15, what="no row about the account")
    assert await rows_mentioning(settings.database_url, str(purged["certificate_id"])) == {
        "purge_certificate": 1
    }
    assert store.files() == [], "no bundle or slice left in retention's store"

    # The account's key is destroyed: every copy of its events is unreadable from now on.
    keys = create_key_store(settings.keystore)
    await keys.start()
    try:
        with pytest.raises(KeyDestroyedError):
            await keys.key(str(purged["certificate_id"]))  # any id: the account has none left
        assert await keys.destroy(account_id) == [], "nothing was left to destroy"
    finally:
        await keys.close()

    # The certificate is found from the account id alone (by its keyed hash) and verifies.
    engine = create_engine(settings.database_url)
    try:
        certificate = await certificate_for(
            create_session_factory(engine),
            account_id=account_id,
            certificate_key=settings.certificate_key.get_secret_value().encode(),
        )
    finally:
        await engine.dispose()
    assert certificate is not None
    assert str(certificate.id) == purged["certificate_id"]
    assert certificate.services == {"audit": 3, "billing": 3, "notifications": 3}
    assert len(certificate.destroyed_keys) == 1
    assert certificate.payload is not None
    assert certificate.digest == hashlib.sha256(certificate.payload.encode()).hexdigest()


async def _certified(
    settings: RetentionSettings, account_id: uuid.UUID
) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    """Run a whole termination, the test playing every participant; the bundle and the
    `account.purged` event."""
    await _terminate(settings, account_id)
    saga_id = uuid.UUID((await _events(settings, "export.requested", account_id))[0]["saga_id"])
    for service, files in SLICES.items():
        await _send_slice(
            settings, service=service, account_id=account_id, saga_id=saga_id, files=files
        )
    bundle = await _bundle(settings, account_id)
    await _publish(
        settings,
        ExportDelivered(account_id=account_id, saga_id=saga_id, message_id="<m@x>"),
        "notifications",
    )
    await _events(settings, "purge.requested", account_id)
    for rows, service in enumerate(PARTICIPANTS, start=4):
        await _publish(
            settings,
            PurgeCompleted(account_id=account_id, saga_id=saga_id, rows_deleted=rows),
            service,
        )
    return bundle, (await _events(settings, "account.purged", account_id))[0]


def _openssl_verifies(folder: Path, payload: bytes, signature: bytes, key: bytes) -> bool:
    """What `openssl pkeyutl -verify` says, as the README tells a customer to run it."""
    (folder / "certificate.json").write_bytes(payload)
    (folder / "certificate.sig").write_bytes(signature)
    (folder / "signing-key.pem").write_bytes(key)
    command = "pkeyutl -verify -pubin -inkey signing-key.pem -rawin"
    command += " -in certificate.json -sigfile certificate.sig"
    result = subprocess.run(
        [OPENSSL, *command.split()],
        cwd=folder,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0 and b"Signature Verified Successfully" in result.stdout


@pytest.mark.clause("TERMINATION")
async def test_termination_the_purge_certificate_is_signed_and_verifies_offline(
    settings: RetentionSettings, tmp_path: Path
) -> None:
    """TERMINATION: the certificate says what was exported (the manifest's hash), what each
    service deleted and when, which key was destroyed; Ed25519-signed, it verifies with the
    published key alone, and one changed byte is refused. It holds no personal data."""
    account_id = uuid.uuid4()
    async with running(create_app(settings)) as client:
        bundle, purged = await _certified(settings, account_id)
        certificate_id = purged["certificate_id"]

        async def timed() -> float | None:
            return await _metric(client, "quittance_retention_termination_duration_count")

        took = await eventually(timed, timeout=15, what="/metrics timing the termination")
        assert took == 1, "the time from termination to this certificate, once"
        envelope = (await client.get("/certificates", params={"id": certificate_id})).json()
        payload_response = await client.get(
            "/certificates", params={"id": certificate_id, "part": "payload"}
        )
        signature_response = await client.get(
            "/certificates", params={"id": certificate_id, "part": "signature"}
        )
        key_response = await client.get("/certificates/signing-key.pem")
        refusals = [
            await client.get("/certificates", params={"id": "nope"}),
            await client.get("/certificates", params={"id": certificate_id, "part": "all"}),
        ]
        unknown = await client.get("/certificates", params={"id": str(uuid.uuid4())})

    payload, signature, key = (
        payload_response.content,
        signature_response.content,
        key_response.content,
    )
    assert payload_response.headers["content-type"] == "application/json"
    assert len(signature) == 64
    assert key.startswith(b"-----BEGIN PUBLIC KEY-----")
    document = json.loads(payload)
    assert envelope["certificate"] == document
    assert envelope["payload"].encode() == payload
    assert envelope["signature"]["algorithm"] == "Ed25519"
    assert envelope["signature"]["key_id"] == key_response.headers["key-id"]

    assert document["certificate_id"] == certificate_id
    assert (
        document["exported"]["manifest_sha256"]
        == hashlib.sha256(bundle.read("manifest.json")).hexdigest()
    ), "the customer can match the certificate to the manifest in their bundle"
    assert {service: part["rows"] for service, part in document["deleted"].items()} == {
        "billing": 4,
        "notifications": 5,
        "audit": 6,
    }
    assert all(
        datetime.fromisoformat(part["completed_at"])
        <= datetime.fromisoformat(document["completed_at"])
        for part in document["deleted"].values()
    )
    assert len(document["destroyed_keys"]) == 1
    text = payload.decode()
    for personal in ("Acme", "ada@acme.example.com", str(account_id)):
        assert personal not in text, "the certificate names the account only by a keyed hash"

    valid, message = check(payload, signature, key)
    assert valid, message
    assert _openssl_verifies(tmp_path, payload, signature, key)
    for position in (0, len(payload) // 2, len(payload) - 1):
        tampered = bytearray(payload)
        tampered[position] ^= 0x01
        assert not check(bytes(tampered), signature, key)[0], f"byte {position} changed"
        assert not _openssl_verifies(tmp_path, bytes(tampered), signature, key)
    other_key = SigningKey.generate().public_pem()
    assert not check(payload, signature, other_key)[0], "another key does not verify it"

    assert [r.status_code for r in refusals] == [422, 422]
    assert [r.json()["errors"][0]["field"] for r in refusals] == ["id", "part"]
    assert unknown.status_code == 404

    # The signing key is rotated: the old public key stays published under its id, so this
    # certificate still verifies offline; new ones are signed with the new key.
    old_key_id = key_response.headers["key-id"]
    rotated = settings.model_copy(
        update={
            "certificate_signing_key": SecretStr(SigningKey.generate().private_pem()),
            "certificate_retired_public_keys": [key.decode()],
        }
    )
    async with running(create_app(rotated)) as client:
        current = await client.get("/certificates/signing-key.pem")
        retired = await client.get("/certificates/signing-key.pem", params={"key_id": old_key_id})
        listed = (await client.get("/certificates/signing-keys")).json()
        missing = await client.get("/certificates/signing-key.pem", params={"key_id": "0" * 16})
    assert current.headers["key-id"] != old_key_id
    assert retired.content == key
    assert check(payload, signature, retired.content)[0]
    assert {(k["key_id"], k["current"]) for k in listed} == {
        (old_key_id, False),
        (current.headers["key-id"], True),
    }
    assert missing.status_code == 404


@pytest.mark.clause("LAW")
async def test_law_a_termination_under_a_legal_hold_exports_then_waits_until_released(
    settings: RetentionSettings,
) -> None:
    """LAW: the customer still gets their export; then nothing is purged and no key is
    destroyed while the hold stands, operators see the saga waiting for it (and the gauge of
    purges a hold blocks), and its release lets the purge go on, in the saga's own trace."""
    account_id, hold_id, staff_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    spans = InMemorySpanExporter()
    await _publish(
        settings,
        LegalHoldPlaced(
            account_id=account_id,
            hold_id=hold_id,
            legal_basis="Court order 2030/117",
            reason="Litigation",
            placed_by=staff_id,
            placed_by_name="Lea Legal",
            placed_at=datetime.now(UTC),
        ),
        "billing",
    )
    app = create_app(settings, telemetry=create_telemetry("retention", exporter=spans))
    async with running(app) as client:
        await _terminate(settings, account_id)
        saga_id = uuid.UUID((await _events(settings, "export.requested", account_id))[0]["saga_id"])
        for service, files in SLICES.items():
            await _send_slice(
                settings, service=service, account_id=account_id, saga_id=saga_id, files=files
            )
        await _bundle(settings, account_id)  # the export is made and sent all the same
        await _publish(
            settings,
            ExportDelivered(account_id=account_id, saga_id=saga_id, message_id="<m@x>"),
            "notifications",
        )
        operator = {"Authorization": "Bearer test-retention-operator-token"}

        async def saga_status() -> dict[str, Any] | None:
            sagas = (await client.get("/sagas", headers=operator)).json()
            return next((s for s in sagas if s["saga_id"] == str(saga_id)), None)

        async def held() -> dict[str, Any] | None:
            saga = await saga_status()
            return saga if saga is not None and saga["status"] == "held" else None

        waiting = await eventually(held, timeout=20, what="the saga waiting for the hold")
        assert waiting["waiting_for"] == [f"legal hold {hold_id}"]
        assert waiting["needs_attention"] is None, "waiting for the law is not a stall"
        assert [(s["step"], s["state"]) for s in waiting["steps"]] == [
            ("export", "done"),
            ("delivery", "done"),
            ("legal hold", "current"),
            ("purge", "pending"),
            ("certificate", "pending"),
        ]
        assert waiting["steps"][0]["done_by"] == ["audit", "billing", "notifications"]
        assert waiting["steps"][2]["waiting_for"] == [f"legal hold {hold_id}"]
        blocked = await eventually(
            lambda: _metric(client, "quittance_retention_purges_held"),
            what="the gauge of purges a legal hold blocks",
        )
        assert blocked >= 1
        purges = await read_events(
            settings.kafka.bootstrap_servers,
            settings.kafka.topic("purge.requested"),
            count=1,
            key=str(account_id),
            timeout=3,
        )
        assert purges == [], "nothing is asked to purge under a hold"
        keys = create_key_store(settings.keystore)
        await keys.start()
        try:
            assert await keys.key_for_writing(account_id), "the account's key is kept"
        finally:
            await keys.close()

        await _publish(
            settings,
            LegalHoldReleased(
                account_id=account_id,
                hold_id=hold_id,
                released_by=staff_id,
                released_by_name="Lea Legal",
                reason="Settled",
                released_at=datetime.now(UTC),
            ),
            "billing",
        )
        await _events(settings, "purge.requested", account_id)

        async def purging() -> bool:
            saga = await saga_status()
            return saga is not None and saga["status"] == "purging"

        await eventually(purging, timeout=20, what="the purge going on after the release")
        for service in PARTICIPANTS:
            await _publish(
                settings,
                PurgeCompleted(account_id=account_id, saga_id=saga_id, rows_deleted=1),
                service,
            )
        await _events(settings, "account.purged", account_id)

    # One trace for the saga, each step a span of it, whatever woke the step: the release
    # came in another trace, which the purge step links to.
    steps = [
        s
        for s in spans.get_finished_spans()
        if (s.attributes or {}).get("quittance.saga.id") == str(saga_id)
    ]
    assert [s.name for s in steps] == [
        "termination export",
        "termination deliver",
        "termination hold",
        "termination purge",
        "termination certificate",
    ]
    assert len({s.context.trace_id for s in steps}) == 1
    purge = steps[3]
    assert [link.context.trace_id for link in purge.links] != [steps[0].context.trace_id]
    assert len(purge.links) == 1, "the hold's release, in its own trace"

    async def nothing_left() -> bool:  # the hold's own record included
        return await rows_mentioning(settings.database_url, str(account_id)) == {}

    await eventually(nothing_left, timeout=15, what="no row about the account")
    keys = create_key_store(settings.keystore)
    await keys.start()
    try:
        with pytest.raises(KeyDestroyedError):
            await keys.key_for_writing(account_id)
    finally:
        await keys.close()


@pytest.mark.clause("TERMINATION", "STAFF-ACCESS")
async def test_termination_a_grace_period_gives_a_signed_download_link_until_the_purge(
    settings: RetentionSettings,
) -> None:
    """TERMINATION, STAFF-ACCESS: on a plan with a grace period the owner is mailed a signed
    link instead of the bundle; it downloads the export (each time a data access in the audit
    trail), opens nothing for a changed account or signature, and is gone once the grace
    period ends, when the purge starts."""
    grace = timedelta(hours=1)  # its end is brought forward below, not waited for
    plans = {
        **settings.plans,
        "standard": settings.plans["standard"].model_copy(update={"grace_period": grace}),
    }
    graced = settings.model_copy(update={"plans": plans, "deadline_check_interval_s": 0.5})
    account_id = uuid.uuid4()
    async with running(create_app(graced), base_url="http://retention") as client:
        await _publish(
            settings,
            AccountTerminated(
                account_id=account_id,
                account_name="Acme",
                owner_email="ada@acme.example.com",
                terminated_at=datetime.now(UTC),
                plan="standard",
            ),
            "billing",
        )
        saga_id = uuid.UUID((await _events(settings, "export.requested", account_id))[0]["saga_id"])
        for service, files in SLICES.items():
            await _send_slice(
                settings, service=service, account_id=account_id, saga_id=saga_id, files=files
            )
        assembled = (await _events(settings, "export.assembled", account_id))[-1]
        assert assembled["chunks"] == 0, "no attachment: a link"
        link = httpx.URL(assembled["download_url"])
        assert str(link).startswith(f"{settings.public_url}/exports/download?")
        assert datetime.fromisoformat(assembled["link_expires_at"]) > datetime.now(UTC)
        await _publish(
            settings,
            ExportDelivered(account_id=account_id, saga_id=saga_id, message_id="<m@x>"),
            "notifications",
        )
        operator = {"Authorization": "Bearer test-retention-operator-token"}

        async def in_grace() -> dict[str, Any] | None:
            sagas = (await client.get("/sagas", headers=operator)).json()
            saga = next((s for s in sagas if s["saga_id"] == str(saga_id)), None)
            return saga if saga is not None and saga["status"] == "grace" else None

        waiting = await eventually(in_grace, timeout=10, what="the saga in its grace period")
        assert ("grace period", "current") in [(s["step"], s["state"]) for s in waiting["steps"]]

        downloaded = await client.get(link.path, params=link.params)
        assert downloaded.status_code == 200, downloaded.text
        assert hashlib.sha256(downloaded.content).hexdigest() == assembled["sha256"]
        assert "manifest.json" in zipfile.ZipFile(io.BytesIO(downloaded.content)).namelist()
        (access,) = await _events(settings, "data.accessed", account_id)
        assert access["actor"] == "export-link"
        assert access["purpose"] == "customer-self-service"
        assert (access["resource_type"], access["resource_id"]) == ("export_bundle", str(saga_id))

        other_account = link.params.set("account", str(uuid.uuid4()))
        forged = await client.get(link.path, params=other_account)
        assert forged.status_code == 403, "the link opens one account's export only"
        bad = await client.get(link.path, params=link.params.set("signature", "AAAA"))
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "signature"
        for odd in ("²", "\uff11\uff12", "-1", "1e9", ""):  # digits to str.isdigit, not to a link
            refused = await client.get(link.path, params=link.params.set("expires", odd))
            assert refused.status_code == 422, odd
            assert refused.json()["errors"][0]["field"] == "expires"

        # A link past its end: refused, whatever else is right with it.
        ended = ExportLink(
            saga_id=saga_id, account_id=account_id, expires=int(datetime.now(UTC).timestamp()) - 1
        )
        signer = SigningKey.from_setting(settings.certificate_signing_key.get_secret_value())
        expired = await client.get(f"/exports/download?{ended.query(signer.sign(ended.message()))}")
        assert expired.status_code == 410
        assert "expired" in expired.json()["detail"]

        # The grace period ends (brought forward rather than waited for): the purge starts and
        # the link, though not yet past its own end, dies with it.
        connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
        try:
            await connection.execute(
                "UPDATE termination_saga SET purge_due_at = now(), step_deadline_at = now() "
                "WHERE id = $1",
                saga_id,
            )
        finally:
            await connection.close()
        await _events(settings, "purge.requested", account_id)
        gone = await client.get(link.path, params=link.params)
        assert gone.status_code == 410
        assert "purged" in gone.json()["detail"]
        sagas = (await client.get("/sagas", headers=operator)).json()
        assert next(s for s in sagas if s["saga_id"] == str(saga_id))["downloads"] == 1
        for service in PARTICIPANTS:
            await _publish(
                settings,
                PurgeCompleted(account_id=account_id, saga_id=saga_id, rows_deleted=1),
                service,
            )
        await _events(settings, "account.purged", account_id)
    store = FolderExportStore(settings.export_store_path)  # type: ignore[arg-type]

    async def bundle_gone() -> bool:
        return not [key for key in store.files() if key.startswith(str(saga_id))]

    await eventually(bundle_gone, timeout=10, what="the bundle removed with the saga")


@pytest.mark.clause("TERMINATION")
async def test_termination_a_slice_that_fails_its_checksum_is_asked_for_again(
    settings: RetentionSettings,
) -> None:
    account_id = uuid.uuid4()
    async with running(create_app(settings)):
        await _terminate(settings, account_id)
        saga_id = uuid.UUID((await _events(settings, "export.requested", account_id))[0]["saga_id"])
        for service, files in SLICES.items():
            await _send_slice(
                settings,
                service=service,
                account_id=account_id,
                saga_id=saga_id,
                files=files,
                corrupt=service == "billing",
            )
        requests = await _events(settings, "export.requested", account_id, count=2)
        assert [r["attempt"] for r in requests] == [1, 2]
        await _send_slice(
            settings,
            service="billing",
            account_id=account_id,
            saga_id=saga_id,
            files=SLICES["billing"],
        )
        bundle = await _bundle(settings, account_id)
    assert bundle.read("billing-customer.csv") == SLICES["billing"]["customer.csv"]


@pytest.mark.clause("TERMINATION")
async def test_termination_an_overdue_step_is_asked_again_then_shown_as_needing_a_person(
    settings: RetentionSettings,
) -> None:
    """The saga never stalls silently: deadline, retry, then a person, in the API and health."""
    impatient = settings.model_copy(
        update={"step_timeout_s": 0.5, "max_step_attempts": 2, "deadline_check_interval_s": 0.2}
    )
    account_id = uuid.uuid4()
    async with running(create_app(impatient)) as client:
        await _terminate(impatient, account_id)
        requests = await _events(impatient, "export.requested", account_id, count=2)
        assert [r["attempt"] for r in requests] == [1, 2], "the export was asked for again"

        async def needs_person() -> Any:
            response = await client.get(
                "/sagas", headers={"Authorization": "Bearer test-retention-operator-token"}
            )
            mine = [s for s in response.json() if s["saga_id"] == requests[0]["saga_id"]]
            return mine if mine and mine[0]["needs_attention"] else None

        sagas = await eventually(needs_person, timeout=15, what="the saga needs a person")
        assert sagas[0]["waiting_for"] == ["audit", "billing", "notifications"]
        assert [(s["step"], s["state"]) for s in sagas[0]["steps"]] == [
            ("export", "current"),
            ("delivery", "pending"),
            ("purge", "pending"),
            ("certificate", "pending"),
        ]
        assert sagas[0]["steps"][0]["attempt"] == 2
        assert "Acme" not in json.dumps(sagas), "operators see ids and steps, not whose"
        health = await client.get("/healthz")
        assert health.status_code == 503
        assert "need a person" in health.json()["checks"]["sagas"]

        async def counted_on_metrics() -> float | None:
            stuck = {"status": "exporting", "needs_person": "true"}
            found = await _metric(client, "quittance_retention_sagas", stuck)
            return found if found else None

        assert await eventually(counted_on_metrics, timeout=15, what="/metrics counts it") >= 1
        assert (await client.get("/sagas")).status_code == 401
    await _clear_saga(impatient, account_id)


async def _metric(
    client: httpx.AsyncClient, name: str, labels: dict[str, str] | None = None
) -> float | None:
    """A sample of the service's /metrics, as Prometheus would scrape it."""
    page = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name and sample.labels == (labels or {}):
                return float(sample.value)
    return None


async def _clear_saga(settings: RetentionSettings, account_id: uuid.UUID) -> None:
    """Leave the module's database healthy for the next test."""
    import asyncpg

    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        await connection.execute("DELETE FROM termination_saga WHERE account_id = $1", account_id)
    finally:
        await connection.close()


@pytest.mark.clause("TERMINATION")
async def test_termination_a_crash_before_the_assembly_commits_loses_no_slice(
    settings: RetentionSettings,
) -> None:
    """The stall this fixes: slices deleted before the commit, then the commit lost, left the
    saga waiting forever for files that were gone. Slices now go only after the commit."""
    from datetime import timedelta

    from retention.models import TerminationSaga
    from retention.services import RetentionService, SagaTiming
    from shared.kafka import create_producer
    from shared.keystore import create_key_store
    from shared.outbox import Outbox
    from shared.unit_of_work import UnitOfWorkFactory

    engine = create_engine(settings.database_url)
    keys = create_key_store(settings.keystore)
    await keys.start()
    producer = create_producer(settings.kafka, client_id="retention-crash-test")
    await producer.start()
    sessions = create_session_factory(engine)
    outbox = Outbox(source="retention", kafka=settings.kafka, keys=keys, producer=lambda: producer)
    units = UnitOfWorkFactory(sessions=sessions, outbox=outbox)
    store = FolderExportStore(settings.export_store_path)  # type: ignore[arg-type]
    service = RetentionService(
        sessions=sessions,
        units=units,
        store=store,
        keys=keys,
        participants=list(PARTICIPANTS),
        certificate_key=b"test",
        signing_key=SigningKey.generate(),
        timing=SagaTiming(step_timeout=timedelta(hours=1), max_attempts=3),
        plans=settings.plans,
        public_url=settings.public_url,
    )
    account_id = uuid.uuid4()
    try:
        async with units() as work:
            await service.start_termination(
                terminated=AccountTerminated(
                    account_id=account_id,
                    account_name="Acme",
                    owner_email="ada@acme.example.com",
                    terminated_at=datetime.now(UTC),
                ),
                work=work,
            )
        async with sessions() as session:
            saga = (
                await session.exec(
                    select(TerminationSaga).where(TerminationSaga.account_id == account_id)
                )
            ).one()
        summaries = {}
        for service_name, files in SLICES.items():
            [(name, content)] = files.items()
            transfer_id = uuid.uuid4()
            chunk = ExportSliceChunk(
                account_id=account_id,
                saga_id=saga.id,
                transfer_id=transfer_id,
                file=name,
                index=0,
                content=base64.b64encode(deflate_piece(content)).decode(),
            )
            async with units() as work:
                await service.receive_slice_chunk(
                    event=new_envelope(chunk, source=service_name), work=work
                )
            summaries[service_name] = new_envelope(
                ExportSliceWritten(
                    account_id=account_id,
                    saga_id=saga.id,
                    transfer_id=transfer_id,
                    files=[
                        ExportFile(
                            name=name,
                            record_type=name.removesuffix(".csv"),
                            records=1,
                            sha256=hashlib.sha256(content).hexdigest(),
                            crc32=zlib.crc32(content),
                            size=len(content),
                            chunks=1,
                        )
                    ],
                ),
                source=service_name,
            )
        async with units() as work:
            await service.record_slice(event=summaries["billing"], work=work)
            await service.record_slice(event=summaries["notifications"], work=work)

        slices = f"{saga.id}/slices"

        async def assemble_then_die() -> None:
            async with units() as work:
                await service.record_slice(event=summaries["audit"], work=work)  # assembles
                raise RuntimeError("the process died before the commit")

        with pytest.raises(RuntimeError):
            await assemble_then_die()
        assert store.count(f"{slices}/audit/{summaries['audit'].data.transfer_id}") == 1, (
            "the slices survived the lost commit"
        )
        async with units() as work:  # the event comes again
            await service.record_slice(event=summaries["audit"], work=work)
        async with sessions() as session:
            saga = await session.get(TerminationSaga, saga.id)
        assert saga is not None
        assert saga.status == "delivering"
        assert not store.path(slices).exists(), "dropped once the assembly committed"
    finally:
        await producer.stop()
        await keys.close()
        await engine.dispose()
