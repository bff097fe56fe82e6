"""Routes of statements."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import Response

from billing.auth.policy import AnyUser
from billing.dependencies import ServicesDep
from billing.invoices.domain import to_minor_unit
from billing.invoices.models import CurrencyCode
from billing.printing import pdf_response, statement_document
from billing.problems import ANY_ROUTE, AUTHENTICATED, NOT_FOUND
from billing.statements.domain import AgingBucket
from billing.statements.models import (
    AgingPublic,
    StatementEntryPublic,
    StatementFormat,
    StatementPublic,
)
from billing.statements.service import Statement
from shared.input_types import ISO_DATE_ONLY
from shared.participant import spreadsheet_safe

router = APIRouter(tags=["statements"], responses={**ANY_ROUTE, **AUTHENTICATED})


def _public(statement: Statement) -> StatementPublic:
    currency = statement.currency

    def money(amount: Decimal) -> Decimal:
        return to_minor_unit(amount, currency)

    return StatementPublic(
        customer_id=statement.customer_id,
        customer_name=statement.customer_name,
        currency=currency,
        period_start=statement.period_start,
        period_end=statement.period_end,
        opening_balance=money(statement.opening_balance),
        entries=[
            StatementEntryPublic(
                date=entry.on,
                kind=entry.kind,
                number=entry.number,
                reference=entry.reference,
                debit=money(entry.debit),
                credit=money(entry.credit),
                balance=money(balance),
            )
            for entry, balance in zip(statement.entries, statement.balances, strict=True)
        ],
        invoiced=money(statement.invoiced),
        credited=money(statement.credited),
        closing_balance=money(statement.closing_balance),
        aging=AgingPublic(
            current=money(statement.aging[AgingBucket.CURRENT]),
            days_1_30=money(statement.aging[AgingBucket.DAYS_1_30]),
            days_31_60=money(statement.aging[AgingBucket.DAYS_31_60]),
            days_61_90=money(statement.aging[AgingBucket.DAYS_61_90]),
            over_90=money(statement.aging[AgingBucket.OVER_90]),
        ),
    )


def _csv(statement: StatementPublic) -> str:
    """The statement as CSV (RFC 4180 line ends), every text cell spreadsheet-safe."""
    out = io.StringIO()
    rows = csv.writer(out, lineterminator="\r\n")
    # Every record has the header's seven fields (RFC 4180).
    rows.writerow(
        ["Statement", spreadsheet_safe(statement.customer_name), statement.currency, "", "", "", ""]
    )
    rows.writerow(["Period", statement.period_start, statement.period_end, "", "", "", ""])
    rows.writerow(["Date", "Kind", "Number", "Reference", "Debit", "Credit", "Balance"])
    rows.writerow(["", "opening balance", "", "", "", "", statement.opening_balance])
    for entry in statement.entries:
        rows.writerow(
            [
                entry.date,
                entry.kind.value,
                spreadsheet_safe(entry.number),
                spreadsheet_safe(entry.reference or ""),
                entry.debit,
                entry.credit,
                entry.balance,
            ]
        )
    rows.writerow(
        [
            "",
            "closing balance",
            "",
            "",
            statement.invoiced,
            statement.credited,
            statement.closing_balance,
        ]
    )
    rows.writerow(["Aging", "current", "1-30", "31-60", "61-90", "over 90", ""])
    aging = statement.aging
    rows.writerow(
        ["", aging.current, aging.days_1_30, aging.days_31_60, aging.days_61_90, aging.over_90, ""]
    )
    return out.getvalue()


@router.get(
    "/statements/{customer_id}",
    response_model=StatementPublic,
    responses={
        **NOT_FOUND,
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            }
        },
    },
)
async def get_statement(
    customer_id: UUID,
    principal: AnyUser,
    services: ServicesDep,
    start: Annotated[
        date | None,
        Query(description="First day of the period; by default the first of end's month."),
        ISO_DATE_ONLY,
    ] = None,
    end: Annotated[
        date | None,
        Query(description="Last day of the period; by default today where the account is."),
        ISO_DATE_ONLY,
    ] = None,
    currency: Annotated[
        CurrencyCode | None, Query(description="Only documents in it; the account's by default.")
    ] = None,
    format: Annotated[StatementFormat, Query(description="json, or csv or pdf to download.")] = (
        StatementFormat.JSON
    ),
) -> StatementPublic | Response:
    """The customer's statement over a period: opening balance, the invoices and credit notes
    of the period with the balance after each, closing balance, and aging on the last day."""
    statement = _public(
        await services.statements.statement(
            principal=principal,
            customer_id=customer_id,
            start=start,
            end=end,
            currency=currency,
        )
    )
    if format is StatementFormat.PDF:
        name = f"statement-{statement.period_start}-{statement.period_end}.pdf"
        return await pdf_response(statement_document(statement), name)
    if format is StatementFormat.CSV:
        name = f"statement-{statement.period_start}-{statement.period_end}.csv"
        return Response(
            _csv(statement),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return statement
