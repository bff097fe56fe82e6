"""Invoice email through the notifications service, against raw SMTP and raw Kafka + SMTP.

`emails_per_s`: the notifications service, started as the stack runs it (uvicorn process),
consumes N sealed `invoice.issued` events produced straight to its topic and emails each one
(render HTML and text, build the PDF, queue, send, mark sent). Timed from the first produce to
the last message accepted by the SMTP server; N is what the warm-up's pace sends in about 25 s
(60 to 1000). Against `raw_smtp_send_per_s`: aiosmtplib sending a captured invoice email (same
bytes and size, PDF included; only the Message-ID differs, at the same length) to the same
server. The service has one subscriber that handles
one event at a time and sends each email with `aiosmtplib.send` (a connection per message),
so its effective concurrency is 1: the baseline sends sequentially, a connection per message.

`invoice_to_email_p99_ms`: invoices issued through billing's API (`POST /invoices` with
`issue: true`, open loop) at a steady 80% of the measured emails_per_s (capped at 80% of what
billing sustains in a short burst); latency from the request's start to the email accepted by
the SMTP server, p99. Against `raw_pipeline_p99_ms`: at the same rate and count, plain aiokafka
produces a record of the same size as billing's invoice.issued event to a fresh topic, a plain
AIOKafkaConsumer (manually assigned, with the service's fetch_max_wait_ms, since the embedded
broker answers a fetch only when its wait ends) takes it, and aiosmtplib sends an email of the
same size as the service's; latency from produce start to arrival, p99.

The SMTP server of both pairs is one aiosmtpd sink in this process (notifications is pointed at
it with NOTIFICATIONS_SMTP__HOST/PORT): it records the arrival time (perf_counter) of each
message with its Message-ID and Subject, so no mail catcher is polled.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import aiohttp
import aiosmtplib
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from aiosmtpd.controller import Controller

from bench.profiling import start_profilers, stop_profilers
from devstack.processes import free_port
from devstack.stack import Stack
from devstack.testing import read_topic
from notifications.settings import NotificationsSettings
from shared.contracts import InvoiceIssued, InvoiceLine, IssuedInvoiceCustomer, new_envelope
from shared.kafka import ensure_topics
from shared.keystore import create_key_store
from shared.outbox import seal_envelope
from shared.settings import KafkaSettings

Result = tuple[str, float, str, str, float]

# N events for about TARGET_S seconds at the pace the warm-up shows, within these bounds.
EMAILS_MIN, EMAILS_MAX, TARGET_S = 60, 1000, 25.0
WARMUP = 12
ACCOUNTS = 20
LATENCY_MIN, LATENCY_MAX, LATENCY_S = 200, 300, 20.0
BURST, BURST_CONCURRENCY = 16, 8
ARRIVAL_TIMEOUT_S = 60.0
SENDER, RECIPIENT = "bench@quittance.example", "bob@bench.example.com"
LINES = [
    {
        "description": f"Line {i}",
        "quantity": "2",
        "unit_price": "10.50",
        "discount_percent": "10" if i % 2 else "0",
        "tax_rate": "20" if i % 2 else "5.5",
    }
    for i in range(5)
]
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
_SUBJECT = re.compile(rb"^Subject:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)


@dataclass
class Arrival:
    at: float
    message_id: str
    subject: str
    size: int


@dataclass
class _Handler:
    """aiosmtpd handler: notes when each message was accepted (in the controller's thread)."""

    arrivals: list[Arrival] = field(default_factory=list)
    sample: bytes = b""
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        at = time.perf_counter()
        content: bytes = envelope.content
        head = content.split(b"\r\n\r\n", 1)[0]
        found_id = _MESSAGE_ID.search(head)
        found_subject = _SUBJECT.search(head)
        with self.lock:
            self.arrivals.append(
                Arrival(
                    at,
                    found_id.group(1).decode() if found_id else "",
                    found_subject.group(1).decode(errors="replace") if found_subject else "",
                    len(content),
                )
            )
            self.sample = content
        return "250 Message accepted for delivery"


class Sink:
    """An SMTP server in this process that records arrivals."""

    def __init__(self) -> None:
        self.handler = _Handler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def since(self, mark: int) -> list[Arrival]:
        with self.handler.lock:
            return self.handler.arrivals[mark:]

    @property
    def count(self) -> int:
        return len(self.handler.arrivals)

    async def wait_for(
        self,
        ids: set[str],
        *,
        mark: int,
        key: str = "message_id",
        sender: asyncio.Task[None] | None = None,
    ) -> None:
        """Until every id in `ids` arrived after `mark` (by Message-ID or Subject token); fails
        at once if the task that sends them ended."""
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        while True:
            if sender is not None and sender.done():
                sender.result()
                raise RuntimeError("the sending task ended early")
            seen = _keys(self.since(mark), key)
            if ids <= seen:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids - seen)} of {len(ids)} emails never reached the sink")
            await asyncio.sleep(0.01)


def _keys(arrivals: list[Arrival], key: str) -> set[str]:
    if key == "message_id":
        return {a.message_id for a in arrivals}
    return {token for a in arrivals for token in a.subject.split()}


def _first_arrivals(arrivals: list[Arrival], key: str) -> dict[str, float]:
    first: dict[str, float] = {}
    for a in arrivals:
        for token in [a.message_id] if key == "message_id" else a.subject.split():
            first.setdefault(token, a.at)
    return first


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def _settings(stack: Stack, sink: Sink) -> dict[str, str]:
    env = stack.service_env("notifications")
    env["NOTIFICATIONS_SMTP__HOST"] = "127.0.0.1"
    env["NOTIFICATIONS_SMTP__PORT"] = str(sink.port)
    return env


async def _start_notifications(stack: Stack, env: dict[str, str]) -> None:
    """Start notifications exactly as the stack does, with its SMTP pointed at the sink."""
    original = stack.service_env

    def with_sink(service: str) -> dict[str, str]:
        return env if service == "notifications" else original(service)

    stack.service_env = with_sink  # type: ignore[method-assign]
    try:
        await asyncio.to_thread(stack.start_service, "notifications")
    finally:
        del stack.service_env


def _invoice(account_id: uuid.UUID, index: int) -> InvoiceIssued:
    return InvoiceIssued(
        account_id=account_id,
        invoice_id=uuid.uuid4(),
        number=f"INV-{index:06d}",
        seller_name="Acme",
        customer=IssuedInvoiceCustomer(customer_id=uuid.uuid4(), name="Bob", email=RECIPIENT),
        currency="EUR",
        lines=[
            InvoiceLine(
                description=f"Work {line}",
                quantity=Decimal(2),
                unit_price=Decimal("10.50"),
                amount=Decimal(21),
            )
            for line in range(5)
        ],
        total=Decimal(105),
        issue_date=date(2030, 1, 1),
        due_date=date(2030, 1, 31),
    )


async def _sealed_events(settings: NotificationsSettings, count: int) -> list[tuple[str, bytes]]:
    """(Message-ID the service will give the email, sealed event bytes) for `count` invoices."""
    keys = create_key_store(settings.keystore)
    await keys.start()
    accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
    try:
        events = []
        for index in range(count):
            account = accounts[index % ACCOUNTS]
            envelope = new_envelope(_invoice(account, index), source="billing")
            key = await keys.key_for_writing(account)
            message_id = f"<{envelope.id}@{settings.message_id_domain}>"
            events.append((message_id, seal_envelope(envelope, key)))
        return events
    finally:
        await keys.close()


async def _produce_all(
    settings: NotificationsSettings, events: list[tuple[str, bytes]], accounts: list[str]
) -> float:
    """Produce the events (keyed by account, as billing's relay does); when the first began."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=2
    )
    await producer.start()
    topic = settings.kafka.topic("invoice.issued")
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(
                topic,
                body,
                key=accounts[index % len(accounts)].encode(),
                headers=[("content-type", b"application/json")],
            )
            for index, (_, body) in enumerate(events)
        ]
        await asyncio.gather(*futures)
        return started
    finally:
        await producer.stop()


def _account_of(body: bytes) -> str:
    return str(json.loads(body)["subject"])


async def _emails_per_s(settings: NotificationsSettings, sink: Sink) -> tuple[float, int]:
    """Warm up, then produce N events (N for about TARGET_S at the warm-up's pace) and time
    until the last email is accepted; the rate and N."""
    count = WARMUP
    while True:
        events = await _sealed_events(settings, count)
        accounts = [_account_of(body) for _, body in events]
        mark = sink.count
        started = await _produce_all(settings, events, accounts)
        ids = {message_id for message_id, _ in events}
        await sink.wait_for(ids, mark=mark)
        arrived = sorted(_first_arrivals(sink.since(mark), "message_id")[i] for i in ids)
        if count != WARMUP:
            return count / (arrived[-1] - started), count
        # The first email pays for imports and fonts: the pace of the others sets N.
        pace = (len(arrived) - 2) / (arrived[-1] - arrived[1])
        count = int(min(EMAILS_MAX, max(EMAILS_MIN, pace * TARGET_S)))


def _with_message_id(message: bytes, message_id: str) -> bytes:
    """The same message with another Message-ID (the caller keeps the length)."""
    found = _MESSAGE_ID.search(message)
    assert found is not None, "the captured email has no Message-ID"
    return message[: found.start(1)] + message_id.encode() + message[found.end(1) :]


def _same_length_id(template: str, tag: str, index: int) -> str:
    """A Message-ID as long as `template`, unique by tag and index."""
    core = f"{tag}-{index:08d}-"
    body = template.strip("<>")
    return "<" + (core + uuid.uuid4().hex * 3)[: len(body)] + ">"


async def _raw_smtp_per_s(sink: Sink, sample: bytes, count: int) -> float:
    """aiosmtplib, one message at a time, a connection each, as the service sends."""
    template = _MESSAGE_ID.search(sample)
    assert template is not None
    ids = [_same_length_id(template.group(1).decode(), "raw", i) for i in range(count)]
    messages = [_with_message_id(sample, message_id) for message_id in ids]
    assert all(len(m) == len(sample) for m in messages)
    mark = sink.count
    started = time.perf_counter()
    for message in messages:
        await aiosmtplib.send(
            message, sender=SENDER, recipients=[RECIPIENT], hostname="127.0.0.1", port=sink.port
        )
    await sink.wait_for(set(ids), mark=mark)
    arrived = _first_arrivals(sink.since(mark), "message_id")
    return count / (max(arrived[i] for i in ids) - started)


@dataclass
class _Caller:
    headers: dict[str, str]
    body: bytes


async def _open_account(api: aiohttp.ClientSession, base: str) -> _Caller:
    async with api.post(
        f"{base}/accounts",
        json={"name": "Mail Bench Ltd", "owner": {"name": "Ada", "email": "ada@bench.example"}},
    ) as response:
        assert response.status == 201, await response.text()
        opened = await response.json()
    headers = {"Authorization": f"Bearer {opened['api_key']}"}
    async with api.post(
        f"{base}/customers", headers=headers, json={"name": "Bob", "email": RECIPIENT}
    ) as response:
        assert response.status == 201, await response.text()
        customer = await response.json()
    due = (datetime.now(UTC) + timedelta(days=30)).date()
    body = {
        "customer_id": customer["id"],
        "currency": "EUR",
        "due_date": due.isoformat(),
        "lines": LINES,
        "issue": True,
    }
    return _Caller({**headers, "Content-Type": "application/json"}, json.dumps(body).encode())


async def _open_loop(rate: float, count: int, one: Any) -> None:
    """Start `count` calls at a steady `rate`, whatever the replies; wait for all."""
    tasks = []
    interval, start = 1 / rate, time.perf_counter()
    for index in range(count):
        await asyncio.sleep(max(0.0, start + index * interval - time.perf_counter()))
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)


@dataclass
class _Pipeline:
    rate: float
    count: int
    p99_ms: float
    event_size: int
    email: bytes


async def _invoice_to_email(stack: Stack, sink: Sink, emails_per_s: float) -> _Pipeline:
    """Billing's API to the sink, at 80% of emails_per_s (capped by billing), p99 latency."""
    base = stack.service_url("billing")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as api:
        caller = await _open_account(api, base)
        started: dict[str, float] = {}

        async def issue(_: int) -> None:
            began = time.perf_counter()
            async with api.post(f"{base}/invoices", headers=caller.headers, data=caller.body) as r:
                answer = await r.read()
                if r.status != 201:
                    raise RuntimeError(f"issuing answered {r.status}: {answer[:300]!r}")
            started[json.loads(answer)["number"]] = began

        # A short closed-loop burst: what billing sustains (and a warm-up of the whole path).
        mark, remaining = sink.count, BURST

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await issue(0)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(BURST_CONCURRENCY)))
        billing_rate = BURST / (time.perf_counter() - began)
        await sink.wait_for(set(started), mark=mark, key="subject")
        rate = min(0.8 * emails_per_s, 0.8 * billing_rate)
        count = int(min(LATENCY_MAX, max(LATENCY_MIN, rate * LATENCY_S)))
        _note(
            f"billing burst {billing_rate:.1f} invoices/s; open loop at {rate:.1f}/s "
            f"for {count} invoices"
        )
        started.clear()
        mark = sink.count
        await _open_loop(rate, count, issue)
        await sink.wait_for(set(started), mark=mark, key="subject")
    arrived = _first_arrivals(sink.since(mark), "subject")
    ordered = sorted(started.items(), key=lambda item: item[1])
    latencies = [(arrived[number] - began) * 1000 for number, began in ordered]
    quarter = len(latencies) // 4
    _note(
        f"invoice to email median of the first quarter {statistics.median(latencies[:quarter]):.0f}"
        f" ms, of the last {statistics.median(latencies[-quarter:]):.0f} ms"
    )
    records = await read_topic(
        stack.bootstrap_servers, f"{stack.topic_prefix}invoice.issued", count=1, timeout=10
    )
    assert records, "no invoice.issued record on billing's topic"
    _note(f"invoice to email p50 {statistics.median(latencies):.0f} ms, max {max(latencies):.0f}")
    return _Pipeline(rate, count, _p99(latencies), len(records[0].value), sink.handler.sample)


async def _raw_pipeline_p99(
    stack: Stack, settings: NotificationsSettings, sink: Sink, measured: _Pipeline
) -> float:
    """aiokafka produce -> consume -> aiosmtplib send, at the same rate and count."""
    kafka = KafkaSettings(
        bootstrap_servers=stack.bootstrap_servers,
        topic_prefix=f"{stack.topic_prefix}raw{uuid.uuid4().hex[:6]}.",
    )
    topic = kafka.topic("pipeline")
    await ensure_topics(kafka, ["pipeline"])
    value = os.urandom(measured.event_size // 2).hex().encode().ljust(measured.event_size, b"x")
    template = _MESSAGE_ID.search(measured.email)
    assert template is not None
    template_id = template.group(1).decode()

    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, acks="all", linger_ms=2)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
    )
    await producer.start()
    await consumer.start()
    # Every partition the topic was created with: metadata fetched right after the creation
    # may not list them all yet, and a record on a partition not assigned is never read.
    consumer.assign([TopicPartition(topic, p) for p in range(kafka.partitions)])
    ids: dict[int, str] = {}

    async def consume() -> None:
        async for record in consumer:
            index = int((record.key or b"0").decode())
            message = _with_message_id(measured.email, ids[index])
            await aiosmtplib.send(
                message,
                sender=SENDER,
                recipients=[RECIPIENT],
                hostname="127.0.0.1",
                port=sink.port,
            )

    consuming = asyncio.create_task(consume())
    started: dict[str, float] = {}

    async def produce(index: int) -> None:
        ids[index] = _same_length_id(template_id, "pipe", index)
        started[ids[index]] = time.perf_counter()
        await (await producer.send(topic, value, key=str(index).encode()))

    try:
        mark = sink.count
        for index in range(WARMUP):
            await produce(index)
        await sink.wait_for(set(started), mark=mark, sender=consuming)
        started.clear()
        mark = sink.count

        async def measured_one(index: int) -> None:
            await produce(WARMUP + index)

        await _open_loop(measured.rate, measured.count, measured_one)
        await sink.wait_for(set(started), mark=mark, sender=consuming)
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    arrived = _first_arrivals(sink.since(mark), "message_id")
    latencies = [(arrived[i] - began) * 1000 for i, began in started.items()]
    _note(f"raw pipeline p50 {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms")
    return _p99(latencies)


def _note(text: str) -> None:
    print(f"# notifications bench: {text}", file=sys.stderr, flush=True)


def _cpu_s(pid: int) -> float:
    process = psutil.Process(pid)
    group = [process, *process.children(recursive=True)]
    return float(sum(p.cpu_times().user + p.cpu_times().system for p in group))


def _log_problems(stack: Stack) -> None:
    """Repeat notifications' warnings and errors, each kind once with its exception's last
    lines (its log, JSON lines, is in the stack's var dir and goes with it)."""
    log = stack.log_dir / "notifications.log"
    kinds: dict[tuple[str, str], tuple[int, str]] = {}
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = {"level": "RAW", "logger": "", "message": line}
        if entry.get("level") not in {"WARNING", "ERROR", "CRITICAL", "RAW"}:
            continue
        if entry["level"] == "RAW" and not re.search(r"Error|Traceback|Exception", line):
            continue
        kind = (str(entry.get("logger")), str(entry.get("message"))[:200])
        seen, exception = kinds.get(kind, (0, str(entry.get("exception") or "")))
        kinds[kind] = (seen + 1, exception)
    for (logger, message), (seen, exception) in kinds.items():
        _note(f"notifications log, {seen}x {logger}: {message}")
        for tail in exception.splitlines()[-6:]:
            _note(f"    {tail}")


async def bench_notifications(stack: Stack) -> list[Result]:
    """Start notifications (its SMTP at the sink) and billing; measure both pairs."""
    began = time.perf_counter()
    stack.topic_prefix = f"bench{uuid.uuid4().hex[:6]}."
    await asyncio.to_thread(stack.create_databases, ["notifications", "billing", "keystore"])
    await asyncio.gather(
        asyncio.to_thread(stack.migrate, "notifications"),
        asyncio.to_thread(stack.migrate, "billing"),
    )
    await asyncio.to_thread(stack.create_topics)
    sink = Sink()
    sink.start()
    try:
        env = _settings(stack, sink)
        with mock.patch.dict(os.environ, env):
            settings = NotificationsSettings()
        await _start_notifications(stack, env)
        _note(f"notifications up after {time.perf_counter() - began:.0f} s")
        try:
            pid = stack.services["notifications"].pid
            cpu_before, wall_before = _cpu_s(pid), time.perf_counter()
            profilers = start_profilers(stack, ["notifications"])  # BENCH_PROFILE=<py-spy>
            emails_per_s, emails = await _emails_per_s(settings, sink)
            stop_profilers(profilers)
            cpu_ms = (_cpu_s(pid) - cpu_before) * 1000 / (emails + WARMUP)
            sample = sink.handler.sample
            raw_smtp = max([await _raw_smtp_per_s(sink, sample, emails) for _ in range(2)])
            _note(
                f"{emails} emails of {len(sample)} bytes: {emails_per_s:.1f}/s, notifications "
                f"CPU {cpu_ms:.0f} ms per email; raw smtp {raw_smtp:.1f}/s "
                f"({time.perf_counter() - wall_before:.0f} s)"
            )
            await asyncio.to_thread(stack.start_service, "billing")
            pipeline = await _invoice_to_email(stack, sink, emails_per_s)
            _note(
                f"invoice to email p99 {pipeline.p99_ms:.0f} ms "
                f"(at {time.perf_counter() - began:.0f} s)"
            )
        finally:
            _log_problems(stack)
            stack.stop_services()
        raw_p99 = await _raw_pipeline_p99(stack, settings, sink, pipeline)
        _note(f"raw pipeline p99 {raw_p99:.0f} ms; {time.perf_counter() - began:.0f} s in all")
    finally:
        sink.stop()
    return [
        ("emails_per_s", emails_per_s, "emails/s", "raw_smtp_send_per_s", raw_smtp),
        ("invoice_to_email_p99_ms", pipeline.p99_ms, "ms", "raw_pipeline_p99_ms", raw_p99),
    ]
