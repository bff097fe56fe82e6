"""Helpers for tests against the real servers: mail catcher client, Kafka readers, DB probes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from asgi_lifespan import LifespanManager
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.contracts import EVENT_TYPES, Envelope, EventData, new_envelope
from shared.crypto import decrypt_personal, personal_paths
from shared.keystore import create_key_store
from shared.outbox import event_aad, seal_envelope
from shared.settings import KeyStoreSettings


class MailCatcher:
    """Reads what reached the SMTP server, through the mail catcher's JSON API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def messages(self) -> list[dict[str, Any]]:
        """Every message received, oldest first."""
        response = httpx.get(f"{self.url}/api/messages", timeout=10)
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()
        return messages

    def to(self, address: str) -> list[dict[str, Any]]:
        """Messages addressed to one recipient."""
        return [m for m in self.messages() if address in m["to"]]

    def attachment(self, message: dict[str, Any], index: int) -> bytes:
        """The decoded bytes of a message's attachment."""
        response = httpx.get(f"{self.url}/messages/{message['id']}/attachments/{index}", timeout=10)
        response.raise_for_status()
        return response.content

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], *, timeout: float = 30
    ) -> list[dict[str, Any]]:
        """Poll until predicate holds for the message list, or fail with what was there."""
        deadline = time.monotonic() + timeout
        while True:
            messages = await asyncio.to_thread(self.messages)
            if predicate(messages):
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"mail condition not met in {timeout}s; got {len(messages)} messages"
                )
            await asyncio.sleep(0.2)


async def eventually(
    check: Callable[[], Any], *, timeout: float = 30, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Await an async or sync check until it returns a truthy value; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(interval)


async def read_topic(
    bootstrap: str, topic: str, *, count: int, key: str | None = None, timeout: float = 30
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read records (with the given key, if any) from the start of a topic until `count` arrived.

    No consumer group: the reader takes every partition itself, so it starts at once.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(
                    r for r in partition_records if key is None or (r.key or b"").decode() == key
                )
    finally:
        await consumer.stop()
    return records


async def read_events(
    bootstrap: str,
    topic: str,
    *,
    count: int,
    key: str | None = None,
    timeout: float = 30,
    keystore: KeyStoreSettings | None = None,
) -> list[dict[str, Any]]:
    """Like read_topic, decoded as JSON envelopes; personal fields opened when given the keys."""
    events = [
        json.loads(r.value)
        for r in await read_topic(bootstrap, topic, count=count, key=key, timeout=timeout)
    ]
    if keystore is None:
        return events
    return [await open_event(event, keystore) for event in events]


async def open_event(event: dict[str, Any], keystore: KeyStoreSettings) -> dict[str, Any]:
    """An envelope read from a topic with its personal fields opened (KeyDestroyedError if
    the account was purged)."""
    paths = personal_paths(EVENT_TYPES[event["type"]])
    if not paths:
        return event
    keys = create_key_store(keystore)
    await keys.start()
    try:
        aad = event_aad(event["type"], event["id"], event["subject"])
        data = await decrypt_personal(event["data"], paths, keys.key, aad=aad)
    finally:
        await keys.close()
    return {**event, "data": data}


@asynccontextmanager
async def running(
    app: Any, base_url: str = "http://service", *, client_address: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    """Run an ASGI app's lifespan in-process and talk to it over HTTP from client_address."""
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(client_address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


STAFF_PASSWORD = "a staff member's long passphrase"  # noqa: S105 - for test staff only


def session_headers(signed_in: httpx.Response) -> dict[str, str]:
    """What a browser sends after this sign-in: its one cookie, and the CSRF token for changes
    (by hand: a client keeps a Secure cookie for https only)."""
    assert signed_in.status_code == 201, signed_in.text
    cookie = signed_in.headers["set-cookie"].split(";")[0]
    return {"Cookie": cookie, "X-CSRF-Token": signed_in.json()["csrf_token"]}


async def enrol_staff(client: httpx.AsyncClient, *, email: str, code: str) -> dict[str, str]:
    """A staff member chooses their password with their enrolment code and signs in."""
    body = {"email": email, "code": code, "password": STAFF_PASSWORD}
    enrolled = await client.post("/staff/enrolment", json=body)
    assert enrolled.status_code == 204, enrolled.text
    signed_in = await client.post(
        "/staff/sessions", json={"email": email, "password": STAFF_PASSWORD}
    )
    client.cookies.clear()
    return session_headers(signed_in)


async def security_admin_of(
    service_env: dict[str, str], client: httpx.AsyncClient
) -> dict[str, str]:
    """A security admin made with billing's server command (as an operator would), enrolled
    and signed in: the headers their requests send."""
    email = f"security-{uuid4().hex[:10]}@quittance.example.com"
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "billing.main", "security-admin", "--name", "Sasha Secure", "--email", email),
        env={**os.environ, **service_env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(command.communicate(), timeout=120)
    assert command.returncode == 0, err.decode()
    code = out.decode().split("enrolment code (shown once): ")[1].strip()
    return await enrol_staff(client, email=email, code=code)


async def add_staff(
    client: httpx.AsyncClient, admin: dict[str, str], *, roles: Sequence[str], name: str = "Sam"
) -> tuple[str, dict[str, str]]:
    """A security admin adds a staff member, who enrols and signs in: their id and headers."""
    email = f"staff-{uuid4().hex[:10]}@quittance.example.com"
    added = await client.post(
        "/staff", headers=admin, json={"name": name, "email": email, "roles": list(roles)}
    )
    assert added.status_code == 201, added.text
    code = added.json()["enrolment_code"]
    return added.json()["staff"]["id"], await enrol_staff(client, email=email, code=code)


async def produce(
    bootstrap: str,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Produce one raw record and wait for the acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers or [])
    finally:
        await producer.stop()


async def rows_mentioning(database_url: str, needle: str) -> dict[str, int]:
    """Count, per table of a database, the rows whose text form contains needle."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        tables = [
            r["tablename"]
            for r in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        ]
        found: dict[str, int] = {}
        for table in tables:
            count = await connection.fetchval(
                # Table names come from pg_tables, not from input.
                f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE $1',  # noqa: S608
                f"%{needle}%",
            )
            if count:
                found[table] = count
        return found
    finally:
        await connection.close()


class RecordingWork:
    """A unit of work for handler unit tests: no database; what it would commit is recorded."""

    def __init__(self, units: RecordingUnits) -> None:
        self._units = units
        self.claims: list[tuple[str, UUID]] = []
        self.staged: list[Envelope[Any]] = []
        self.after_commit_actions: list[Callable[[], Awaitable[object]]] = []

    @property
    def session(self) -> Any:
        """Handler unit tests fake the service: a handler that reaches the database fails here."""
        raise AssertionError("a handler unit test has no database; fake the service")

    def emit(self, data: EventData, *, replayable: bool = True) -> Envelope[Any]:
        """Stage an event as the real unit of work does."""
        envelope = new_envelope(data, source=self._units.source)
        self.staged.append(envelope)
        return envelope

    def after_commit(self, action: Callable[[], Awaitable[object]]) -> None:
        """Run after the recorded commit."""
        self.after_commit_actions.append(action)

    async def flush(self) -> None:
        """Nothing to write: staged events are recorded at commit."""

    async def publish_now(self, data: Sequence[EventData]) -> list[Envelope[Any]]:
        """Record bulk pieces as published at once, as the real broker would have them."""
        envelopes = [new_envelope(item, source=self._units.source) for item in data]
        self._units.published.extend(envelopes)
        return envelopes

    async def driver(self) -> asyncpg.Connection:
        """Handler unit tests fake the service: a handler that reaches the database fails here."""
        raise AssertionError("a handler unit test has no database; fake the service")

    async def claim(self, consumer: str, event_id: UUID) -> bool:
        """Claim in the in-memory inbox (as of the last commit)."""
        if (consumer, event_id) in self._units.inbox or (consumer, event_id) in self.claims:
            return False
        self.claims.append((consumer, event_id))
        return True

    async def claim_many(self, consumer: str, event_ids: list[UUID]) -> set[UUID]:
        """Claim each in the in-memory inbox (as of the last commit)."""
        return {event_id for event_id in event_ids if await self.claim(consumer, event_id)}


class RecordingUnits:
    """Opens RecordingWork units; commits add claims to `inbox` and events to `emitted`."""

    def __init__(self, source: str = "unit") -> None:
        self.source = source
        self.inbox: set[tuple[str, UUID]] = set()
        self.emitted: list[Envelope[Any]] = []
        self.published: list[Envelope[Any]] = []  # bulk pieces: out even if the unit rolls back
        self.commits = 0
        self.rollbacks = 0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[RecordingWork]:
        """A unit that commits on success and forgets everything on error."""
        work = RecordingWork(self)
        try:
            yield work
        except BaseException:
            self.rollbacks += 1
            raise
        self.inbox.update(work.claims)
        self.emitted.extend(work.staged)
        self.commits += 1
        for action in work.after_commit_actions:
            await action()


async def sealed(envelope: Envelope[Any], keystore: KeyStoreSettings) -> bytes:
    """An event's wire bytes as a service's outbox writes them: personal fields sealed."""
    keys = create_key_store(keystore)
    await keys.start()
    try:
        needs_key = bool(personal_paths(envelope.data.__class__))
        key = await keys.key_for_writing(envelope.data.account_id) if needs_key else None
        return seal_envelope(envelope, key)
    finally:
        await keys.close()


class HandlerHarness:
    """A service's routes on FastStream's in-memory broker, for fast handler unit tests.

    Units of work are recorded (no database), keys live in memory, and published events are
    sealed as a real outbox would seal them.
    """

    def __init__(self, routes: Any, *, service: str) -> None:
        from shared.kafka import DeadLetterPolicy, create_broker
        from shared.keystore import MemoryKeyStore
        from shared.settings import KafkaSettings
        from shared.telemetry import create_telemetry

        self.telemetry = routes.telemetry or create_telemetry(service)
        kafka = KafkaSettings(bootstrap_servers="localhost:9", retry_backoff_s=0)
        policy = DeadLetterPolicy(consumer=service, telemetry=self.telemetry, retry_backoff_s=0)
        self.broker: KafkaBroker = create_broker(
            service=service, kafka=kafka, telemetry=self.telemetry, dead_letters=policy
        )
        self.units = RecordingUnits(source=service)
        self.keys = MemoryKeyStore()
        routes.bind(units=self.units, keys=self.keys).subscribe(self.broker, kafka, policy)
        self.dead: list[Any] = []

        @self.broker.subscriber(*[f"{t}.dlq" for t in routes.event_types])
        async def dead_letters(body: Any, message: KafkaMessage) -> None:
            self.dead.append(message)

    async def body(self, data: EventData, *, source: str) -> bytes:
        """An event's bytes as its producer's outbox would write them."""
        envelope = new_envelope(data, source=source)
        key = None
        if personal_paths(data.__class__):
            key = await self.keys.key_for_writing(data.account_id)
        return seal_envelope(envelope, key)

    async def deliver(self, *events: tuple[EventData, str], repeat: int = 1) -> None:
        """Publish each (event, producer) `repeat` times to the routes, in order."""
        bodies = [
            (await self.body(data, source=source), data.event_type) for data, source in events
        ]
        async with TestKafkaBroker(self.broker) as broker:
            for body, topic in bodies:
                for _ in range(repeat):
                    await broker.publish(body, topic, headers={"content-type": "application/json"})


class RecordingParticipant:
    """Stands in for the participant kit in handler unit tests: records what it was asked."""

    def __init__(self, data_map: Any) -> None:
        from shared.participant import Participant

        self.calls: list[tuple[str, EventData]] = []
        self._kit = Participant(data_map=data_map, engine=Any, store=Any)  # type: ignore[arg-type]
        self._kit.export = self._record("export")  # type: ignore[method-assign,assignment]
        self._kit.purge = self._record("purge")  # type: ignore[method-assign,assignment]

    @property
    def kit(self) -> Any:
        """The participant to hand to create_routes."""
        return self._kit

    def _record(self, what: str) -> Callable[[EventData, Any], Awaitable[None]]:
        async def record(request: EventData, work: Any) -> None:
            self.calls.append((what, request))

        return record


async def read_all_topics(
    bootstrap: str, prefix: str, *, quiet_s: float = 1.5, timeout: float = 30
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of every topic whose name starts with prefix, from offset zero."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    last_record = time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last_record < quiet_s:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                if partition_records:
                    last_record = time.monotonic()
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


@contextmanager
def served(app: Any, port: int) -> Iterator[str]:
    """An app served by uvicorn on a port, in a thread of its own with its own loop."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        access_log=False,
        server_header=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"served-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# Flags that keep a headless Chromium off the network this machine does not have.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_executable() -> str | None:
    """Debian's Chromium (or QUITTANCE_CHROMIUM), or None when this machine has none."""
    named = os.environ.get("QUITTANCE_CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or shutil.which("chromium-browser")


def artifacts_dir(name: str) -> Path:
    """Where a test keeps what a person should look at (screenshots): QUITTANCE_TEST_ARTIFACTS,
    else test-artifacts/ at the repository root."""
    root = Path(os.environ.get("QUITTANCE_TEST_ARTIFACTS", Path.cwd() / "test-artifacts"))
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
