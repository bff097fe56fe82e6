"""Statements: a customer's invoices, credit notes, payments and refunds over a period,
balances and aging."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from billing.auth.models import Principal
from billing.errors import InvalidReferenceError, NotFoundError
from billing.invoices.domain import issue_date_at
from billing.statements.domain import (
    AgingBucket,
    Entry,
    EntryKind,
    Outstanding,
    aging,
    running_balances,
)
from shared.db import pooled_driver

MAX_PERIOD_DAYS = 3660  # ten years: longer is a typo, and a statement that large is an export

_CUSTOMER = """
SELECT c.name, a.currency, a.time_zone FROM customer c JOIN account a ON a.id = c.account_id
WHERE c.account_id = $1 AND c.id = $2
"""
# Every invoice issued is owed from its issue date; one voided stops being owed on the day it
# was voided (in the account's time zone, $4), so a statement once sent reads the same later.
# Drafts are not issued. $1 account, $2 customer, $3 currency; the period from $5 to $6.
_DOCUMENTS = """
WITH documents AS (
    SELECT issue_date AS on_date, 'invoice' AS kind, number, NULL AS reference, total AS debit,
        0::numeric AS credit, issued_at AS at
    FROM invoice
    WHERE account_id = $1 AND customer_id = $2 AND currency = $3
        AND status IN ('ISSUED', 'PARTIALLY_PAID', 'PAID', 'VOID')
    UNION ALL
    SELECT (voided_at AT TIME ZONE $4)::date, 'void', number, number, 0, total, voided_at
    FROM invoice
    WHERE account_id = $1 AND customer_id = $2 AND currency = $3 AND status = 'VOID'
    UNION ALL
    SELECT n.issue_date, 'credit_note', n.number, i.number, 0, n.total, n.issued_at
    FROM credit_note n JOIN invoice i ON i.account_id = n.account_id AND i.id = n.invoice_id
    WHERE n.account_id = $1 AND n.customer_id = $2 AND n.currency = $3
    UNION ALL
    SELECT (p.received_at AT TIME ZONE $4)::date, 'payment', p.gateway_payment_id, i.number, 0,
        p.amount, p.received_at
    FROM payment p JOIN invoice i ON i.account_id = p.account_id AND i.id = p.invoice_id
    WHERE p.account_id = $1 AND p.customer_id = $2 AND p.currency = $3
    UNION ALL
    SELECT (r.refunded_at AT TIME ZONE $4)::date, 'refund', r.gateway_refund_id, i.number,
        r.amount, 0, r.refunded_at
    FROM payment_refund r JOIN payment p ON p.account_id = r.account_id AND p.id = r.payment_id
        JOIN invoice i ON i.account_id = p.account_id AND i.id = p.invoice_id
    WHERE r.account_id = $1 AND p.customer_id = $2 AND p.currency = $3
        AND r.status = 'SUCCEEDED'
)
/* then */
"""
_OPENING = _DOCUMENTS.replace(
    "/* then */", "SELECT COALESCE(sum(debit - credit), 0) FROM documents WHERE on_date < $5"
)
_ENTRIES = _DOCUMENTS.replace(
    "/* then */",
    "SELECT * FROM documents WHERE on_date BETWEEN $5 AND $6 ORDER BY on_date, at, kind, number",
)
# What each invoice issued and not voided by the period's end still owes then: its total less
# the credit notes issued by then and what was paid of it by then (payments applied, less
# refunds taken back from it, plus credit applied, less what a credit note moved to credit).
_OUTSTANDING = """
SELECT i.number, COALESCE(i.due_date, i.issue_date) AS due_date, i.total - COALESCE(
    (SELECT sum(n.total) FROM credit_note n
     WHERE n.account_id = i.account_id AND n.invoice_id = i.id AND n.issue_date <= $4), 0)
    - COALESCE((SELECT sum(p.applied_amount) FROM payment p
     WHERE p.account_id = i.account_id AND p.invoice_id = i.id
        AND (p.received_at AT TIME ZONE $5)::date <= $4), 0)
    + COALESCE((SELECT sum(r.from_invoice) FROM payment_refund r
        JOIN payment p ON p.account_id = r.account_id AND p.id = r.payment_id
     WHERE r.account_id = i.account_id AND p.invoice_id = i.id AND r.status = 'SUCCEEDED'
        AND (r.refunded_at AT TIME ZONE $5)::date <= $4), 0)
    + COALESCE((SELECT sum(c.amount) FROM customer_credit c
     WHERE c.account_id = i.account_id AND c.invoice_id = i.id
        AND c.kind IN ('APPLIED', 'CREDIT_NOTE')
        AND (c.created_at AT TIME ZONE $5)::date <= $4), 0)
    AS amount
FROM invoice i
WHERE i.account_id = $1 AND i.customer_id = $2 AND i.currency = $3 AND i.issue_date <= $4
    AND (i.status IN ('ISSUED', 'PARTIALLY_PAID', 'PAID')
        OR (i.status = 'VOID' AND (i.voided_at AT TIME ZONE $5)::date > $4))
"""


@dataclass(frozen=True)
class Statement:
    """A computed statement."""

    customer_id: UUID
    customer_name: str
    currency: str
    period_start: date
    period_end: date
    opening_balance: Decimal
    entries: list[Entry]
    balances: list[Decimal]
    aging: dict[AgingBucket, Decimal]

    @property
    def invoiced(self) -> Decimal:
        return sum((entry.debit for entry in self.entries), Decimal(0))

    @property
    def credited(self) -> Decimal:
        return sum((entry.credit for entry in self.entries), Decimal(0))

    @property
    def closing_balance(self) -> Decimal:
        return self.opening_balance + self.invoiced - self.credited


class StatementService:
    """Statements of an account's customers."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self.engine = engine

    async def statement(
        self,
        *,
        principal: Principal,
        customer_id: UUID,
        start: date | None,
        end: date | None,
        currency: str | None,
    ) -> Statement:
        """The customer's statement over [start, end], in one currency (the account's unless
        named), read from one snapshot; by default from the first of this month to today, where
        the account is."""
        return await self.statement_of(
            account_id=principal.require_user(),
            customer_id=customer_id,
            start=start,
            end=end,
            currency=currency,
        )

    async def statement_of(
        self,
        *,
        account_id: UUID,
        customer_id: UUID,
        start: date | None,
        end: date | None,
        currency: str | None,
    ) -> Statement:
        """The statement of one of the account's customers (see statement)."""
        async with (
            pooled_driver(self.engine) as db,
            db.transaction(isolation="repeatable_read", readonly=True),
        ):
            customer = await db.fetchrow(_CUSTOMER, account_id, customer_id)
            if customer is None:
                raise NotFoundError("no such customer in this account")
            time_zone = customer["time_zone"]
            end = end or issue_date_at(datetime.now(UTC), time_zone)
            start = start or end.replace(day=1)
            if end < start:
                raise InvalidReferenceError("the period ends before it starts", field="end")
            if (end - start).days > MAX_PERIOD_DAYS:
                raise InvalidReferenceError("a statement covers at most ten years", field="start")
            currency = currency or customer["currency"]
            scope = (account_id, customer_id, currency)
            opening = await db.fetchval(_OPENING, *scope, time_zone, start)
            rows = await db.fetch(_ENTRIES, *scope, time_zone, start, end)
            owed = await db.fetch(_OUTSTANDING, *scope, end, time_zone)
        entries = [
            Entry(
                on=row["on_date"],
                kind=EntryKind(row["kind"]),
                number=row["number"],
                reference=row["reference"],
                debit=Decimal(row["debit"]),
                credit=Decimal(row["credit"]),
            )
            for row in rows
        ]
        outstanding = [
            Outstanding(row["number"], row["due_date"], row["amount"])
            for row in owed
            if row["amount"] > 0
        ]
        return Statement(
            customer_id=customer_id,
            customer_name=customer["name"],
            currency=currency,
            period_start=start,
            period_end=end,
            opening_balance=Decimal(opening),
            entries=entries,
            balances=running_balances(Decimal(opening), entries),
            aging=aging(outstanding, end),
        )
