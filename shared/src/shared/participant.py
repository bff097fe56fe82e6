"""The participant kit: how a service exports and purges an account, derived from its data map.

Export and purge read the same declaration, so what a service exports and what it deletes
cannot drift apart. The export streams each table with `COPY ... TO STDOUT` into the service's
own export store (the database writes the CSV, memory stays flat, the event loop keeps serving),
then publishes it to retention as deflated chunks sealed with the account's key, straight to
the broker (tens of megabytes have no business in the outbox table); the outbox event that
announces the slice follows once the broker has every chunk. The purge deletes in the
declared order, in one transaction with its confirmation, and vacuums afterwards. The plan's
sweep deletes, table by table, the account's rows past the time retention sends, in short
batches of their own transactions (the API's requests never wait behind a long one).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol
from uuid import UUID, uuid4

from opentelemetry import trace
from sqlalchemy import String, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.contracts import (
    Envelope,
    ExportFile,
    ExportRequested,
    ExportSliceChunk,
    ExportSliceWritten,
    PurgeCompleted,
    PurgeRequested,
    RetentionSweepReported,
    RetentionSweepRequested,
    SweptTable,
    consumers_of,
)
from shared.data_map import AccountDataMap, AccountTable
from shared.deflate import DeflateChunker, inflate_pieces
from shared.export_store import ExportStore
from shared.keystore import KeyStore
from shared.legal_holds import HoldHook, LegalHolds, forget_holds
from shared.outbox import forget_account_events
from shared.routing import EventRoutes
from shared.unit_of_work import Work

log = logging.getLogger(__name__)

CHUNK_BYTES = 448 * 1024  # deflated bytes per chunk: in base64, sealed, it stays < 1 MB
BULK_TIMEOUT_S = 3600.0  # an export's COPY or a purge's DELETE of a very large account
PUBLISH_EVERY = 8  # chunks in flight at once: memory stays flat
SWEEP_BATCH = 5000  # rows a sweep deletes per transaction: each holds its locks for milliseconds
_FORMULA_PATTERN = r"^[=+\-@\t\r]"  # a spreadsheet runs such a cell as a formula
_NUMBER_PATTERN = r"^[-+]?[0-9]+(\.[0-9]+)?$"


def spreadsheet_safe(text: str) -> str:
    """Text for a CSV cell, neutralised as the export's SQL does: what a spreadsheet would run
    as a formula gets a leading quote; a plain number stays as it is."""
    if re.match(_FORMULA_PATTERN, text) and not re.match(_NUMBER_PATTERN, text):
        return "'" + text
    return text


class PurgeGuard(Protocol):
    """Says why an account must not be purged now (a legal hold), or None."""

    async def purge_blocked(self, account_id: UUID) -> str | None:
        """The reason the purge must wait, or None."""
        ...


PurgeHook = Callable[[PurgeRequested, Work], Awaitable[None]]


class PurgeBlockedError(Exception):
    """The account may not be purged now; the saga waits and shows why."""


class PurgeIncompleteError(Exception):
    """A row of the account appeared during the purge; the purge is retried."""


@dataclass(frozen=True)
class SliceFile:
    """A CSV file of a slice, written to the store."""

    key: str
    file: ExportFile


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _export_column(table: AccountTable, name: str) -> str:
    """A column as exported: text that a spreadsheet would run as a formula is neutralised."""
    column = table.table.c[name]
    quoted = _quote(name)
    if isinstance(column.type, String):
        return (
            f"CASE WHEN {quoted}::text ~ '{_FORMULA_PATTERN}' "
            f"AND {quoted}::text !~ '{_NUMBER_PATTERN}' "
            f"THEN '''' || {quoted}::text ELSE {quoted}::text END AS {quoted}"
        )
    return quoted


def export_query(table: AccountTable) -> str:
    """The SELECT that COPY streams for one table of an account ($1 is the account id)."""
    columns = ", ".join(_export_column(table, name) for name in table.exported)
    order = ", ".join(_quote(name) for name in table.order_by)
    return (
        f"SELECT {columns} FROM {_quote(table.name)} "  # noqa: S608 - names come from the data map
        f"WHERE {_quote(table.account_column)} = $1 ORDER BY {order}"
    )


def oldest_query(table: AccountTable) -> str:
    """The oldest time past the cutoff ($1 account, $2 cutoff): one step down the index."""
    assert table.kept_from is not None
    kept = _quote(table.kept_from)
    return (
        f"SELECT min({kept}) FROM {_quote(table.name)} "  # noqa: S608 - names from the data map
        f"WHERE {_quote(table.account_column)} = $1 AND {kept} < $2"
    )


def sweep_queries(table: AccountTable) -> tuple[str, str, str]:
    """The sweep's three statements for a table: count what is past its time ($1 account,
    $2 cutoff), delete a batch of it ($3 rows), and find the next row due."""
    assert table.kept_from is not None
    name, account, kept = _quote(table.name), _quote(table.account_column), _quote(table.kept_from)
    past = f"{account} = $1 AND {kept} < $2"
    return (
        f"SELECT count(*), min({kept}) FROM {name} WHERE {past}",  # noqa: S608 - from the map
        f"DELETE FROM {name} WHERE ctid = ANY(ARRAY("  # noqa: S608 - names from the data map
        f"SELECT ctid FROM {name} WHERE {past} LIMIT $3))",
        f"SELECT min({kept}) FROM {name} WHERE {account} = $1 AND {kept} >= $2",  # noqa: S608
    )


class _CsvSink:
    """Receives COPY output: RFC 4180 line ends, hashed as it is written."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.crc32 = 0
        self.size = 0

    async def __call__(self, data: bytes) -> None:
        # Text fields refuse control characters at input, so every LF ends a row.
        data = data.replace(b"\n", b"\r\n")
        self.digest.update(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        self.size += len(data)
        self.handle.write(data)


class Participant:
    """Exports and purges one service's account data as its data map declares."""

    def __init__(
        self,
        *,
        data_map: AccountDataMap,
        engine: AsyncEngine,
        store: ExportStore,
        keys: KeyStore | None = None,
        guard: PurgeGuard | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.data_map = data_map
        self.tracer = tracer or trace.get_tracer(__name__)
        self.engine = engine
        self.store = store
        self.keys = keys
        self.guard = guard
        self.chunk_bytes = chunk_bytes
        self._skip_row_checks: bool | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def service(self) -> str:
        """The service taking part."""
        return self.data_map.service

    def register(
        self,
        routes: EventRoutes,
        *,
        on_legal_hold: HoldHook | None = None,
        after_purge: PurgeHook | None = None,
    ) -> None:
        """Add the service's export and purge handlers to its routes, and the legal holds'
        (with the service's own part of them, if any); `after_purge` runs in the purge's
        transaction, once the account's rows are gone."""

        @routes.on(ExportRequested)
        async def on_export_requested(event: Envelope[ExportRequested], work: Work) -> None:
            """Send this service's slice of the account to retention."""
            with self._step(event.data.saga_id, "export slice"):
                await self.export(event.data, work)

        @routes.on(PurgeRequested)
        async def on_purge_requested(event: Envelope[PurgeRequested], work: Work) -> None:
            """Delete everything this service holds about the account and confirm; under a
            legal hold, nothing (retention asks again once the hold is released)."""
            try:
                with self._step(event.data.saga_id, "purge rows"):
                    await self.purge(event.data, work)
                    if after_purge is not None:
                        await after_purge(event.data, work)
            except PurgeBlockedError as blocked:
                log.warning("purge of saga %s refused: %s", event.data.saga_id, blocked)

        if self.service in consumers_of(RetentionSweepRequested.event_type):

            @routes.on(RetentionSweepRequested)
            async def on_retention_sweep_requested(
                event: Envelope[RetentionSweepRequested], work: Work
            ) -> None:
                """Delete the account's rows past the plan's time (or count them) and report."""
                await self.sweep(event.data, work)

        if self.service in consumers_of("legal_hold.placed"):
            LegalHolds.register(routes, then=on_legal_hold)  # every participant knows (LAW)

    def _step(self, saga_id: UUID, step: str) -> Any:
        """This service's span of a termination's step, in the trace the request carried."""
        return self.tracer.start_as_current_span(
            f"termination {step}",
            attributes={"quittance.saga.id": str(saga_id), "quittance.saga.step": step},
        )

    # ------------------------------------------------------------------ export

    async def export(self, request: ExportRequested, work: Work) -> None:
        """Write the slice to the store, send it as sealed chunks, then drop the spool."""
        transfer_id = uuid4()
        folder = f"{request.saga_id}/{transfer_id}"
        written = await self.write_slice(request.account_id, folder)
        files: list[ExportFile] = []
        for part in written:
            chunks = await self._send_file(request, transfer_id, part, work)
            files.append(part.file.model_copy(update={"chunks": chunks}))
        work.emit(
            ExportSliceWritten(
                account_id=request.account_id,
                saga_id=request.saga_id,
                transfer_id=transfer_id,
                files=files,
            )
        )
        work.after_commit(self.store.removal(folder))  # the chunks are in the outbox now

    async def write_slice(self, account_id: UUID, folder: str) -> list[SliceFile]:
        """COPY every exported table of the account into CSV files, from one snapshot."""
        written: list[SliceFile] = []
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            async with driver.transaction(isolation="repeatable_read", readonly=True):
                await driver.execute("SET LOCAL TIME ZONE 'UTC'")
                for table in self.data_map.exported_tables:
                    key = f"{folder}/{table.record_type}.csv"
                    async with self.store.async_writer(key) as handle:
                        sink = _CsvSink(handle)
                        status = await driver.copy_from_query(
                            export_query(table),
                            account_id,
                            output=sink,
                            format="csv",
                            header=True,
                            timeout=BULK_TIMEOUT_S,
                        )
                    written.append(
                        SliceFile(
                            key=key,
                            file=ExportFile(
                                name=f"{table.record_type}.csv",
                                record_type=table.record_type,
                                records=int(str(status).rsplit(" ", 1)[-1]),
                                sha256=sink.digest.hexdigest(),
                                crc32=sink.crc32,
                                size=sink.size,
                                chunks=0,
                            ),
                        )
                    )
        return written

    async def _send_file(
        self, request: ExportRequested, transfer_id: UUID, part: SliceFile, work: Work
    ) -> int:
        """Publish the file as sealed chunks, a few at a time; returns how many."""
        index = 0
        batch: list[ExportSliceChunk] = []
        with await asyncio.to_thread(self.store.reader, part.key) as handle:
            chunker = DeflateChunker(handle, self.chunk_bytes)
            while (content := await asyncio.to_thread(_next_content, chunker)) is not None:
                batch.append(
                    ExportSliceChunk(
                        account_id=request.account_id,
                        saga_id=request.saga_id,
                        transfer_id=transfer_id,
                        file=part.file.name,
                        index=index,
                        content=content,
                    )
                )
                index += 1
                if len(batch) == PUBLISH_EVERY:
                    await work.publish_now(batch)
                    batch = []
        await work.publish_now(batch)
        return index

    # ------------------------------------------------------------------ purge

    async def purge(self, request: PurgeRequested, work: Work) -> None:
        """Delete every mapped row of the account, children first, and confirm in one commit."""
        await self.ensure_purge_allowed(request.account_id)
        deleted = 0
        driver = await work.driver()
        skip_row_checks = await self._may_skip_row_checks(driver)
        if skip_row_checks:
            # Children go before parents and every table's rows of the account go, so the
            # foreign-key check PostgreSQL runs for each deleted parent row (most of a large
            # purge's time) finds nothing; it is skipped, and the account checked once below.
            await driver.execute("SET LOCAL session_replication_role = replica")
        for table in self.data_map.purged_tables:
            began = time.perf_counter()
            status = await driver.execute(
                f"DELETE FROM {_quote(table.name)} "  # noqa: S608 - names from the data map
                f"WHERE {_quote(table.account_column)} = $1",
                request.account_id,
                timeout=BULK_TIMEOUT_S,  # a large account's rows take longer than a request's
            )
            rows = int(str(status).rsplit(" ", 1)[-1])
            deleted += rows
            if rows:  # where a large purge spends its time, for whoever tunes it
                log.info(
                    "purged %d rows of %s in %.2f s", rows, table.name, time.perf_counter() - began
                )
        if skip_row_checks:
            await driver.execute("SET LOCAL session_replication_role = origin")
            await self._ensure_nothing_left(driver, request.account_id)
        # The outbox keeps published events for replay: the account's go too, and the
        # confirmation itself is deleted as soon as the broker has it.
        deleted += await forget_account_events(work.session, account_id=request.account_id)
        deleted += await forget_holds(work.session, request.account_id)  # none stands
        work.emit(
            PurgeCompleted(
                account_id=request.account_id, saga_id=request.saga_id, rows_deleted=deleted
            ),
            replayable=False,
        )
        work.after_commit(self.store.removal(str(request.saga_id)))
        if self.keys is not None:
            # Retention destroyed the key when the export was delivered; a copy cached here
            # would still open a late event of the account and put a row back.
            self.keys.evict(request.account_id)
        work.after_commit(self._vacuum_later)

    # ------------------------------------------------------------------ the plan's sweep

    async def sweep(self, request: RetentionSweepRequested, work: Work) -> None:
        """Delete what is past its time in every swept table of the account, batch by batch,
        and report it; a dry run, or a standing legal hold, only counts (PLAN-RETENTION, LAW).

        The batches commit on their own: a rerun after a crash deletes what is left and
        reports that; the report itself goes out once (the inbox)."""
        held = False
        try:
            await self.ensure_purge_allowed(request.account_id)
        except PurgeBlockedError:
            held = True
        swept: list[SweptTable] = []
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            for table in self.data_map.swept_tables:
                cutoff = request.cutoffs.get(str(table.retention))
                if cutoff is None:
                    continue  # the plan keeps this category for the contract
                count, delete, next_due = sweep_queries(table)
                if request.dry_run or held:
                    rows, oldest = await driver.fetchrow(count, request.account_id, cutoff)
                else:  # each statement its own transaction (no transaction is open here)
                    rows, oldest = (
                        0,
                        await driver.fetchval(oldest_query(table), request.account_id, cutoff),
                    )
                    while oldest is not None:
                        status = await driver.execute(
                            delete, request.account_id, cutoff, SWEEP_BATCH
                        )
                        deleted = int(status.rsplit(" ", 1)[-1])
                        rows += deleted
                        if deleted < SWEEP_BATCH:
                            break
                next_kept = await driver.fetchval(next_due, request.account_id, cutoff)
                swept.append(
                    SweptTable(
                        table=table.name,
                        category=str(table.retention),
                        rows=rows,
                        oldest_at=oldest if rows else None,
                        next_due_at=None
                        if next_kept is None
                        else next_kept + (request.as_of - cutoff),
                    )
                )
                if rows and not (request.dry_run or held):
                    log.info("swept %d rows of %s past the plan's time", rows, table.name)
        work.emit(
            RetentionSweepReported(
                account_id=request.account_id,
                sweep_id=request.sweep_id,
                dry_run=request.dry_run,
                held=held,
                tables=swept,
            )
        )

    async def _may_skip_row_checks(self, driver: Any) -> bool:
        """Whether this database role may turn off foreign-key triggers for its transaction
        (a superuser, or granted SET on session_replication_role); asked once."""
        if self._skip_row_checks is None:
            self._skip_row_checks = bool(
                await driver.fetchval(
                    "SELECT rolsuper OR has_parameter_privilege("
                    "'session_replication_role', 'SET') FROM pg_roles "
                    "WHERE rolname = current_user"
                )
            )
        return self._skip_row_checks

    async def _ensure_nothing_left(self, driver: Any, account_id: UUID) -> None:
        """With the row checks off, a row another transaction committed meanwhile (a late
        event's, referencing a parent just deleted) would be left: look, and if one is there,
        fail the purge, which runs again and takes it."""
        for table in self.data_map.purged_tables:
            left = await driver.fetchval(
                f"SELECT EXISTS (SELECT FROM {_quote(table.name)} "  # noqa: S608 - from the map
                f"WHERE {_quote(table.account_column)} = $1)",
                account_id,
            )
            if left:
                raise PurgeIncompleteError(f"{table.name} gained a row of the account")

    async def ensure_purge_allowed(self, account_id: UUID) -> None:
        """The one place every deletion of an account passes: legal holds are checked here."""
        if self.guard is None:
            return
        reason = await self.guard.purge_blocked(account_id)
        if reason is not None:
            raise PurgeBlockedError(reason)

    async def _vacuum_later(self) -> None:
        """Vacuum the purged tables in the background, so dead tuples do not linger."""
        task = asyncio.create_task(self.vacuum(), name=f"{self.service}-vacuum")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def vacuum(self) -> None:
        """VACUUM every mapped table (outside a transaction, as VACUUM requires)."""
        try:
            async with self.engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                for table in self.data_map.purged_tables:
                    await autocommit.execute(text(f"VACUUM {_quote(table.name)}"))
        except Exception:
            log.exception("vacuum after purge failed; autovacuum will get there")


def _next_content(chunker: DeflateChunker) -> str | None:
    """The next chunk as it travels (base64), made off the event loop."""
    piece = chunker.next_piece()
    return None if piece is None else base64.b64encode(piece).decode("ascii")


def unpack(content: str) -> bytes:
    """The CSV bytes of one chunk (each chunk inflates on its own)."""
    return inflate_pieces([base64.b64decode(content)])
