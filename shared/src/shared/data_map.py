"""The account data map: one declaration per service of every table that holds account data.

Export (an allow-list of columns), purge (in the declared order), the personal columns and the
retention category all come from it, so export and purge cannot drift apart, and a column added
later is neither exported nor forgotten until someone declares it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import MetaData, Table


class RetentionCategory(StrEnum):
    """How long a kind of data is kept; plans will state a period per category."""

    CONTRACT = "contract"  # the customer's records: kept for the contract, exported, then purged
    CREDENTIALS = "credentials"  # hashes of secrets: never exported, purged with the account
    REQUEST_METADATA = "request-metadata"  # sessions and sign-ins: for security and administration
    DELIVERY_LOG = "delivery-log"  # what was sent to whom and when
    ACCESS_TRAIL = "access-trail"  # who read the account's data and why
    TERMINATION = "termination"  # a termination's working data: gone with its certificate
    REPLAY = "replay"  # answers kept to repeat to a retried request: a day
    INBOX = "inbox"  # ids of events handled, kept to ignore their redeliveries
    # Where the purge certificate goes: outlives the purge, deleted once the certificate is sent.
    CERTIFICATE_DELIVERY = "certificate-delivery"


# The categories whose rows the plan's sweep deletes once past their time (PLAN-RETENTION); the
# others are kept for the contract, or on a clock that is not the plan's (retention's `/plans`
# says which, for every plan).
SWEPT_BY_PLAN = frozenset({RetentionCategory.REQUEST_METADATA, RetentionCategory.DELIVERY_LOG})


@dataclass(frozen=True)
class AccountTable:
    """One table holding account data, as the data map declares it."""

    table: Table
    record_type: str
    exported: tuple[str, ...]
    withheld: Mapping[str, str]
    personal: frozenset[str]
    retention: RetentionCategory
    account_column: str = "account_id"
    order_by: tuple[str, ...] = ("id",)
    kept_from: str | None = None  # the time a row's retention period runs from

    @property
    def name(self) -> str:
        """The table's name."""
        return self.table.name

    def problems(self) -> list[str]:
        """What is wrong with the declaration: undeclared, unknown or doubly declared columns."""
        columns = {column.name for column in self.table.columns}
        declared = set(self.exported) | set(self.withheld)
        found = [
            f"{self.name}.{column}: not declared (export it, or withhold it with a reason)"
            for column in sorted(columns - declared)
        ]
        found += [f"{self.name}.{column}: no such column" for column in sorted(declared - columns)]
        found += [
            f"{self.name}.{column}: both exported and withheld"
            for column in sorted(set(self.exported) & set(self.withheld))
        ]
        found += [
            f"{self.name}.{column}: personal but not a column"
            for column in sorted(self.personal - columns)
        ]
        if self.account_column not in columns:
            found.append(f"{self.name}: no account column {self.account_column!r}")
        if self.retention in SWEPT_BY_PLAN and self.kept_from is None:
            found.append(f"{self.name}: swept by plan, but no kept_from column says from when")
        if self.kept_from is not None and self.kept_from not in columns:
            found.append(f"{self.name}.{self.kept_from}: kept_from is not a column")
        if self.kept_from is not None and self.retention not in SWEPT_BY_PLAN:
            found.append(f"{self.name}: kept_from, but {self.retention} is not swept by plan")
        return found


def account_table(
    model: Any,
    *,
    retention: RetentionCategory,
    exported: tuple[str, ...] = (),
    withheld: Mapping[str, str] | None = None,
    personal: tuple[str, ...] = (),
    record_type: str | None = None,
    account_column: str = "account_id",
    order_by: tuple[str, ...] = ("id",),
    kept_from: str | None = None,
) -> AccountTable:
    """Declare a table (a SQLModel table class or a Table) of the data map."""
    table: Table = getattr(model, "__table__", model)
    return AccountTable(
        table=table,
        record_type=record_type or table.name,
        exported=exported,
        withheld=dict(withheld or {}),
        personal=frozenset(personal),
        retention=retention,
        account_column=account_column,
        order_by=order_by,
        kept_from=kept_from,
    )


@dataclass(frozen=True)
class AccountDataMap:
    """A service's account data: its tables in purge order (children before parents)."""

    service: str
    tables: tuple[AccountTable, ...]
    not_account_data: Mapping[str, str] = field(default_factory=dict)

    @property
    def purged_tables(self) -> tuple[AccountTable, ...]:
        """The tables the purge empties: all but the certificate's delivery, which the service
        deletes itself once the certificate is sent."""
        return tuple(
            table
            for table in self.tables
            if table.retention is not RetentionCategory.CERTIFICATE_DELIVERY
        )

    @property
    def swept_tables(self) -> tuple[AccountTable, ...]:
        """The tables the plan's sweep deletes from, in purge order."""
        return tuple(table for table in self.tables if table.retention in SWEPT_BY_PLAN)

    @property
    def exported_tables(self) -> tuple[AccountTable, ...]:
        """The tables with at least one exported column, in purge order."""
        return tuple(table for table in self.tables if table.exported)

    def problems(self, metadata: MetaData) -> list[str]:
        """Every way the map disagrees with the service's tables; empty when it is complete."""
        mapped = {table.name for table in self.tables}
        found = [problem for table in self.tables for problem in table.problems()]
        for name in sorted(metadata.tables):
            if name not in mapped and name not in self.not_account_data:
                found.append(f"{name}: not in the data map (declare it, or say why it is not)")
        for name in sorted(set(self.not_account_data) & mapped):
            found.append(f"{name}: both mapped and declared as not account data")
        if len(mapped) != len(self.tables):
            found.append("a table is declared twice")
        return found
