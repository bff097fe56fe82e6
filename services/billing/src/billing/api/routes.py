"""Billing's routes: accounts, customers, invoices, staff access, termination, health."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from billing.api.dependencies import PrincipalDep, ServiceDep, require_operator
from billing.domain import plain_decimal, to_minor_unit
from billing.models import (
    AccessGrantCreate,
    AccessGrantPublic,
    AccountCreate,
    AccountOpened,
    AccountPublic,
    CustomerCreate,
    CustomerPublic,
    InvoiceCreate,
    InvoiceLinePublic,
    InvoicePublic,
    StaffCreate,
    StaffPublic,
    StaffRegistered,
    UserPublic,
)
from billing.services import InvoiceWithLines
from shared.contracts import AccessPurpose

router = APIRouter()


def _invoice(found: InvoiceWithLines) -> InvoicePublic:
    invoice, currency = found.invoice, found.invoice.currency
    return InvoicePublic(
        **invoice.model_dump(include=set(InvoicePublic.model_fields) - {"lines", "total"}),
        total=to_minor_unit(invoice.total, currency),
        lines=[
            InvoiceLinePublic(
                position=line.position,
                description=line.description,
                quantity=plain_decimal(line.quantity),
                unit_price=plain_decimal(line.unit_price),
                amount=to_minor_unit(line.amount, currency),
            )
            for line in found.lines
        ],
    )


@router.post("/accounts", status_code=201, response_model=AccountOpened, tags=["accounts"])
async def open_account(body: AccountCreate, service: ServiceDep) -> AccountOpened:
    """Open an account with its owner; the owner's API key is shown once."""
    account, owner, api_key = await service.open_account(request=body)
    return AccountOpened(
        account=AccountPublic.model_validate(account),
        owner=UserPublic.model_validate(owner),
        api_key=api_key,
    )


@router.get("/account", response_model=AccountPublic, tags=["accounts"])
async def get_account(principal: PrincipalDep, service: ServiceDep) -> AccountPublic:
    """The caller's account."""
    return AccountPublic.model_validate(await service.get_account(principal=principal))


@router.post(
    "/account/termination", response_model=AccountPublic, status_code=202, tags=["accounts"]
)
async def terminate_account(principal: PrincipalDep, service: ServiceDep) -> AccountPublic:
    """Terminate the contract: the export is emailed to the owner, then every record is purged."""
    return AccountPublic.model_validate(await service.terminate_account(principal=principal))


@router.post("/customers", status_code=201, response_model=CustomerPublic, tags=["customers"])
async def create_customer(
    body: CustomerCreate, principal: PrincipalDep, service: ServiceDep
) -> CustomerPublic:
    """Add a customer."""
    return CustomerPublic.model_validate(
        await service.create_customer(principal=principal, request=body)
    )


@router.get("/customers", response_model=list[CustomerPublic], tags=["customers"])
async def list_customers(
    principal: PrincipalDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[CustomerPublic]:
    """The account's customers."""
    customers = await service.list_customers(principal=principal, limit=limit, offset=offset)
    return [CustomerPublic.model_validate(c) for c in customers]


@router.get("/customers/{customer_id}", response_model=CustomerPublic, tags=["customers"])
async def get_customer(
    customer_id: UUID, principal: PrincipalDep, service: ServiceDep
) -> CustomerPublic:
    """One customer."""
    return CustomerPublic.model_validate(
        await service.get_customer(principal=principal, customer_id=customer_id)
    )


@router.post("/invoices", status_code=201, response_model=InvoicePublic, tags=["invoices"])
async def draft_invoice(
    body: InvoiceCreate, principal: PrincipalDep, service: ServiceDep
) -> InvoicePublic:
    """Draft an invoice."""
    return _invoice(await service.draft_invoice(principal=principal, request=body))


@router.get("/invoices/{invoice_id}", response_model=InvoicePublic, tags=["invoices"])
async def get_invoice(
    invoice_id: UUID, principal: PrincipalDep, service: ServiceDep
) -> InvoicePublic:
    """One invoice."""
    return _invoice(await service.get_invoice(principal=principal, invoice_id=invoice_id))


@router.post("/invoices/{invoice_id}/issue", response_model=InvoicePublic, tags=["invoices"])
async def issue_invoice(
    invoice_id: UUID, principal: PrincipalDep, service: ServiceDep
) -> InvoicePublic:
    """Issue a draft: it gets its number and is emailed to the customer."""
    return _invoice(await service.issue_invoice(principal=principal, invoice_id=invoice_id))


@router.post(
    "/staff",
    status_code=201,
    response_model=StaffRegistered,
    tags=["staff access"],
    dependencies=[Depends(require_operator)],
)
async def register_staff(body: StaffCreate, service: ServiceDep) -> StaffRegistered:
    """Register a named staff member (operator token)."""
    staff, api_key = await service.register_staff(request=body)
    return StaffRegistered(staff=StaffPublic.model_validate(staff), api_key=api_key)


@router.post(
    "/access-grants", status_code=201, response_model=AccessGrantPublic, tags=["staff access"]
)
async def open_access_grant(
    body: AccessGrantCreate, principal: PrincipalDep, service: ServiceDep
) -> AccessGrantPublic:
    """Let a named staff member read this account's data for a purpose until expiry."""
    return AccessGrantPublic.model_validate(
        await service.open_access_grant(principal=principal, request=body)
    )


@router.get(
    "/staff/accounts/{account_id}/customers/{customer_id}",
    response_model=CustomerPublic,
    tags=["staff access"],
)
async def read_customer_as_staff(
    account_id: UUID,
    customer_id: UUID,
    principal: PrincipalDep,
    service: ServiceDep,
    purpose: Annotated[AccessPurpose, Query(description="Why the data is read (closed list).")],
) -> CustomerPublic:
    """A staff member reads a customer under a grant; the read is audited."""
    customer = await service.read_customer_as_staff(
        principal=principal, account_id=account_id, customer_id=customer_id, purpose=purpose
    )
    return CustomerPublic.model_validate(customer)


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> JSONResponse:
    """200 when the database and broker answer, the consumer progresses and the relay publishes."""
    healthy, checks = await request.app.state.runtime.health()
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(
        generate_latest(request.app.state.telemetry.registry), media_type=CONTENT_TYPE_LATEST
    )
