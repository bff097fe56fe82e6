"""Routes of credit notes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from billing.auth.policy import AnyUser, Bookkeeper
from billing.credit_notes.models import CreditNoteCreate, CreditNoteLinePublic, CreditNotePublic
from billing.credit_notes.service import CreditNoteWithLines, credit_note_taxes
from billing.dependencies import MAX_OFFSET, ServicesDep
from billing.invoices.domain import to_minor_unit
from billing.invoices.models import BillToPublic, SellerPublic
from billing.invoices.routes import public_line, public_taxes
from billing.printing import PDF, credit_note_document, pdf_response
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND
from shared.http import links_by_id

router = APIRouter(tags=["credit notes"], responses={**ANY_ROUTE, **AUTHENTICATED})


def _public(found: CreditNoteWithLines) -> CreditNotePublic:
    note, currency = found.credit_note, found.credit_note.currency
    return CreditNotePublic(
        id=note.id,
        invoice_id=note.invoice_id,
        customer_id=note.customer_id,
        number=note.number,
        currency=currency,
        reason=note.reason,
        subtotal=to_minor_unit(note.subtotal, currency),
        taxes=public_taxes(credit_note_taxes(note), currency),
        tax_total=to_minor_unit(note.tax_total, currency),
        total=to_minor_unit(note.total, currency),
        issue_date=note.issue_date,
        issued_at=note.issued_at,
        lines=[
            CreditNoteLinePublic(
                **public_line(line, currency), invoice_line_position=line.invoice_line_position
            )
            for line in found.lines
        ],
    )


@router.post(
    "/credit-notes",
    status_code=201,
    response_model=CreditNotePublic,
    responses={**CONFLICT, **links_by_id(201, "credit_note_id", "get_credit_note")},
)
async def issue_credit_note(
    body: CreditNoteCreate, principal: Bookkeeper, services: ServicesDep
) -> CreditNotePublic:
    """Correct an issued invoice: credit some of its lines, or everything not yet credited."""
    return _public(await services.credit_notes.issue(principal=principal, request=body))


@router.get("/credit-notes", response_model=list[CreditNotePublic])
async def list_credit_notes(
    principal: AnyUser,
    services: ServicesDep,
    invoice_id: Annotated[UUID | None, Query(description="Only this invoice's.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[CreditNotePublic]:
    """The account's credit notes, newest first, with their lines."""
    found = await services.credit_notes.list(
        principal=principal, invoice_id=invoice_id, limit=limit, offset=offset
    )
    return [_public(note) for note in found]


@router.get("/credit-notes/{credit_note_id}", response_model=CreditNotePublic, responses=NOT_FOUND)
async def get_credit_note(
    credit_note_id: UUID, principal: AnyUser, services: ServicesDep
) -> CreditNotePublic:
    """One credit note."""
    return _public(
        await services.credit_notes.get(principal=principal, credit_note_id=credit_note_id)
    )


@router.get(
    "/credit-notes/{credit_note_id}/pdf",
    response_class=Response,
    responses={**NOT_FOUND, **PDF},
)
async def get_credit_note_pdf(
    credit_note_id: UUID, principal: AnyUser, services: ServicesDep
) -> Response:
    """The credit note as a PDF."""
    found = await services.credit_notes.get(principal=principal, credit_note_id=credit_note_id)
    note = found.credit_note
    invoice = await services.invoices.get(principal=principal, invoice_id=note.invoice_id)
    document = credit_note_document(
        _public(found),
        invoice_number=invoice.invoice.number or "",
        seller=SellerPublic(
            name=note.seller_name, address=note.seller_address, tax_id=note.seller_tax_id
        ),
        bill_to=BillToPublic(
            name=note.customer_name,
            email=note.customer_email,
            address=note.customer_address,
            tax_id=note.customer_tax_id,
        ),
    )
    return await pdf_response(document, f"{note.number}.pdf")
