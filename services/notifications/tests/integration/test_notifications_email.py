"""Notifications against the real database, broker and SMTP server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from devstack.testing import (
    MailCatcher,
    eventually,
    produce,
    read_events,
    rows_mentioning,
    running,
    sealed,
)
from notifications.main import create_app
from notifications.settings import NotificationsSettings, SmtpSettings
from shared.contracts import (
    AccountPurged,
    AccountTerminated,
    CreditNoteIssued,
    DetailsChanged,
    ExportAssembled,
    ExportBundleChunk,
    InvoiceIssued,
    InvoiceLine,
    IssuedInvoiceCustomer,
    PurgeRequested,
    StatementEntry,
    StatementIssued,
    new_envelope,
)
from shared.export_store import FolderExportStore
from shared.signing import SigningKey, verify

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(
    service_env: Callable[[str], dict[str, Any]], infrastructure: Stack
) -> NotificationsSettings:
    return NotificationsSettings(
        **service_env("notifications"),
        smtp=SmtpSettings(host="127.0.0.1", port=infrastructure.ports.smtp),
        resend_after_s=0.5,
        sweep_interval_s=0.2,
    )


@pytest.fixture(scope="module")
async def notifications(settings: NotificationsSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(settings)) as client:
        yield client


def _invoice(email: str) -> InvoiceIssued:
    return InvoiceIssued(
        account_id=uuid.uuid4(),
        invoice_id=uuid.uuid4(),
        number="INV-000042",
        seller_name="Acme",
        customer=IssuedInvoiceCustomer(customer_id=uuid.uuid4(), name="Bob", email=email),
        currency="EUR",
        lines=[
            InvoiceLine(
                description="Work", quantity=Decimal(1), unit_price=Decimal(9), amount=Decimal(9)
            )
        ],
        total=Decimal(9),
        issue_date=date(2030, 1, 1),
        due_date=date(2030, 1, 31),
    )


async def _publish(settings: NotificationsSettings, envelope: Any) -> None:
    await produce(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic(envelope.type),
        await sealed(envelope, settings.keystore),
        key=envelope.subject.encode(),
        headers=[("content-type", b"application/json")],
    )


@pytest.mark.clause("USE")
async def test_use_an_issued_invoice_is_emailed_once_even_when_the_event_is_redelivered(
    notifications: httpx.AsyncClient, settings: NotificationsSettings, mail: MailCatcher
) -> None:
    email = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    envelope = new_envelope(_invoice(email), source="billing")
    await _publish(settings, envelope)
    await _publish(settings, envelope)  # at-least-once delivery: the same event again
    await mail.wait_for(lambda ms: any(email in m["to"] for m in ms))

    async def redelivery_recognised() -> bool:
        metrics = (await notifications.get("/metrics")).text
        return (
            'inbox_duplicates_skipped_total{consumer="notifications.on_invoice_issued"} 1.0'
            in metrics
        )

    await eventually(redelivery_recognised, what="the inbox recognised the redelivery")
    assert await _sent_and_minimised(settings, email) == 1, "one row, sent, body dropped"
    received = mail.to(email)
    assert len(received) == 1
    assert received[0]["message_id"] == f"<{envelope.id}@{settings.message_id_domain}>"
    assert received[0]["headers"]["Auto-Submitted"] == "auto-generated"
    assert "INV-000042" in received[0]["subject"]
    (attached,) = received[0]["attachments"]  # the invoice as PDF, built from the event
    assert (attached["filename"], attached["content_type"]) == ("INV-000042.pdf", "application/pdf")
    assert attached["size"] > 1000


@pytest.mark.clause("USE")
async def test_use_a_credit_note_is_emailed_to_the_customer_once(
    notifications: httpx.AsyncClient, settings: NotificationsSettings, mail: MailCatcher
) -> None:
    email = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    invoice = _invoice(email)
    note = CreditNoteIssued(
        account_id=invoice.account_id,
        credit_note_id=uuid.uuid4(),
        number="CN-000007",
        invoice_id=invoice.invoice_id,
        invoice_number=invoice.number,
        reason="One hour was billed twice",
        seller_name=invoice.seller_name,
        customer=invoice.customer,
        currency="EUR",
        lines=invoice.lines,
        subtotal=Decimal(9),
        tax_total=Decimal(0),
        total=Decimal(9),
        issue_date=date(2030, 1, 2),
    )
    envelope = new_envelope(note, source="billing")
    await _publish(settings, envelope)
    await _publish(settings, envelope)
    await mail.wait_for(lambda ms: any(email in m["to"] for m in ms))
    assert await _sent_and_minimised(settings, email) == 1, "one row, sent, body dropped"
    (received,) = mail.to(email)
    assert received["subject"] == "Credit note CN-000007 from Acme"
    assert "correcting invoice INV-000042" in received["text"]
    assert "Total credited: €9.00" in received["text"], "in the currency's minor unit"
    assert [a["filename"] for a in received["attachments"]] == ["CN-000007.pdf"]


@pytest.mark.clause("USE")
async def test_use_a_monthly_statement_is_emailed_once_with_its_pdf(
    notifications: httpx.AsyncClient, settings: NotificationsSettings, mail: MailCatcher
) -> None:
    email = f"sue-{uuid.uuid4().hex[:8]}@example.com"
    statement = StatementIssued(
        account_id=uuid.uuid4(),
        customer=IssuedInvoiceCustomer(customer_id=uuid.uuid4(), name="Sue", email=email),
        seller_name="Acme",
        currency="EUR",
        period_start=date(2030, 1, 1),
        period_end=date(2030, 1, 31),
        opening_balance=Decimal(0),
        entries=[
            StatementEntry(
                on=date(2030, 1, 5),
                kind="invoice",
                number="INV-000042",
                debit=Decimal(90),
                credit=Decimal(0),
                balance=Decimal(90),
            ),
            StatementEntry(
                on=date(2030, 1, 9),
                kind="payment",
                number="pay_abc",
                reference="INV-000042",
                debit=Decimal(0),
                credit=Decimal(40),
                balance=Decimal(50),
            ),
        ],
        closing_balance=Decimal(50),
        aging={"current": Decimal(50), "1-30": Decimal(0)},
    )
    envelope = new_envelope(statement, source="billing")
    await _publish(settings, envelope)
    await _publish(settings, envelope)
    await mail.wait_for(lambda ms: any(email in m["to"] for m in ms))
    assert await _sent_and_minimised(settings, email) == 1, "one row, sent, body dropped"
    (received,) = mail.to(email)
    assert received["subject"] == "Statement from Acme, January 1, 2030 to January 31, 2030"
    assert "Closing balance: €50.00" in received["text"]
    assert "Payment pay_abc (INV-000042)" in received["text"]
    assert [a["filename"] for a in received["attachments"]] == [
        "statement-2030-01-01-2030-01-31.pdf"
    ]


@pytest.mark.clause("RECTIFY")
async def test_rectify_a_change_notice_is_mailed_once_and_a_change_without_one_sends_nothing(
    notifications: httpx.AsyncClient, settings: NotificationsSettings, mail: MailCatcher
) -> None:
    """RECTIFY: billing names whom to tell; notifications tells them once, and nobody else."""
    account_id, email = uuid.uuid4(), f"olga-{uuid.uuid4().hex[:8]}@example.com"

    def change(notice_email: str | None) -> DetailsChanged:
        return DetailsChanged(
            account_id=account_id,
            change_id=uuid.uuid4(),
            subject="account" if notice_email else "customer",
            subject_id=uuid.uuid4(),
            fields=["address"],
            changed_by_name="Carla",
            changed_at=datetime.now(UTC),
            notice_name="Olga" if notice_email else None,
            notice_email=notice_email,
        )

    silent = new_envelope(change(None), source="billing")
    told = new_envelope(change(email), source="billing")
    for envelope in (silent, told, told):
        await _publish(settings, envelope)
    await mail.wait_for(lambda ms: any(email in m["to"] for m in ms))

    async def both_handled() -> bool:
        metrics = (await notifications.get("/metrics")).text
        return (
            'inbox_duplicates_skipped_total{consumer="notifications.on_details_changed"} 1.0'
            in metrics
        )

    await eventually(both_handled, what="the inbox recognised the redelivery")
    (received,) = mail.to(email)
    assert received["subject"] == "Quittance: the company's details changed"
    assert await _sent_and_minimised(settings, email) == 1
    assert await _messages_of(settings, account_id) == 1, "the change without a notice sent none"


async def _messages_of(settings: NotificationsSettings, account_id: uuid.UUID) -> int:
    import asyncpg

    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM outgoing_email WHERE account_id = $1", account_id
            )
        )
    finally:
        await connection.close()


async def _sent_and_minimised(settings: NotificationsSettings, email: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM outgoing_email WHERE recipient = $1 AND status = 'SENT' "
                "AND mime IS NULL",
                email,
            )
        )
    finally:
        await connection.close()


async def test_purge_deletes_the_accounts_email_records_and_confirms(
    notifications: httpx.AsyncClient, settings: NotificationsSettings, mail: MailCatcher
) -> None:
    email = f"carol-{uuid.uuid4().hex[:8]}@example.com"
    invoice = _invoice(email)
    await _publish(settings, new_envelope(invoice, source="billing"))
    await mail.wait_for(lambda ms: any(email in m["to"] for m in ms))
    saga_id = uuid.uuid4()
    await _publish(
        settings,
        new_envelope(
            PurgeRequested(account_id=invoice.account_id, saga_id=saga_id), source="retention"
        ),
    )
    confirmations = await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("purge.completed"),
        count=1,
        key=str(invoice.account_id),
    )
    assert confirmations[0]["data"] == {
        "account_id": str(invoice.account_id),
        "saga_id": str(saga_id),
        # The email, the invoice as noted for reminders, and the email's delivery status
        # still in the outbox.
        "rows_deleted": 3,
    }
    assert confirmations[0]["source"] == "/quittance/notifications"

    async def nothing_left() -> bool:  # the confirmation leaves the outbox once acknowledged
        return await rows_mentioning(settings.database_url, str(invoice.account_id)) == {}

    await eventually(nothing_left, timeout=15, what="no row about the account")


async def _count(settings: NotificationsSettings, sql: str, *args: Any) -> int:
    import asyncpg

    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        return int(await connection.fetchval(sql, *args))
    finally:
        await connection.close()


@pytest.mark.clause("TERMINATION")
async def test_termination_the_signed_certificate_is_mailed_to_the_owner_then_the_address_goes(
    notifications: httpx.AsyncClient, settings: NotificationsSettings, mail: MailCatcher
) -> None:
    """TERMINATION: the owner's address, noted at termination, outlives the purge only until
    the signed certificate is sent to it; the certificate arrives as signed, and verifies."""
    account_id, saga_id, certificate_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    owner = f"ada-{uuid.uuid4().hex[:8]}@acme.example.com"
    terminated = AccountTerminated(
        account_id=account_id,
        account_name="Acme Ltd",
        owner_email=owner,
        terminated_at=datetime.now(UTC),
    )
    await _publish(settings, new_envelope(terminated, source="billing"))
    recipient_sql = "SELECT count(*) FROM certificate_recipient WHERE account_id = $1"

    async def noted() -> bool:
        return await _count(settings, recipient_sql, account_id) == 1

    await eventually(noted, timeout=20, what="the certificate's recipient noted")
    purge = PurgeRequested(account_id=account_id, saga_id=saga_id)
    await _publish(settings, new_envelope(purge, source="retention"))
    await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("purge.completed"),
        count=1,
        key=str(account_id),
    )
    assert await _count(settings, recipient_sql, account_id) == 1, "it outlives the purge"

    key = SigningKey.generate()
    payload = json.dumps(
        {"certificate_id": str(certificate_id), "completed_at": datetime.now(UTC).isoformat()},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    signature = key.sign(payload)
    purged = AccountPurged(
        account_id=account_id,
        saga_id=saga_id,
        certificate_id=certificate_id,
        services=["audit", "billing", "notifications"],
        certificate=payload.decode(),
        signature=base64.b64encode(signature).decode(),
        signing_key_id=key.key_id,
    )
    envelope = new_envelope(purged, source="retention")
    await _publish(settings, envelope)
    await _publish(settings, envelope)  # redelivered: still one message
    await mail.wait_for(lambda ms: any(owner in m["to"] for m in ms))

    async def nothing_left() -> bool:
        return (
            await rows_mentioning(settings.database_url, str(account_id)) == {}
            and await rows_mentioning(settings.database_url, owner) == {}
        )

    await eventually(nothing_left, timeout=15, what="no row about the account or its owner")
    (message,) = mail.to(owner)
    assert message["subject"] == "Certificate of deletion for Acme Ltd"
    assert str(certificate_id) in message["text"]
    assert key.key_id in message["text"]
    assert settings.certificate_key_url in message["text"]
    assert [(a["filename"], a["content_type"]) for a in message["attachments"]] == [
        ("certificate.json", "application/json"),
        ("certificate.sig", "application/octet-stream"),
    ]
    attached, attached_signature = mail.attachment(message, 0), mail.attachment(message, 1)
    assert attached == payload, "the certificate arrives byte for byte as it was signed"
    assert verify(key.public_pem(), attached, attached_signature)
    # Billing keeps nothing of a purged account: no delivery status is announced for it.
    statuses = await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("email.status_changed"),
        count=1,
        key=str(account_id),
        timeout=3,
    )
    assert statuses == []


@pytest.mark.clause("TERMINATION")
async def test_termination_the_export_arrives_in_chunks_and_is_mailed_once_whatever_the_name(
    notifications: httpx.AsyncClient, settings: NotificationsSettings, mail: MailCatcher
) -> None:
    """TERMINATION: the bundle reaches the owner once, attached, even when retention asks twice
    and the company name carries a line break meant to inject a header."""
    owner = f"ada-{uuid.uuid4().hex[:8]}@acme.example.com"
    account_id, saga_id, transfer_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    bundle = b"PK-not-really-a-zip-" * 5000
    pieces = [bundle[i : i + 30_000] for i in range(0, len(bundle), 30_000)]
    assembled = ExportAssembled(
        account_id=account_id,
        saga_id=saga_id,
        transfer_id=transfer_id,
        chunks=len(pieces),
        file_name="quittance-export.zip",
        size=len(bundle),
        sha256=hashlib.sha256(bundle).hexdigest(),
        account_name="Acme\r\nBcc: everyone@example.com",
        recipient_email=owner,
    )
    # The request to mail it overtakes the chunks (another topic): the email waits for them.
    await _publish(settings, new_envelope(assembled, source="retention"))
    for index, piece in enumerate(pieces):
        chunk = ExportBundleChunk(
            account_id=account_id,
            saga_id=saga_id,
            transfer_id=transfer_id,
            index=index,
            content=base64.b64encode(piece).decode(),
        )
        await _publish(settings, new_envelope(chunk, source="retention"))
    messages = await mail.wait_for(lambda ms: any(owner in m["to"] for m in ms), timeout=30)
    received = [m for m in messages if owner in m["to"]]
    assert len(received) == 1
    assert "Bcc" not in received[0]["headers"]
    attachment = received[0]["attachments"][0]
    assert attachment["filename"] == "quittance-export.zip"
    async with httpx.AsyncClient(base_url=mail.url) as inbox:
        content = (
            await inbox.get(f"/messages/{received[0]['id']}/attachments/{attachment['index']}")
        ).content
    assert content == bundle

    # Retention missed the confirmation and asks again: confirmed again, not mailed again.
    await _publish(settings, new_envelope(assembled, source="retention"))
    delivered = await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("export.delivered"),
        count=2,
        key=str(account_id),
    )
    assert len(delivered) == 2
    assert len(mail.to(owner)) == 1
    assert FolderExportStore(settings.export_store_path).files() == [], "the bundle copy is gone"  # type: ignore[arg-type]


@pytest.mark.clause("TERMINATION")
async def test_termination_with_a_grace_period_the_owner_gets_the_link_not_the_bundle(
    notifications: httpx.AsyncClient, settings: NotificationsSettings, mail: MailCatcher
) -> None:
    """TERMINATION: on a plan with a grace period the export email carries retention's signed
    link and the date it stops working, no attachment; the delivery is confirmed as usual."""
    owner = f"ada-{uuid.uuid4().hex[:8]}@acme.example.com"
    account_id, saga_id = uuid.uuid4(), uuid.uuid4()
    url = f"https://exports.example.com/exports/download?saga={saga_id}&signature=c2lnbmVk"
    assembled = ExportAssembled(
        account_id=account_id,
        saga_id=saga_id,
        transfer_id=uuid.uuid4(),
        chunks=0,
        file_name="quittance-export.zip",
        size=4096,
        sha256="cd" * 32,
        account_name="Acme",
        recipient_email=owner,
        download_url=url,
        link_expires_at=datetime(2030, 7, 1, 12, 0, tzinfo=UTC),
    )
    await _publish(settings, new_envelope(assembled, source="retention"))
    messages = await mail.wait_for(lambda ms: any(owner in m["to"] for m in ms), timeout=30)
    (received,) = [m for m in messages if owner in m["to"]]
    assert received["attachments"] == []
    assert url in received["text"]
    assert "2030" in received["text"], "the date the link stops working"
    (delivered,) = await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("export.delivered"),
        count=1,
        key=str(account_id),
    )
    assert delivered["data"]["saga_id"] == str(saga_id)


async def test_a_large_message_reaches_the_smtp_server_byte_for_byte_dots_and_all(
    infrastructure: Stack, tmp_path: Path
) -> None:
    """send_file dot-stuffs block by block: a line starting with "." must survive anywhere,
    including right at a block boundary and on the very first line of the body."""
    from notifications.bulk_mail import _SEND_BUFFER, send_file

    recipient = f"dots-{uuid.uuid4().hex[:8]}@example.com"
    head = f"To: {recipient}\r\nSubject: dots\r\n\r\n.first line of the body\r\n".encode()
    filler = b"x" * 74 + b"\r\n"
    body = bytearray(head)
    while len(body) + len(filler) <= _SEND_BUFFER:
        body += filler
    body += b"y" * (_SEND_BUFFER - len(body) - 2) + b"\r\n"
    assert len(body) == _SEND_BUFFER, "the next line starts a block"
    body += b".at the block boundary\r\n..two dots\r\n.\r\nmiddle . dot\r\n"
    body += base64.encodebytes(os.urandom(3_000_000)).replace(b"\n", b"\r\n")
    body += b".last line\r\n"
    message = tmp_path / "big.eml"
    message.write_bytes(bytes(body))

    await asyncio.to_thread(
        send_file,
        SmtpSettings(host="127.0.0.1", port=infrastructure.ports.smtp),
        sender="quittance@example.com",
        recipient=recipient,
        path=message,
    )

    received = [
        path.read_bytes()
        for path in infrastructure.mail_dir.glob("*.eml")
        if recipient.encode() in path.read_bytes()[:200]
    ]
    assert received == [bytes(body)]
