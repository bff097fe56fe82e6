"""Request metadata is kept for the time the account's plan states, then deleted (COLLECTED,
PLAN-RETENTION): a sweep in small batches, harmless to run on several instances at once."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from billing.accounts.domain import (
    REQUEST_METADATA_DAYS,
    STAFF_REQUEST_METADATA_DAYS,
    UNCLAIMED_REQUEST_METADATA_DAYS,
)
from shared.db import driver_in_transaction

log = logging.getLogger(__name__)
BATCH = 1000  # rows a statement deletes: short transactions, never a long lock

# $1: plan (NULL: rows of no account), $2: days kept after last use, $3: batch. A live session
# was used within its idle timeout, far inside any plan's time.
_SESSIONS = """
DELETE FROM web_session WHERE id IN (
    SELECT s.id FROM web_session s LEFT JOIN account a ON a.id = s.account_id
    WHERE a.plan IS NOT DISTINCT FROM $1 AND s.last_seen_at < now() - make_interval(days => $2)
    LIMIT $3
)
"""
# Failed sign-ins of no account are a staff member's (kept with staff sessions) or nobody's.
_FAILURES = """
DELETE FROM sign_in_failure WHERE id IN (
    SELECT f.id FROM sign_in_failure f LEFT JOIN account a ON a.id = f.account_id
    WHERE a.plan IS NOT DISTINCT FROM $1 AND f.created_at < now() - make_interval(days => $2)
        AND ($1 IS NOT NULL OR f.staff_id IS NULL)
    LIMIT $3
)
"""
_STAFF_FAILURES = """
DELETE FROM sign_in_failure WHERE id IN (
    SELECT id FROM sign_in_failure
    WHERE staff_id IS NOT NULL AND $1::text IS NULL
        AND created_at < now() - make_interval(days => $2)
    LIMIT $3
)
"""


class RequestMetadataRetention:
    """Deletes sessions and failed sign-ins past their plan's time."""

    def __init__(self, *, engine: AsyncEngine, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s

    async def sweep(self) -> int:
        """Delete everything past its time, batch by batch; how many rows went."""
        rounds: list[tuple[str, str | None, int]] = [
            (statement, plan, days)
            for plan, days in REQUEST_METADATA_DAYS.items()
            for statement in (_SESSIONS, _FAILURES)
        ]
        rounds += [
            (_SESSIONS, None, STAFF_REQUEST_METADATA_DAYS),
            (_STAFF_FAILURES, None, STAFF_REQUEST_METADATA_DAYS),
            (_FAILURES, None, UNCLAIMED_REQUEST_METADATA_DAYS),
        ]
        deleted = 0
        for statement, plan, days in rounds:
            while True:
                async with self.engine.begin() as connection:
                    db = await driver_in_transaction(connection)
                    status = await db.execute(statement, plan, days, BATCH)
                count = int(status.split()[-1])
                deleted += count
                if count < BATCH:
                    break
        return deleted

    async def run(self) -> None:
        """Sweep now and then; a failure waits for the next round."""
        while True:
            try:
                deleted = await self.sweep()
                if deleted:
                    log.info("deleted %d rows of request metadata past their plan's time", deleted)
            except Exception:
                log.exception("the request metadata sweep failed; trying again next round")
            await asyncio.sleep(self.interval_s)
