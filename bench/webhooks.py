"""webhook_deliveries_per_s: billing's dispatcher draining due deliveries to a local endpoint
(claim, sign, POST, record), against raw_http_post_per_s: plain httpx posting the same bodies to
the same endpoint with the same concurrency. Both measured in this run on the same servers."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import httpx

from billing.settings import WebhookSettings
from billing.webhooks.dispatcher import WebhookDispatcher
from devstack.processes import ManagedProcess, free_port, port_is_open, wait_until
from devstack.stack import Stack
from shared.db import create_engine, pooled_driver
from shared.keystore import create_key_store
from shared.settings import KeyStoreSettings

Result = tuple[str, float, str, str, float]
DELIVERIES = 4000
ROUNDS = 3
SETTINGS = WebhookSettings(allow_private_addresses=True, allow_http=True)

_SINK = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
"""

_QUEUE = """
INSERT INTO webhook_delivery (id, account_id, endpoint_id, event_id, event_type, body, status,
    attempts, next_attempt_at)
SELECT gen_random_uuid(), $1, $2, gen_random_uuid(), 'invoice.issued', $3, 'PENDING', 0, now()
FROM generate_series(1, $4)
"""


def _body(index: int) -> str:
    return (
        '{"account_id":"00000000-0000-0000-0000-000000000000","created_at":"2026-11-22T00:00:00Z",'
        f'"data":{{"currency":"EUR","due_date":"2026-12-22","invoice_id":"{uuid.uuid4()}",'
        f'"issue_date":"2026-11-22","number":"INV-{index:06d}","subtotal":"100.00",'
        '"tax_total":"20.00","total":"120.00"},'
        f'"id":"{uuid.uuid4()}","type":"invoice.issued"}}'
    )


async def _raw_rate(url: str, bodies: list[bytes]) -> float:
    """Plain httpx: the same bodies, the same concurrency, the same endpoint."""
    gate = asyncio.Semaphore(SETTINGS.concurrency)
    async with httpx.AsyncClient(
        timeout=SETTINGS.timeout_s, limits=httpx.Limits(max_connections=SETTINGS.concurrency)
    ) as client:

        async def post(body: bytes) -> None:
            async with gate:
                answer = await client.post(
                    url, content=body, headers={"Content-Type": "application/json"}
                )
                assert answer.status_code == 204

        # In batches of the dispatcher's size, as it sends them: the same shape of work.
        started = time.perf_counter()
        for first in range(0, len(bodies), SETTINGS.batch_size):
            batch = bodies[first : first + SETTINGS.batch_size]
            await asyncio.gather(*(post(body) for body in batch))
        return len(bodies) / (time.perf_counter() - started)


async def _open_account(stack: Stack, url: str) -> tuple[str, str]:
    """An account and an endpoint, through billing's API (the secret sealed as in production)."""
    async with httpx.AsyncClient(base_url=stack.service_url("billing"), timeout=30) as api:
        opened = await api.post(
            "/accounts",
            json={"name": "Hooks Ltd", "owner": {"name": "Ada", "email": "ada@hooks.example"}},
        )
        headers = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        made = await api.post(
            "/webhook-endpoints",
            headers=headers,
            json={"url": url, "event_types": ["invoice.issued"]},
        )
        assert made.status_code == 201, made.text
        return opened.json()["account"]["id"], made.json()["endpoint"]["id"]


async def bench_webhooks(stack: Stack) -> list[Result]:
    """Queue DELIVERIES due deliveries, time the dispatcher sending them all; time raw httpx."""
    stack.topic_prefix = f"bench{uuid.uuid4().hex[:6]}."
    await asyncio.to_thread(stack.create_databases, ["billing", "keystore"])
    await asyncio.to_thread(stack.migrate, "billing")
    port = free_port()
    sink = ManagedProcess(
        "webhook-sink",
        [sys.executable, "-c", _SINK + _serve(port)],
        log_path=stack.log_dir / "webhook-sink.log",
    )
    sink.start()
    wait_until(lambda: port_is_open(port), timeout=30, what="the webhook sink")
    url = f"http://127.0.0.1:{port}/hooks"
    await asyncio.to_thread(stack.start_service, "billing")
    try:
        account_id, endpoint_id = await _open_account(stack, url)
    finally:
        stack.stop_services()  # its own dispatcher must not share the work
    engine = create_engine(stack.database_url("billing"))
    keys = create_key_store(KeyStoreSettings(url=stack.keystore_url()))
    await keys.start()
    dispatcher = WebhookDispatcher(engine=engine, keys=keys, settings=SETTINGS)
    bodies = [_body(index) for index in range(DELIVERIES)]
    rates, raw = [], []
    try:
        for _ in range(ROUNDS):
            async with pooled_driver(engine) as db:
                await db.execute("DELETE FROM webhook_delivery")
                await db.execute(
                    _QUEUE, uuid.UUID(account_id), uuid.UUID(endpoint_id), bodies[0], DELIVERIES
                )
            started = time.perf_counter()
            while await dispatcher.send_due():
                pass
            rates.append(DELIVERIES / (time.perf_counter() - started))
            async with pooled_driver(engine) as db:
                delivered = await db.fetchval(
                    "SELECT count(*) FROM webhook_delivery WHERE status = 'DELIVERED'"
                )
            assert delivered == DELIVERIES, f"{delivered} of {DELIVERIES} delivered"
            raw.append(await _raw_rate(url, [body.encode() for body in bodies]))
    finally:
        await dispatcher.close()
        await keys.close()
        await engine.dispose()
        sink.stop()
    return [
        (
            "webhook_deliveries_per_s",
            max(rates),
            "deliveries/s",
            "raw_http_post_per_s",
            max(raw),
        )
    ]


def _serve(port: int) -> str:
    return (
        "\nimport uvicorn\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning', access_log=False)\n"
    )
