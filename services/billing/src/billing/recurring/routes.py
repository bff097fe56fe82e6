"""Routes of recurring invoices."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from fastapi import APIRouter

from billing.auth.policy import AnyUser, Bookkeeper
from billing.dependencies import ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND
from billing.recurring.domain import ScheduleStatus
from billing.recurring.models import (
    RecurringCreate,
    RecurringInvoice,
    RecurringPublic,
    RecurringRun,
    RecurringRunPublic,
)
from shared.http import links_by_id

router = APIRouter(tags=["recurring invoices"], responses={**ANY_ROUTE, **AUTHENTICATED})


def _public(schedule: RecurringInvoice, runs: Sequence[RecurringRun] = ()) -> RecurringPublic:
    return RecurringPublic(
        id=schedule.id,
        customer_id=schedule.customer_id,
        currency=schedule.currency,
        payment_terms_days=schedule.payment_terms_days,
        lines=schedule.lines,
        interval=schedule.interval,
        interval_count=schedule.interval_count,
        start_date=schedule.start_date,
        end_date=schedule.end_date,
        next_run_on=schedule.next_run_on,
        status=schedule.status,
        periods_done=schedule.periods_done,
        last_error=schedule.last_error,
        created_at=schedule.created_at,
        runs=[RecurringRunPublic(period=r.period, invoice_id=r.invoice_id) for r in runs],
    )


@router.post(
    "/recurring-invoices",
    status_code=201,
    response_model=RecurringPublic,
    responses=links_by_id(201, "schedule_id", "get_recurring_invoice"),
)
async def create_recurring_invoice(
    body: RecurringCreate, principal: Bookkeeper, services: ServicesDep
) -> RecurringPublic:
    """Issue the same invoice every week, month or year from the start date (the date where
    the account is), each period once, until the end date or until ended. A period missed
    while billing was down is issued when it is back, in order."""
    return _public(await services.recurring.create(principal=principal, request=body))


@router.get("/recurring-invoices", response_model=list[RecurringPublic])
async def list_recurring_invoices(
    principal: AnyUser, services: ServicesDep
) -> list[RecurringPublic]:
    """The account's recurring invoices."""
    return [_public(s) for s in await services.recurring.list(principal=principal)]


@router.get(
    "/recurring-invoices/{schedule_id}", response_model=RecurringPublic, responses=NOT_FOUND
)
async def get_recurring_invoice(
    schedule_id: UUID, principal: AnyUser, services: ServicesDep
) -> RecurringPublic:
    """One recurring invoice and the periods it issued (the latest hundred)."""
    schedule, runs = await services.recurring.get(principal=principal, schedule_id=schedule_id)
    return _public(schedule, runs)


async def _set(
    services: ServicesDep, principal: Bookkeeper, schedule_id: UUID, status: ScheduleStatus
) -> RecurringPublic:
    schedule = await services.recurring.set_status(
        principal=principal, schedule_id=schedule_id, status=status
    )
    return _public(schedule)


@router.post(
    "/recurring-invoices/{schedule_id}/pause",
    response_model=RecurringPublic,
    responses={**NOT_FOUND, **CONFLICT},
)
async def pause_recurring_invoice(
    schedule_id: UUID, principal: Bookkeeper, services: ServicesDep
) -> RecurringPublic:
    """Stop issuing until resumed."""
    return await _set(services, principal, schedule_id, ScheduleStatus.PAUSED)


@router.post(
    "/recurring-invoices/{schedule_id}/resume",
    response_model=RecurringPublic,
    responses={**NOT_FOUND, **CONFLICT},
)
async def resume_recurring_invoice(
    schedule_id: UUID, principal: Bookkeeper, services: ServicesDep
) -> RecurringPublic:
    """Issue again from the next period not yet past (periods missed while paused are not)."""
    return await _set(services, principal, schedule_id, ScheduleStatus.ACTIVE)


@router.delete(
    "/recurring-invoices/{schedule_id}",
    response_model=RecurringPublic,
    responses={**NOT_FOUND, **CONFLICT},
)
async def end_recurring_invoice(
    schedule_id: UUID, principal: Bookkeeper, services: ServicesDep
) -> RecurringPublic:
    """End it: nothing more is issued; what it issued stays."""
    return await _set(services, principal, schedule_id, ScheduleStatus.ENDED)
