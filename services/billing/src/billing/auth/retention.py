"""Request metadata of no account (staff members' sessions and failed sign-ins, and failed
sign-ins for addresses that are nobody's) is kept for a bounded time, then deleted (COLLECTED):
a sweep in small batches, harmless to run on several instances at once. An account's own rows
go by its plan, in the participant kit's sweep that retention schedules (PLAN-RETENTION)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from billing.accounts.domain import STAFF_REQUEST_METADATA_DAYS, UNCLAIMED_REQUEST_METADATA_DAYS
from shared.db import driver_in_transaction

log = logging.getLogger(__name__)
BATCH = 1000  # rows a statement deletes: short transactions, never a long lock

# $1: days kept, $2: batch. A live staff session was used within its idle timeout.
_STAFF_SESSIONS = """
DELETE FROM web_session WHERE id IN (
    SELECT id FROM web_session
    WHERE account_id IS NULL AND last_seen_at < now() - make_interval(days => $1)
    LIMIT $2
)
"""
_STAFF_FAILURES = """
DELETE FROM sign_in_failure WHERE id IN (
    SELECT id FROM sign_in_failure
    WHERE account_id IS NULL AND staff_id IS NOT NULL
        AND created_at < now() - make_interval(days => $1)
    LIMIT $2
)
"""
_UNCLAIMED_FAILURES = """
DELETE FROM sign_in_failure WHERE id IN (
    SELECT id FROM sign_in_failure
    WHERE account_id IS NULL AND staff_id IS NULL
        AND created_at < now() - make_interval(days => $1)
    LIMIT $2
)
"""


class RequestMetadataRetention:
    """Deletes request metadata of no account past its time."""

    def __init__(self, *, engine: AsyncEngine, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s

    async def sweep(self) -> int:
        """Delete everything past its time, batch by batch; how many rows went."""
        rounds = (
            (_STAFF_SESSIONS, STAFF_REQUEST_METADATA_DAYS),
            (_STAFF_FAILURES, STAFF_REQUEST_METADATA_DAYS),
            (_UNCLAIMED_FAILURES, UNCLAIMED_REQUEST_METADATA_DAYS),
        )
        deleted = 0
        for statement, days in rounds:
            while True:
                async with self.engine.begin() as connection:
                    db = await driver_in_transaction(connection)
                    status = await db.execute(statement, days, BATCH)
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
