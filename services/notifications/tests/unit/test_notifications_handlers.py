"""Notifications' handlers on the in-memory broker: queued in the unit of work, sent after it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from devstack.testing import HandlerHarness, RecordingParticipant
from notifications.data_map import DATA_MAP
from notifications.handlers import create_routes
from shared.contracts import (
    Envelope,
    ExportAssembled,
    ExportBundleChunk,
    ExportRequested,
    InvoiceIssued,
    InvoiceLine,
    IssuedInvoiceCustomer,
    PurgeRequested,
)
from shared.telemetry import create_telemetry


class _Mail:
    def __init__(self, harness: list[HandlerHarness]) -> None:
        self.harness = harness
        self.queued: list[Any] = []
        self.chunks: list[ExportBundleChunk] = []

    async def queue_invoice_email(self, *, event: Envelope[InvoiceIssued], work: Any) -> UUID:
        self.queued.append(event.data)
        return event.id

    async def queue_export_email(self, *, event: Envelope[ExportAssembled], work: Any) -> UUID:
        self.queued.append(event.data)
        return event.id

    async def receive_bundle_chunk(self, *, chunk: ExportBundleChunk, work: Any) -> None:
        self.chunks.append(chunk)


def _harness() -> tuple[HandlerHarness, _Mail, RecordingParticipant]:
    holder: list[HandlerHarness] = []
    mail, participant = _Mail(holder), RecordingParticipant(DATA_MAP)
    routes = create_routes(
        service=mail,  # type: ignore[arg-type]
        participant=participant.kit,
        telemetry=create_telemetry("notifications"),
    )
    holder.append(HandlerHarness(routes, service="notifications"))
    return holder[0], mail, participant


def _invoice() -> InvoiceIssued:
    return InvoiceIssued(
        account_id=uuid4(),
        invoice_id=uuid4(),
        number="INV-000001",
        seller_name="Acme Ltd",
        customer=IssuedInvoiceCustomer(customer_id=uuid4(), name="Bob", email="bob@example.com"),
        currency="EUR",
        lines=[
            InvoiceLine(
                description="Consulting",
                quantity=Decimal(1),
                unit_price=Decimal(9),
                amount=Decimal(9),
            )
        ],
        total=Decimal(9),
        issue_date=date(2030, 1, 1),
        due_date=date(2030, 1, 31),
    )


@pytest.mark.clause("USE")
async def test_use_an_issued_invoice_is_queued_once_under_redelivery() -> None:
    """USE: the invoice email, once however often the event comes (sending after the commit
    is the service's: test_notifications_sending)."""
    harness, mail, _ = _harness()
    invoice = _invoice()
    await harness.deliver((invoice, "billing"), repeat=3)
    assert mail.queued == [invoice], "the customer's name and address reached the handler opened"


@pytest.mark.clause("TERMINATION")
async def test_termination_the_bundle_chunks_and_the_export_request_reach_their_handlers() -> None:
    harness, mail, participant = _harness()
    account_id, saga_id, transfer_id = uuid4(), uuid4(), uuid4()
    chunk = ExportBundleChunk(
        account_id=account_id, saga_id=saga_id, transfer_id=transfer_id, index=0, content="UEs="
    )
    assembled = ExportAssembled(
        account_id=account_id,
        saga_id=saga_id,
        transfer_id=transfer_id,
        chunks=1,
        file_name="quittance-export.zip",
        size=2,
        sha256="0" * 64,
        account_name="Acme Ltd",
        recipient_email="ada@acme.example.com",
    )
    export = ExportRequested(account_id=account_id, saga_id=saga_id)
    purge = PurgeRequested(account_id=account_id, saga_id=saga_id)
    await harness.deliver(
        (chunk, "retention"), (assembled, "retention"), (export, "retention"), (purge, "retention")
    )
    assert mail.chunks == [chunk]
    assert mail.queued == [assembled]
    assert participant.calls == [("export", export), ("purge", purge)]
    assert harness.dead == []
