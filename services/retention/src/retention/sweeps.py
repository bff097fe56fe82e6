"""Retention by plan (PLAN-RETENTION, COLLECTED): a scheduled sweep, taken once across
instances, asks each owning service to delete every known account's rows past its plan's time
(or to count them, in a dry run) and sums what they report."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

from opentelemetry import metrics
from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from retention.domain import PlanTerms, plan_terms, sweep_cutoffs, sweep_slot
from retention.models import AccountPlan, RetentionSweep, SweepTally
from shared.contracts import (
    AccountPlanChanged,
    Envelope,
    RetentionSweepReported,
    RetentionSweepRequested,
    consumers_of,
)
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork, Work

log = logging.getLogger(__name__)
FLUSH_EVERY = 1000  # requests staged before they are written to the outbox: memory stays flat


class SweepService:
    """Schedules sweeps, fans them out per account, and tallies the services' reports."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        units: UnitsOfWork,
        plans: dict[str, PlanTerms],
        every: timedelta,
        meter: metrics.Meter | None = None,
    ) -> None:
        self.sessions = sessions
        self.units = units
        self.plans = plans
        self.every = every
        self.services = sorted(consumers_of(RetentionSweepRequested.event_type))
        meter = meter or metrics.get_meter("quittance.retention")
        self._swept_rows = meter.create_counter(
            "quittance.retention.sweep.rows",
            unit="{row}",
            description="Rows past their plan's time: deleted, or counted by a dry run.",
        )
        self._held_accounts = meter.create_counter(
            "quittance.retention.sweep.held",
            unit="{account}",
            description="Accounts whose rows a sweep kept past their time: a legal hold stood.",
        )
        self._sweeps = meter.create_counter(
            "quittance.retention.sweeps", unit="{sweep}", description="Sweeps completed."
        )

    async def note_plan(self, changed: AccountPlanChanged, work: Work) -> None:
        """Keep the account's plan; an older change arriving late does not undo a newer one."""
        statement = insert(AccountPlan).values(
            account_id=changed.account_id, plan=changed.plan, changed_at=changed.changed_at
        )
        await work.session.exec(
            statement.on_conflict_do_update(
                index_elements=["account_id"],
                set_={"plan": statement.excluded.plan, "changed_at": statement.excluded.changed_at},
                where=col(AccountPlan.changed_at) <= statement.excluded.changed_at,
            )
        )

    async def start(
        self,
        *,
        dry_run: bool,
        slot: datetime | None = None,
        now: datetime | None = None,
        accounts: Sequence[UUID] = (),
    ) -> RetentionSweep | None:
        """Open a sweep and ask the services to sweep every known account (or only those
        given: an operator's look at a few), in one transaction; None when the slot was
        already taken (by this instance or another)."""
        as_of = now or datetime.now(UTC)
        sweep = RetentionSweep(
            slot=slot, dry_run=dry_run, as_of=as_of, accounts=0, expected_reports=0
        )
        async with self.units() as work:
            opened = await work.session.exec(
                insert(RetentionSweep)
                .values(**sweep.model_dump())
                .on_conflict_do_nothing(index_elements=["slot"])
                .returning(col(RetentionSweep.id))
            )
            if opened.first() is None:
                return None
            chosen = select(AccountPlan.account_id, AccountPlan.plan)
            if accounts:
                chosen = chosen.where(col(AccountPlan.account_id).in_(list(accounts)))
            known = await work.session.exec(chosen)
            for account_id, plan in known.all():
                work.emit(
                    RetentionSweepRequested(
                        account_id=account_id,
                        sweep_id=sweep.id,
                        dry_run=dry_run,
                        as_of=as_of,
                        cutoffs=sweep_cutoffs(plan_terms(self.plans, plan), as_of),
                    )
                )
                sweep.accounts += 1
                if sweep.accounts % FLUSH_EVERY == 0:
                    await work.flush()
            sweep.expected_reports = sweep.accounts * len(self.services)
            sweep.completed_at = as_of if sweep.accounts == 0 else None
            await work.session.exec(
                update(RetentionSweep)
                .where(col(RetentionSweep.id) == sweep.id)
                .values(
                    accounts=sweep.accounts,
                    expected_reports=sweep.expected_reports,
                    completed_at=sweep.completed_at,
                )
            )
        log.info("sweep %s asked %d accounts (dry run: %s)", sweep.id, sweep.accounts, dry_run)
        return sweep

    async def record_report(self, event: Envelope[RetentionSweepReported], work: Work) -> None:
        """Add a service's report of one account to its sweep's tallies; an account on legal
        hold is counted as held, its rows not (they stay, even past their time)."""
        report = event.data
        sweep = await _locked_sweep(work.session, report.sweep_id)
        if sweep is None:
            log.info("a report for an unknown sweep; ignored")
            return
        sweep.reports += 1
        if report.held:
            sweep.held_reports += 1
            self._held_accounts.add(1, {"service": event.producer, "dry_run": report.dry_run})
        for table in [] if report.held else report.tables:
            statement = insert(SweepTally).values(
                sweep_id=sweep.id,
                service=event.producer,
                table_name=table.table,
                category=table.category,
                rows=table.rows,
                oldest_at=table.oldest_at,
                next_due_at=table.next_due_at,
            )
            excluded = statement.excluded
            await work.session.exec(
                statement.on_conflict_do_update(
                    index_elements=["sweep_id", "service", "table_name"],
                    set_={
                        "rows": SweepTally.rows + excluded.rows,
                        # LEAST ignores a NULL: the earliest of the times known.
                        "oldest_at": func.least(SweepTally.oldest_at, excluded.oldest_at),
                        "next_due_at": func.least(SweepTally.next_due_at, excluded.next_due_at),
                    },
                )
            )
            self._swept_rows.add(
                table.rows,
                {"service": event.producer, "table": table.table, "dry_run": report.dry_run},
            )
        sweep.rows += 0 if report.held else sum(table.rows for table in report.tables)
        if sweep.reports >= sweep.expected_reports and sweep.completed_at is None:
            sweep.completed_at = datetime.now(UTC)
            self._sweeps.add(1, {"dry_run": sweep.dry_run})
            log.info(
                "sweep %s complete: %d rows (dry run: %s)", sweep.id, sweep.rows, sweep.dry_run
            )
        work.session.add(sweep)

    async def forget_account(self, session: AsyncSession, account_id: UUID) -> None:
        """The account is purged: its plan goes too."""
        account = await session.get(AccountPlan, account_id)
        if account is not None:
            await session.delete(account)

    async def sweeps(self, limit: int = 20) -> list[tuple[RetentionSweep, list[SweepTally]]]:
        """The newest sweeps with their tallies (for operators)."""
        async with self.sessions() as session:
            found = await session.exec(
                select(RetentionSweep).order_by(col(RetentionSweep.as_of).desc()).limit(limit)
            )
            sweeps = list(found.all())
            tallies = await session.exec(
                select(SweepTally)
                .where(col(SweepTally.sweep_id).in_([sweep.id for sweep in sweeps]))
                .order_by(col(SweepTally.service), col(SweepTally.table_name))
            )
            by_sweep: dict[UUID, list[SweepTally]] = {}
            for tally in tallies.all():
                by_sweep.setdefault(tally.sweep_id, []).append(tally)
        return [(sweep, by_sweep.get(sweep.id, [])) for sweep in sweeps]

    async def run_schedule(self, check_interval_s: float) -> None:
        """Forever: take the current slot's sweep if no instance has (the unique slot decides)."""
        while True:
            try:
                slot = sweep_slot(datetime.now(UTC), self.every)
                if await self.start(dry_run=False, slot=slot) is not None:
                    log.info("the scheduled sweep of %s started here", slot.isoformat())
            except Exception:
                log.exception("starting the scheduled sweep failed; trying again")
            await asyncio.sleep(check_interval_s)


async def _locked_sweep(session: AsyncSession, sweep_id: UUID) -> RetentionSweep | None:
    result = await session.exec(
        select(RetentionSweep).where(RetentionSweep.id == sweep_id).with_for_update()
    )
    return result.first()
