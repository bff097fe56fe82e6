"""Billing's HTTP edge under hostile and unlucky conditions: sizes, headers, docs, outages."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from billing.main import create_app
from billing.settings import BillingSettings
from devstack.processes import free_port
from devstack.testing import rows_mentioning, running

pytestmark = pytest.mark.integration


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_a_body_over_the_limit_gets_a_413_problem_and_changes_nothing(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    marker = f"oversize-{uuid.uuid4().hex[:8]}"
    huge = {"name": marker, "email": "big@example.com", "address": "x" * (2 << 20)}
    body = _problem(await api.post("/customers", headers=account["headers"], json=huge), 413)
    assert str(billing_settings.max_body_bytes) in body["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "' + marker.encode() + b'", "address": "'
        for _ in range(64):
            yield b"y" * 65536
        yield b'"}'

    streamed = await api.post(
        "/customers",
        headers={**account["headers"], "content-type": "application/json"},
        content=chunks(),
    )
    _problem(streamed, 413)
    assert await rows_mentioning(billing_settings.database_url, marker) == {}


async def test_every_response_carries_the_security_headers_and_no_server_banner(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    responses = [
        await api.post(
            "/accounts",
            json={"name": "H", "owner": {"name": "H", "email": f"h{uuid.uuid4().hex[:6]}@x.io"}},
        ),
        await api.get("/account", headers=account["headers"]),
        await api.get("/customers"),  # 401
        await api.get(f"/customers/{uuid.uuid4()}", headers=account["headers"]),  # 404
        await api.post("/customers", headers=account["headers"], json={"name": 1}),  # 422
        await api.get("/no-such-route"),
    ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store", "an API key or account data"
        assert "server" not in response.headers


async def test_docs_are_served_offline_under_a_content_security_policy(
    api: httpx.AsyncClient,
) -> None:
    page = await api.get("/docs")
    assert page.status_code == 200
    assert "https://" not in page.text, "no script or style from a public CDN"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        served = await api.get(f"/docs/static/{asset}")
        assert served.status_code == 200, asset
        assert len(served.content) > 10_000


class _Switch:
    """A TCP forwarder to PostgreSQL that the test can cut, like a database going away."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.open = True
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        self.open = False
        for task in list(self._pipes):
            task.cancel()
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def restore(self) -> None:
        """Accept connections again."""
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


async def test_while_the_database_is_down_requests_get_a_503_problem_and_nothing_half_written(
    billing_settings: BillingSettings,
) -> None:
    url = make_url(billing_settings.database_url)
    switch = _Switch(url.host or "127.0.0.1", url.port or 5432)
    await switch.start()
    proxied = billing_settings.model_copy(
        update={
            "database_url": url.set(host="127.0.0.1", port=switch.port).render_as_string(False),
            # Its own topics: its relay and consumer must not share the module's.
            "kafka": billing_settings.kafka.model_copy(
                update={"topic_prefix": f"down{uuid.uuid4().hex[:6]}."}
            ),
        }
    )
    try:
        async with running(create_app(proxied), base_url="http://billing") as api:
            opened = await api.post(
                "/accounts",
                json={"name": "Down", "owner": {"name": "D", "email": "d@down.example.com"}},
            )
            assert opened.status_code == 201, opened.text
            headers = {"Authorization": f"Bearer {opened.json()['api_key']}"}

            switch.cut()
            marker = f"during-outage-{uuid.uuid4().hex[:8]}"
            for response in (
                await api.post(
                    "/customers", headers=headers, json={"name": marker, "email": "m@x.io"}
                ),
                await api.get("/account", headers=headers),
            ):
                body = _problem(response, 503)
                assert response.headers["retry-after"].isdigit()
                assert body["type"].endswith("/unavailable")

            switch.restore()
            for _ in range(50):  # the pool notices the new connections work
                if (await api.get("/account", headers=headers)).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await api.get("/account", headers=headers)).status_code == 200
            assert await rows_mentioning(billing_settings.database_url, marker) == {}
    finally:
        await switch.close()


async def test_the_openapi_document_lists_the_problems_each_route_answers(
    api: httpx.AsyncClient,
) -> None:
    document = (await api.get("/openapi.json")).json()
    assert "HTTPValidationError" not in str(document), "422 is a problem, not FastAPI's shape"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            assert {"413", "422", "500", "503"} <= set(responses), where
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], where
            if operation.get("security"):  # a credential is asked for: it can be refused
                assert {"401", "403"} <= set(responses), f"{where} needs a credential"
            if "{" in path.rsplit("/", 1)[-1] or path.endswith("/revoke") or "/issue" in path:
                assert "404" in responses, where
