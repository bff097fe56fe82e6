"""Routes of invoices."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Protocol
from uuid import UUID

from fastapi import APIRouter, Query, Response

from billing.auth.policy import AnyUser, Bookkeeper
from billing.dependencies import MAX_OFFSET, ServicesDep
from billing.invoices.domain import (
    InvoiceStatus,
    TaxTotal,
    amount_due,
    plain_decimal,
    to_minor_unit,
)
from billing.invoices.models import (
    BillToPublic,
    Invoice,
    InvoiceCreate,
    InvoiceLinePublic,
    InvoicePublic,
    InvoiceVoid,
    SellerPublic,
    TaxTotalPublic,
)
from billing.invoices.service import DocumentLine, DraftedInvoice, InvoiceWithLines, taxes_of
from billing.printing import PDF, invoice_document, pdf_response
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND
from shared.http import links_by_id

router = APIRouter(tags=["invoices"], responses={**ANY_ROUTE, **AUTHENTICATED})


class _PrintedLine(DocumentLine, Protocol):
    @property
    def position(self) -> int: ...


def public_line(line: _PrintedLine, currency: str) -> dict[str, Any]:
    """A document line's fields as the API shows them: amounts at the minor unit."""
    return {
        "position": line.position,
        "description": line.description,
        "quantity": plain_decimal(line.quantity),
        "unit_price": plain_decimal(line.unit_price),
        "amount": to_minor_unit(line.amount, currency),
        "discount_percent": plain_decimal(line.discount_percent),
        "discount_amount": to_minor_unit(line.discount_amount, currency),
        "net_amount": to_minor_unit(line.amount - line.discount_amount, currency),
        "tax_rate": plain_decimal(line.tax_rate),
    }


def public_taxes(taxes: Sequence[TaxTotal], currency: str) -> list[TaxTotalPublic]:
    """A document's tax per rate as the API shows it."""
    return [
        TaxTotalPublic(
            rate=plain_decimal(tax.rate),
            taxable_amount=to_minor_unit(tax.taxable_amount, currency),
            tax_amount=to_minor_unit(tax.tax_amount, currency),
        )
        for tax in taxes
    ]


def _amount_due(invoice: Invoice | DraftedInvoice) -> Decimal | None:
    if invoice.status is InvoiceStatus.DRAFT:
        return None
    if invoice.status is InvoiceStatus.VOID:
        return to_minor_unit(Decimal(0), invoice.currency)
    due = amount_due(invoice.total, invoice.credited_total, invoice.amount_paid)
    return to_minor_unit(due, invoice.currency)


def public_invoice(found: InvoiceWithLines) -> InvoicePublic:
    """An invoice as the API shows it: amounts at the minor unit, the parties as issued."""
    invoice, currency = found.invoice, found.invoice.currency
    credited = invoice.credited_total
    return InvoicePublic(
        id=invoice.id,
        customer_id=invoice.customer_id,
        number=invoice.number,
        status=invoice.status,
        currency=currency,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        payment_terms_days=invoice.payment_terms_days,
        issued_at=invoice.issued_at,
        voided_at=invoice.voided_at,
        seller=None
        if invoice.seller_name is None
        else SellerPublic(
            name=invoice.seller_name,
            address=invoice.seller_address,
            tax_id=invoice.seller_tax_id,
        ),
        bill_to=None
        if invoice.customer_name is None or invoice.customer_email is None
        else BillToPublic(
            name=invoice.customer_name,
            email=invoice.customer_email,
            address=invoice.customer_address,
            tax_id=invoice.customer_tax_id,
        ),
        subtotal=to_minor_unit(invoice.subtotal, currency),
        taxes=public_taxes(taxes_of(invoice, found.lines), currency),
        tax_total=to_minor_unit(invoice.tax_total, currency),
        total=to_minor_unit(invoice.total, currency),
        credited_total=to_minor_unit(credited, currency),
        amount_paid=to_minor_unit(invoice.amount_paid, currency),
        amount_due=_amount_due(invoice),
        lines=[InvoiceLinePublic(**public_line(line, currency)) for line in found.lines],
    )


@router.post(
    "/invoices",
    status_code=201,
    response_model=InvoicePublic,
    responses=links_by_id(201, "invoice_id", "get_invoice", "issue_invoice", "void_invoice"),
)
async def draft_invoice(
    body: InvoiceCreate, principal: Bookkeeper, services: ServicesDep
) -> InvoicePublic:
    """Draft an invoice."""
    return public_invoice(await services.invoices.draft(principal=principal, request=body))


@router.get("/invoices", response_model=list[InvoicePublic])
async def list_invoices(
    principal: AnyUser,
    services: ServicesDep,
    status: Annotated[
        InvoiceStatus | None, Query(description="Only invoices in this state.")
    ] = None,
    customer_id: Annotated[UUID | None, Query(description="Only this customer's invoices.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[InvoicePublic]:
    """The account's invoices, newest first, with their lines."""
    found = await services.invoices.list(
        principal=principal, status=status, customer_id=customer_id, limit=limit, offset=offset
    )
    return [public_invoice(invoice) for invoice in found]


@router.get("/invoices/{invoice_id}", response_model=InvoicePublic, responses=NOT_FOUND)
async def get_invoice(invoice_id: UUID, principal: AnyUser, services: ServicesDep) -> InvoicePublic:
    """One invoice."""
    return public_invoice(await services.invoices.get(principal=principal, invoice_id=invoice_id))


@router.get(
    "/invoices/{invoice_id}/pdf",
    response_class=Response,
    responses={**NOT_FOUND, **PDF},
)
async def get_invoice_pdf(invoice_id: UUID, principal: AnyUser, services: ServicesDep) -> Response:
    """The invoice as a PDF, as issued (a draft is marked as one)."""
    invoice = public_invoice(
        await services.invoices.get(principal=principal, invoice_id=invoice_id)
    )
    return await pdf_response(invoice_document(invoice), f"{invoice.number or 'draft'}.pdf")


@router.post(
    "/invoices/{invoice_id}/issue",
    response_model=InvoicePublic,
    responses={**NOT_FOUND, **CONFLICT},
)
async def issue_invoice(
    invoice_id: UUID, principal: Bookkeeper, services: ServicesDep
) -> InvoicePublic:
    """Issue a draft: it gets its number and is emailed to the customer."""
    return public_invoice(await services.invoices.issue(principal=principal, invoice_id=invoice_id))


@router.post(
    "/invoices/{invoice_id}/void",
    response_model=InvoicePublic,
    responses={**NOT_FOUND, **CONFLICT},
)
async def void_invoice(
    invoice_id: UUID, body: InvoiceVoid, principal: Bookkeeper, services: ServicesDep
) -> InvoicePublic:
    """Void an issued invoice: its number stays taken, and it is no longer due."""
    return public_invoice(
        await services.invoices.void(principal=principal, invoice_id=invoice_id, request=body)
    )
