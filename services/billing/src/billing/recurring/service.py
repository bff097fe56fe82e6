"""Recurring invoices: schedules, and the runner that issues each due period once.

The runner takes one due schedule at a time (FOR UPDATE SKIP LOCKED: instances share the work,
never a schedule), claims the period (unique per schedule and period), issues the invoice
through the same path as the API, and moves the schedule on, all in one transaction: killed
at any point, it issues the period again only if nothing of it committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import cast
from uuid import UUID, uuid4

import asyncpg
from pydantic import ValidationError
from sqlmodel import col, select

from billing.auth.models import Principal
from billing.customers.models import Customer
from billing.errors import ConflictError, InvalidReferenceError, NotFoundError
from billing.invoices.models import InvoiceCreate
from billing.invoices.service import drafted_from, issue_in
from billing.recurring.domain import (
    Interval,
    ScheduleStatus,
    first_index_on_or_after,
    period_date,
)
from billing.recurring.models import RecurringCreate, RecurringInvoice, RecurringRun
from shared.db import SessionFactory
from shared.group_commit import Submitted
from shared.unit_of_work import UnitsOfWork, Work

log = logging.getLogger(__name__)

# The next due schedule of an active account, by the date where the account is ($1: now).
_NEXT_DUE = """
SELECT r.id, r.account_id, r.customer_id, r.currency, r.payment_terms_days, r.lines,
    r.interval, r.interval_count, r.start_date, r.end_date, r.periods_done, r.next_run_on,
    a.currency AS account_currency, a.payment_terms_days AS account_terms
FROM recurring_invoice r JOIN account a ON a.id = r.account_id
WHERE r.status = 'ACTIVE' AND a.status = 'ACTIVE'
    AND r.next_run_on <= ($1::timestamptz AT TIME ZONE a.time_zone)::date
ORDER BY r.next_run_on
LIMIT 1
FOR UPDATE OF r SKIP LOCKED
"""
_CLAIM_PERIOD = """
INSERT INTO recurring_run (id, account_id, schedule_id, period) VALUES ($1, $2, $3, $4)
ON CONFLICT (schedule_id, period) DO NOTHING RETURNING id
"""
_RECORD_INVOICE = "UPDATE recurring_run SET invoice_id = $2 WHERE id = $1"
_DROP_CLAIM = "DELETE FROM recurring_run WHERE id = $1"
_PAUSE = """
UPDATE recurring_invoice SET status = 'PAUSED', last_error = $2, last_run_at = now() WHERE id = $1
"""
_MOVE_ON = """
UPDATE recurring_invoice SET periods_done = $2, next_run_on = $3, status = $4::schedulestatus,
    last_run_at = now(), last_error = NULL
WHERE id = $1
"""


class RecurringService:
    """An account's schedules, and the runner."""

    def __init__(self, *, sessions: SessionFactory, units: UnitsOfWork) -> None:
        self.sessions = sessions
        self.units = units

    async def create(self, *, principal: Principal, request: RecurringCreate) -> RecurringInvoice:
        """A schedule for one of the account's customers, first issuing on its start date."""
        account_id = principal.require_user()
        async with self.units() as work:
            known = await work.session.exec(
                select(Customer.id).where(
                    Customer.account_id == account_id, Customer.id == request.customer_id
                )
            )
            if known.first() is None:
                raise InvalidReferenceError("no such customer in this account", field="customer_id")
            schedule = RecurringInvoice(
                id=uuid4(),
                account_id=account_id,
                customer_id=request.customer_id,
                currency=request.currency,
                payment_terms_days=request.payment_terms_days,
                lines=[line.model_dump(mode="json") for line in request.lines],
                interval=request.interval,
                interval_count=request.interval_count,
                start_date=request.start_date,
                end_date=request.end_date,
                next_run_on=request.start_date,
            )
            work.session.add(schedule)
        return schedule

    async def get(
        self, *, principal: Principal, schedule_id: UUID
    ) -> tuple[RecurringInvoice, Sequence[RecurringRun]]:
        """One schedule and the periods it issued, newest first."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            found = await session.exec(
                select(RecurringInvoice).where(
                    RecurringInvoice.account_id == account_id, RecurringInvoice.id == schedule_id
                )
            )
            schedule = found.first()
            if schedule is None:
                raise NotFoundError("no such recurring invoice in this account")
            runs = await session.exec(
                select(RecurringRun)
                .where(RecurringRun.schedule_id == schedule.id)
                .order_by(col(RecurringRun.period).desc())
                .limit(100)
            )
            return schedule, runs.all()

    async def list(self, *, principal: Principal) -> Sequence[RecurringInvoice]:
        """The account's schedules, newest first."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            found = await session.exec(
                select(RecurringInvoice)
                .where(RecurringInvoice.account_id == account_id)
                .order_by(col(RecurringInvoice.created_at).desc(), col(RecurringInvoice.id))
            )
            return found.all()

    async def set_status(
        self, *, principal: Principal, schedule_id: UUID, status: ScheduleStatus
    ) -> RecurringInvoice:
        """Pause, resume (from the next period not yet past: nothing missed while paused is
        issued late) or end a schedule."""
        account_id = principal.require_user()
        async with self.units() as work:
            found = await work.session.exec(
                select(RecurringInvoice)
                .where(
                    RecurringInvoice.account_id == account_id, RecurringInvoice.id == schedule_id
                )
                .with_for_update()
            )
            schedule: RecurringInvoice | None = found.first()
            if schedule is None:
                raise NotFoundError("no such recurring invoice in this account")
            if schedule.status is ScheduleStatus.ENDED:
                raise ConflictError("this recurring invoice has ended", field="status")
            if status is ScheduleStatus.ACTIVE and schedule.status is ScheduleStatus.PAUSED:
                today = datetime.now(UTC).date()
                index = first_index_on_or_after(
                    schedule.start_date,
                    schedule.interval,
                    schedule.interval_count,
                    schedule.periods_done,
                    today,
                )
                schedule.periods_done = index
                schedule.next_run_on = period_date(
                    schedule.start_date, schedule.interval, schedule.interval_count, index
                )
                if schedule.end_date is not None and schedule.next_run_on > schedule.end_date:
                    status, schedule.next_run_on = ScheduleStatus.ENDED, None
            if status is ScheduleStatus.ENDED:
                schedule.next_run_on = None
            schedule.status = status
            work.session.add(schedule)
        return schedule

    # the runner

    async def run_due(self, *, now: datetime) -> int:
        """Issue every period due by `now`, one schedule and period per transaction; how many."""
        issued = 0
        while await self._run_one(now):
            issued += 1
        return issued

    async def _run_one(self, now: datetime) -> bool:
        async with self.units() as work:
            db = await work.driver()
            row = await db.fetchrow(_NEXT_DUE, now)
            if row is None:
                return False
            interval = Interval(row["interval"].lower())
            period = row["next_run_on"]
            run_id = await db.fetchval(_CLAIM_PERIOD, uuid4(), row["account_id"], row["id"], period)
            if run_id is not None:
                refusal = await _issue(work, row, run_id)
                if refusal is not None:
                    # Not issuable as it stands (the rules or the customer changed): paused,
                    # visibly, rather than tried forever ahead of every other schedule.
                    await db.execute(_DROP_CLAIM, run_id)
                    await db.execute(_PAUSE, row["id"], refusal[:500])
                    log.warning("recurring invoice %s paused: cannot issue", row["id"])
                    return True
            done = row["periods_done"] + 1
            following: date | None = period_date(
                row["start_date"], interval, row["interval_count"], done
            )
            status = ScheduleStatus.ACTIVE
            if row["end_date"] is not None and following and following > row["end_date"]:
                status, following = ScheduleStatus.ENDED, None
            await db.execute(_MOVE_ON, row["id"], done, following, status.name)
        return True

    async def run_forever(self, *, interval_s: float) -> None:
        """Issue what is due now and then; an error waits for the next round."""
        while True:
            try:
                issued = await self.run_due(now=datetime.now(UTC))
                if issued:
                    log.info("issued %d recurring invoices", issued)
            except Exception:
                log.exception("recurring invoices failed; trying again next round")
            await asyncio.sleep(interval_s)


async def _issue(work: Work, row: asyncpg.Record, run_id: UUID) -> str | None:
    """Issue the schedule's invoice through the API's own path; the refusal, if any."""
    lines = row["lines"]
    try:
        request = InvoiceCreate(
            customer_id=row["customer_id"],
            currency=row["currency"],
            payment_terms_days=row["payment_terms_days"],
            lines=json.loads(lines) if isinstance(lines, str) else lines,
            issue=True,
        )
    except ValidationError as exc:
        return f"the invoice is no longer valid: {exc.errors()[0]['msg']}"
    defaults = {"currency": row["account_currency"], "payment_terms_days": row["account_terms"]}
    drafted = drafted_from(row["account_id"], request, cast(asyncpg.Record, defaults))
    (issued,) = await issue_in(work, row["account_id"], [Submitted(drafted)])
    if isinstance(issued, Exception):
        return str(issued)
    db = await work.driver()
    await db.execute(_RECORD_INVOICE, run_id, issued.invoice.id)
    return None
