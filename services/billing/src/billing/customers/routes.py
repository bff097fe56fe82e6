"""Routes of customers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from billing.auth.policy import AnyUser, Bookkeeper
from billing.customers.models import (
    ContactCreate,
    ContactPublic,
    CustomerChange,
    CustomerCreate,
    CustomerPublic,
)
from billing.dependencies import MAX_OFFSET, ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND
from shared.http import links_by_id

router = APIRouter(tags=["customers"], responses={**ANY_ROUTE, **AUTHENTICATED})


@router.post(
    "/customers",
    status_code=201,
    response_model=CustomerPublic,
    responses=links_by_id(201, "customer_id", "get_customer"),
)
async def create_customer(
    body: CustomerCreate, principal: Bookkeeper, services: ServicesDep
) -> CustomerPublic:
    """Add a customer."""
    return CustomerPublic(**await services.customers.create(principal=principal, request=body))


@router.get("/customers", response_model=list[CustomerPublic])
async def list_customers(
    principal: AnyUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[CustomerPublic]:
    """The account's customers."""
    customers = await services.customers.list(principal=principal, limit=limit, offset=offset)
    return [CustomerPublic(**customer) for customer in customers]


@router.get("/customers/{customer_id}", response_model=CustomerPublic, responses=NOT_FOUND)
async def get_customer(
    customer_id: UUID, principal: AnyUser, services: ServicesDep
) -> CustomerPublic:
    """One customer."""
    return CustomerPublic(
        **await services.customers.get(principal=principal, customer_id=customer_id)
    )


@router.patch("/customers/{customer_id}", response_model=CustomerPublic, responses=NOT_FOUND)
async def change_customer(
    customer_id: UUID, body: CustomerChange, principal: Bookkeeper, services: ServicesDep
) -> CustomerPublic:
    """Correct a customer's details; invoices already issued keep theirs."""
    return CustomerPublic(
        **await services.customers.change(principal=principal, customer_id=customer_id, change=body)
    )


@router.post(
    "/customers/{customer_id}/contacts",
    status_code=201,
    response_model=ContactPublic,
    responses={**NOT_FOUND, **CONFLICT},
)
async def add_contact(
    customer_id: UUID, body: ContactCreate, principal: Bookkeeper, services: ServicesDep
) -> ContactPublic:
    """Add a person at the customer."""
    return ContactPublic.model_validate(
        await services.customers.add_contact(
            principal=principal, customer_id=customer_id, request=body
        )
    )


@router.delete(
    "/customers/{customer_id}/contacts/{contact_id}", status_code=204, responses=NOT_FOUND
)
async def remove_contact(
    customer_id: UUID, contact_id: UUID, principal: Bookkeeper, services: ServicesDep
) -> None:
    """Remove a person from the customer."""
    await services.customers.remove_contact(
        principal=principal, customer_id=customer_id, contact_id=contact_id
    )
