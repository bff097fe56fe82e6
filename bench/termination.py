"""The termination of a large account, end to end, on the four services as processes.

One account holds about a million records across billing, notifications and audit, seeded
straight into their databases. The owner terminates it; the clock runs until the purge
certificate exists. Meanwhile another account's `GET /account` is timed (the API must keep
answering during the export) and every service's RSS is sampled.

Baselines, same run, same servers: plain `COPY (SELECT ...) TO STDOUT` of the same rows with
asyncpg (the export's floor), and the same `GET /account` while nothing else runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from bench.profiling import start_profilers, stop_profilers
from devstack.stack import SERVICES, Stack
from shared.db import create_engine
from shared.export_store import FolderExportStore
from shared.participant import Participant

Result = tuple[str, float, str, str, float]

SCALE = float(os.environ.get("BENCH_TERMINATION_SCALE", "1"))
CUSTOMERS = int(1_000 * SCALE)
INVOICES = int(100_000 * SCALE)
LINES_PER_INVOICE = 5
EMAILS = int(100_000 * SCALE)
ACCESSES = int(299_000 * SCALE)
PROBE_CONCURRENCY = 2  # two clients, one request each 50 ms: ~40 a second, enough for a p99
PROBE_PAUSE_S = 0.05  # the probe must not be the load: on two cores it would starve the export
OWNER_PASSWORD = "the bench owner's passphrase"  # noqa: S105 - a bench account's password


def _dsn(stack: Stack, service: str) -> str:
    return stack.database_url(service).replace("postgresql+asyncpg://", "postgresql://", 1)


async def _seed_billing(stack: Stack, account_id: uuid.UUID) -> int:
    connection = await asyncpg.connect(_dsn(stack, "billing"))
    try:
        now = datetime.now(UTC)
        customers = [
            (uuid.uuid4(), account_id, f"Customer {i}", f"c{i}@bench.example.com", None, now)
            for i in range(CUSTOMERS)
        ]
        await connection.copy_records_to_table(
            "customer",
            records=customers,
            columns=["id", "account_id", "name", "email", "address", "created_at"],
        )
        invoices: list[tuple[Any, ...]] = []
        lines: list[tuple[Any, ...]] = []
        for number in range(INVOICES):
            invoice_id = uuid.uuid4()
            invoices.append(
                (
                    invoice_id,
                    account_id,
                    customers[number % CUSTOMERS][0],
                    f"INV-{number + 1:06d}",
                    "ISSUED",
                    "EUR",
                    105,
                    105,  # the subtotal: no tax
                    0,  # the tax total
                    now.date(),
                    (now + timedelta(days=30)).date(),
                    now,
                    now,
                )
            )
            lines.extend(
                (
                    *(uuid.uuid4(), invoice_id, account_id, position, f"Work item {position}"),
                    *(1, 21, 21, 0, 0, 0),  # no discount, no tax
                )
                for position in range(1, LINES_PER_INVOICE + 1)
            )
        await connection.copy_records_to_table(
            "invoice",
            records=invoices,
            columns=[
                "id",
                "account_id",
                "customer_id",
                "number",
                "status",
                "currency",
                "total",
                "subtotal",
                "tax_total",
                "issue_date",
                "due_date",
                "created_at",
                "issued_at",
            ],
        )
        await connection.copy_records_to_table(
            "invoice_line",
            records=lines,
            columns=[
                "id",
                "invoice_id",
                "account_id",
                "position",
                "description",
                "quantity",
                "unit_price",
                "amount",
                "discount_percent",
                "discount_amount",
                "tax_rate",
            ],
        )
        await connection.execute("ANALYZE")
        return len(customers) + len(invoices) + len(lines)
    finally:
        await connection.close()


async def _seed_notifications(stack: Stack, account_id: uuid.UUID) -> int:
    connection = await asyncpg.connect(_dsn(stack, "notifications"))
    try:
        now = datetime.now(UTC)
        await connection.copy_records_to_table(
            "outgoing_email",
            records=[
                (
                    uuid.uuid4(),
                    account_id,
                    "INVOICE",
                    f"<{uuid.uuid4()}@bench>",
                    f"c{i}@bench.example.com",
                    f"Invoice INV-{i:06d}",
                    "SENT",
                    1,
                    now,
                    now,
                )
                for i in range(EMAILS)
            ],
            columns=[
                "id",
                "account_id",
                "kind",
                "message_id",
                "recipient",
                "subject",
                "status",
                "attempts",
                "created_at",
                "sent_at",
            ],
        )
        await connection.execute("ANALYZE")
        return EMAILS
    finally:
        await connection.close()


async def _seed_audit(stack: Stack, account_id: uuid.UUID) -> int:
    """The account's trail: entries and their personal parts (not chained: the bench
    measures export and purge, not verification)."""
    connection = await asyncpg.connect(_dsn(stack, "audit"))
    try:
        now = datetime.now(UTC)
        first = 10_000_000  # global sequences clear of anything the run appends
        await connection.copy_records_to_table(
            "audit_entry",
            records=[
                (
                    first + sequence,
                    account_id,
                    sequence,
                    uuid.uuid4(),
                    "data-access",
                    "staff",
                    "s-1",
                    "support",
                    "granted",
                    "customer",
                    "c-1",
                    now,
                    now,
                    "0" * 64,
                    "0" * 64,
                    "0" * 64,
                )
                for sequence in range(1, ACCESSES + 1)
            ],
            columns=[
                "global_seq",
                "account_id",
                "account_seq",
                "event_id",
                "kind",
                "actor_type",
                "actor_id",
                "purpose",
                "outcome",
                "resource_type",
                "resource_id",
                "occurred_at",
                "recorded_at",
                "personal_commitment",
                "account_previous_hash",
                "account_hash",
            ],
        )
        await connection.copy_records_to_table(
            "audit_personal",
            records=[
                (first + sequence, account_id, "0" * 32, "Sam Support", f"TICKET-{sequence}")
                for sequence in range(1, ACCESSES + 1)
            ],
            columns=["global_seq", "account_id", "salt", "actor_name", "reason"],
        )
        await connection.execute("ANALYZE")
        return ACCESSES
    finally:
        await connection.close()


_COPY_TABLES = {
    "billing": ["account", "app_user", "api_key", "access_grant", "customer", "invoice"],
    "notifications": ["outgoing_email"],
    "audit": ["audit_entry", "audit_personal"],
}


async def _raw_copy_out(stack: Stack, account_id: uuid.UUID) -> tuple[int, float]:
    """Plain COPY of the account's rows of every exported table, to nowhere: rows, seconds."""
    rows = 0
    started = time.perf_counter()
    for service, tables in {
        **_COPY_TABLES,
        "billing": [*_COPY_TABLES["billing"], "invoice_line"],
    }.items():
        connection = await asyncpg.connect(_dsn(stack, service))
        try:
            for table in tables:
                column = "id" if table == "account" else "account_id"
                status = await connection.copy_from_query(
                    f"SELECT * FROM {table} WHERE {column} = $1",  # noqa: S608 - fixed names
                    account_id,
                    output=_discard,
                    format="csv",
                    header=True,
                )
                rows += int(status.rsplit(" ", 1)[-1])
        finally:
            await connection.close()
    return rows, time.perf_counter() - started


async def _discard(_: bytes) -> None:
    return None


async def _kit_export(stack: Stack, account_id: uuid.UUID) -> tuple[int, float]:
    """Each service's slice written by the participant kit, in turn: rows, seconds.

    What the baseline's COPY does plus what the kit adds: formula neutralisation in the
    query, RFC 4180 line ends, SHA-256 and CRC-32, and the file in an export store.
    """
    from audit.data_map import DATA_MAP as AUDIT
    from billing.data_map import DATA_MAP as BILLING
    from notifications.data_map import DATA_MAP as NOTIFICATIONS

    rows, seconds = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="quittance-bench-export-") as folder:
        for data_map in (BILLING, NOTIFICATIONS, AUDIT):
            engine = create_engine(stack.database_url(data_map.service))
            try:
                store = FolderExportStore(Path(folder) / data_map.service)
                kit = Participant(data_map=data_map, engine=engine, store=store)
                started = time.perf_counter()
                written = await kit.write_slice(account_id, "bench")
                seconds += time.perf_counter() - started
                rows += sum(part.file.records for part in written)
            finally:
                await engine.dispose()
    return rows, seconds


async def _open_account(api: httpx.AsyncClient, name: str) -> tuple[uuid.UUID, dict[str, str]]:
    opened = (
        await api.post(
            "/accounts",
            json={
                "name": name,
                "plan": "free",  # no grace period: the clock runs from termination to purge
                "owner": {
                    "name": "Ada",
                    "email": f"ada@{name}.example.com",
                    "password": OWNER_PASSWORD,
                },
            },
        )
    ).json()
    return uuid.UUID(opened["account"]["id"]), {"Authorization": f"Bearer {opened['api_key']}"}


async def _probe(
    api: httpx.AsyncClient, headers: dict[str, str], stop: asyncio.Event
) -> list[float]:
    """Time GET /account until stop is set."""
    latencies: list[float] = []

    async def one_client() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            response = await api.get("/account", headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            _SLOWEST.append((latencies[-1], started))
            if response.status_code != 200:
                raise RuntimeError(f"GET /account answered {response.status_code}")
            await asyncio.sleep(PROBE_PAUSE_S)

    await asyncio.gather(*(one_client() for _ in range(PROBE_CONCURRENCY)))
    return latencies


_SLOWEST: list[tuple[float, float]] = []  # (ms, when) of every probe: where the slow ones fall


def _p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


async def _sample_rss(stack: Stack, stop: asyncio.Event) -> float:
    """The largest RSS (MB) of any service (with its worker children) until stop is set."""
    processes = {}
    for spec in SERVICES:
        root = psutil.Process(stack.services[spec.name].pid)
        processes[spec.name] = [root, *root.children(recursive=True)]
    peak = 0.0
    while not stop.is_set():
        for group in processes.values():
            try:
                rss = sum(p.memory_info().rss for p in group) / 1e6
            except psutil.Error:
                continue
            peak = max(peak, rss)
        await asyncio.sleep(0.1)
    return peak


async def _saga_state(watch: asyncpg.Connection, account_id: uuid.UUID) -> tuple[str | None, int]:
    """The saga's status and how many participants' slice summaries it has."""
    row = await watch.fetchrow(
        "SELECT status::text AS status, "
        "(SELECT count(*) FROM jsonb_object_keys(slices)) AS slices "
        "FROM termination_saga WHERE account_id = $1",
        account_id,
    )
    return (None, 0) if row is None else (row["status"], int(row["slices"]))


async def _certificates(watch: asyncpg.Connection) -> int:
    return int(await watch.fetchval("SELECT count(*) FROM purge_certificate"))


def _cpu_by_command() -> dict[str, float]:
    """CPU seconds so far of every process on the machine, summed by a short command name."""
    spent: dict[str, float] = {}
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        times = process.info["cpu_times"]
        if times is None:
            continue
        name = next(
            (s.name for s in SERVICES if f"{s.name}.main" in cmdline),
            "mailcatcher"
            if "mailcatcher" in cmdline
            else "postgres"
            if "postgres" in cmdline
            else "tansu"
            if "tansu" in cmdline
            else "bench"
            if "bench" in cmdline
            else "other",
        )
        spent[name] = spent.get(name, 0.0) + times.user + times.system
    return spent


def _cpu_spent(before: dict[str, float]) -> dict[str, float]:
    after = _cpu_by_command()
    return {k: round(v - before.get(k, 0.0), 1) for k, v in sorted(after.items())}


async def bench_termination(stack: Stack) -> list[Result]:
    """termination_1m_records_s, export_rows_per_s, export_peak_rss_mb, api_p99_during_export_ms."""
    stack.topic_prefix = f"bench{uuid.uuid4().hex[:6]}."
    await asyncio.to_thread(stack.start_services)
    try:
        async with httpx.AsyncClient(base_url=stack.service_url("billing"), timeout=60) as api:
            account_id, owner = await _open_account(api, "large")
            _, bystander = await _open_account(api, "bystander")
            seeded = 3 + sum(
                await asyncio.gather(
                    _seed_billing(stack, account_id),
                    _seed_notifications(stack, account_id),
                    _seed_audit(stack, account_id),
                )
            )
            copied, copy_s = await _raw_copy_out(stack, account_id)
            exported, kit_s = await _kit_export(stack, account_id)

            stop = asyncio.Event()
            idle_probe = asyncio.create_task(_probe(api, bystander, stop))
            await asyncio.sleep(10)
            stop.set()
            idle = await idle_probe
            idle_rss_stop = asyncio.Event()
            idle_rss = asyncio.create_task(_sample_rss(stack, idle_rss_stop))
            await asyncio.sleep(1)
            idle_rss_stop.set()
            idle_peak = await idle_rss

            stop = asyncio.Event()
            _SLOWEST.clear()
            busy_probe = asyncio.create_task(_probe(api, bystander, stop))
            rss = asyncio.create_task(_sample_rss(stack, stop))
            # One connection for watching: a new one per poll would cost the server a process.
            watch = await asyncpg.connect(_dsn(stack, "retention"))
            certificates = await _certificates(watch)
            profilers = start_profilers(stack, [spec.name for spec in SERVICES])
            cpu_before = _cpu_by_command()
            started, started_at = time.perf_counter(), datetime.now(UTC)
            response = await api.post(
                "/account/termination", headers=owner, json={"password": OWNER_PASSWORD}
            )
            if response.status_code != 202:
                raise RuntimeError(response.text)
            exported_at = sliced_at = None
            phases: dict[str, float] = {}
            while await _certificates(watch) == certificates:
                status, slices = await _saga_state(watch, account_id)
                phases.setdefault(f"{status}/{slices}", time.perf_counter() - started)
                if exported_at is None:
                    if sliced_at is None and (slices == 3 or status not in (None, "EXPORTING")):
                        sliced_at = time.perf_counter()
                    if status in ("DELIVERING", "PURGING"):
                        exported_at = time.perf_counter()
                if time.perf_counter() - started > 600:
                    raise RuntimeError("no certificate within 10 minutes")
                await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - started
            # When each participant's purge was confirmed, from the signed certificate.
            payload = await watch.fetchval(
                "SELECT payload FROM purge_certificate ORDER BY completed_at DESC LIMIT 1"
            )
            await watch.close()
            if payload:
                purged = {
                    service: round(
                        (datetime.fromisoformat(part["completed_at"]) - started_at).total_seconds(),
                        1,
                    )
                    for service, part in json.loads(payload)["deleted"].items()
                }
                print(f"purges confirmed at (s): {purged}", file=sys.stderr, flush=True)
            # Where the time went (the first moment each saga state was seen), for whoever tunes it.
            print(f"termination phases (s): {phases}", file=sys.stderr, flush=True)
            print(f"cpu seconds: {_cpu_spent(cpu_before)}", file=sys.stderr, flush=True)
            if keep := os.environ.get("BENCH_KEEP_LOGS"):
                shutil.copytree(stack.log_dir, keep, dirs_exist_ok=True)
            stop_profilers(profilers)
            stop.set()
            busy, peak = await busy_probe, await rss
            slowest = sorted(_SLOWEST, reverse=True)[:8]
            print(
                "slowest probes (ms at s): "
                + ", ".join(f"{ms:.0f} at {at - started:.1f}" for ms, at in slowest),
                file=sys.stderr,
                flush=True,
            )
    finally:
        stack.stop_services()
    export_s = (exported_at or time.perf_counter()) - started
    sliced_s = (sliced_at or time.perf_counter()) - started
    copy_rate = copied / copy_s
    return [
        ("termination_1m_records_s", elapsed, "s", "raw_copy_out_s", copy_s),
        # Each service's slice written by the kit, against COPY of the same rows.
        ("export_rows_per_s", exported / kit_s, "rows/s", "copy_out_rows_per_s", copy_rate),
        # The whole pipeline: from the termination until every slice is at retention...
        (
            "slices_at_retention_rows_per_s",
            seeded / sliced_s,
            "rows/s",
            "copy_out_rows_per_s",
            copy_rate,
        ),
        # ... and until the bundle is assembled and on its way to notifications.
        ("bundle_rows_per_s", seeded / export_s, "rows/s", "copy_out_rows_per_s", copy_rate),
        ("export_peak_rss_mb", peak, "MB", "idle_peak_rss_mb", idle_peak),
        ("api_p99_during_export_ms", _p99(busy), "ms", "api_p99_idle_ms", _p99(idle)),
    ]
