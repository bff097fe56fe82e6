"""Monthly statements: on the first of each month (where the account is), each customer with
activity or a balance gets last month's statement, emitted for notifications to send; once per
customer and month, whichever instance runs it (statement_run is unique on both)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from billing.invoices.domain import issue_date_at, to_minor_unit
from billing.statements.service import Statement, StatementService
from shared.contracts import (
    IssuedInvoiceCustomer,
    MailPresentation,
    StatementEntry,
    StatementIssued,
)
from shared.db import pooled_driver
from shared.unit_of_work import UnitsOfWork

log = logging.getLogger(__name__)

_ACCOUNTS = """
SELECT id, name, time_zone, currency, locale, logo_url FROM account
WHERE monthly_statements AND status = 'ACTIVE'
"""
# Customers not yet sent this period's statement that have something to show: a document or
# payment in it, or anything issued before it (a balance may remain).
_CUSTOMERS = """
SELECT c.id, c.name, c.email, c.address, c.tax_id FROM customer c
WHERE c.account_id = $1
    AND EXISTS (SELECT 1 FROM invoice i WHERE i.account_id = $1 AND i.customer_id = c.id
                AND i.currency = $3 AND i.issue_date <= $4)
    AND NOT EXISTS (SELECT 1 FROM statement_run r
                    WHERE r.customer_id = c.id AND r.period_start = $2)
"""
_CLAIM = """
INSERT INTO statement_run (id, account_id, customer_id, period_start)
VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id, period_start) DO NOTHING RETURNING id
"""


def last_month(today: date) -> tuple[date, date]:
    """The first and last day of the month before today's."""
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


class MonthlyStatements:
    """Emits each due monthly statement once."""

    def __init__(
        self, *, engine: AsyncEngine, units: UnitsOfWork, statements: StatementService
    ) -> None:
        self.engine = engine
        self.units = units
        self.statements = statements

    async def run_due(self, *, now: datetime) -> int:
        """Emit the statements due at `now`; how many."""
        async with pooled_driver(self.engine) as db:
            accounts = await db.fetch(_ACCOUNTS)
        emitted = 0
        for account in accounts:
            start, end = last_month(issue_date_at(now, account["time_zone"]))
            async with pooled_driver(self.engine) as db:
                customers = await db.fetch(
                    _CUSTOMERS, account["id"], start, account["currency"], end
                )
            for customer in customers:
                statement = await self.statements.statement_of(
                    account_id=account["id"],
                    customer_id=customer["id"],
                    start=start,
                    end=end,
                    currency=account["currency"],
                )
                if not statement.entries and not statement.closing_balance:
                    continue  # nothing happened and nothing is owed: no mail
                if await self._emit(account, customer, statement):
                    emitted += 1
        return emitted

    async def _emit(
        self, account: asyncpg.Record, customer: asyncpg.Record, statement: Statement
    ) -> bool:
        async with self.units() as work:
            db = await work.driver()
            claimed = await db.fetchval(
                _CLAIM, uuid4(), account["id"], customer["id"], statement.period_start
            )
            if claimed is None:
                return False
            work.emit(_event(account, customer, statement))
        return True

    async def run_forever(self, *, interval_s: float) -> None:
        """Look for due statements now and then; an error waits for the next round."""
        while True:
            try:
                emitted = await self.run_due(now=datetime.now(UTC))
                if emitted:
                    log.info("emitted %d monthly statements", emitted)
            except Exception:
                log.exception("monthly statements failed; trying again next round")
            await asyncio.sleep(interval_s)


def _event(
    account: asyncpg.Record, customer: asyncpg.Record, statement: Statement
) -> StatementIssued:
    currency = statement.currency

    def money(amount: Decimal) -> Decimal:
        return to_minor_unit(amount, currency)

    return StatementIssued(
        account_id=account["id"],
        customer=IssuedInvoiceCustomer(
            customer_id=customer["id"],
            name=customer["name"],
            email=customer["email"],
            address=customer["address"],
            tax_id=customer["tax_id"],
        ),
        seller_name=account["name"],
        currency=currency,
        period_start=statement.period_start,
        period_end=statement.period_end,
        opening_balance=money(statement.opening_balance),
        entries=[
            StatementEntry(
                on=entry.on,
                kind=entry.kind.value,
                number=entry.number,
                reference=entry.reference,
                debit=money(entry.debit),
                credit=money(entry.credit),
                balance=money(balance),
            )
            for entry, balance in zip(statement.entries, statement.balances, strict=True)
        ],
        closing_balance=money(statement.closing_balance),
        aging={bucket.value: money(amount) for bucket, amount in statement.aging.items()},
        presentation=MailPresentation(
            locale=account["locale"], time_zone=account["time_zone"], logo_url=account["logo_url"]
        ),
    )
