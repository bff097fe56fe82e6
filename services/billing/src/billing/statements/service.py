"""Statements: a customer's invoices and credit notes over a period, balances and aging."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from billing.auth.models import Principal
from billing.errors import InvalidReferenceError, NotFoundError
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
SELECT c.name, a.currency FROM customer c JOIN account a ON a.id = c.account_id
WHERE c.account_id = $1 AND c.id = $2
"""
# Void invoices are owed by nobody: they leave every sum. Drafts are not issued.
_OPENING = """
SELECT
    (SELECT COALESCE(sum(total), 0) FROM invoice
     WHERE account_id = $1 AND customer_id = $2 AND currency = $3 AND status = 'ISSUED'
        AND issue_date < $4)
  - (SELECT COALESCE(sum(n.total), 0) FROM credit_note n
     WHERE n.account_id = $1 AND n.customer_id = $2 AND n.currency = $3 AND n.issue_date < $4)
"""
_ENTRIES = """
SELECT issue_date AS on, 'invoice' AS kind, number, NULL AS reference, total AS debit,
    0 AS credit, issued_at
FROM invoice
WHERE account_id = $1 AND customer_id = $2 AND currency = $3 AND status = 'ISSUED'
    AND issue_date BETWEEN $4 AND $5
UNION ALL
SELECT n.issue_date, 'credit_note', n.number, i.number, 0, n.total, n.issued_at
FROM credit_note n JOIN invoice i ON i.id = n.invoice_id
WHERE n.account_id = $1 AND n.customer_id = $2 AND n.currency = $3
    AND n.issue_date BETWEEN $4 AND $5
ORDER BY 1, 7, 3
"""
# What each invoice issued by the period's end still owes then: its total less its credits.
_OUTSTANDING = """
SELECT i.number, i.due_date, i.total - COALESCE(
    (SELECT sum(n.total) FROM credit_note n
     WHERE n.account_id = i.account_id AND n.invoice_id = i.id AND n.issue_date <= $4), 0)
    AS amount
FROM invoice i
WHERE i.account_id = $1 AND i.customer_id = $2 AND i.currency = $3 AND i.status = 'ISSUED'
    AND i.issue_date <= $4
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
        start: date,
        end: date,
        currency: str | None,
    ) -> Statement:
        """The customer's statement over [start, end], in one currency (the account's unless
        named), read from one snapshot."""
        account_id = principal.require_user()
        if end < start:
            raise InvalidReferenceError("the period ends before it starts", field="end")
        if (end - start).days > MAX_PERIOD_DAYS:
            raise InvalidReferenceError("a statement covers at most ten years", field="start")
        async with (
            pooled_driver(self.engine) as db,
            db.transaction(isolation="repeatable_read", readonly=True),
        ):
            customer = await db.fetchrow(_CUSTOMER, account_id, customer_id)
            if customer is None:
                raise NotFoundError("no such customer in this account")
            currency = currency or customer["currency"]
            opening = await db.fetchval(_OPENING, account_id, customer_id, currency, start)
            rows = await db.fetch(_ENTRIES, account_id, customer_id, currency, start, end)
            owed = await db.fetch(_OUTSTANDING, account_id, customer_id, currency, end)
        entries = [
            Entry(
                on=row["on"],
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
