"""The consumer services' small HTTP surfaces: numbers in query strings read one way (ASCII
digits only, bounded in length, so an odd digit is a clear 422 and never a crash), and the app
around the routes answers unknown paths, wrong methods and errors as problems."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import httpx
import pytest
from faststream.asgi import AsgiResponse, get
from faststream.kafka import KafkaBroker

from shared.asgi_api import api_route, json_response, whole_number
from shared.runtime import ObservedAsgiFastStream
from shared.telemetry import create_telemetry


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("42", 42), ("000123", 123), ("9" * 18, int("9" * 18))],
)
def test_whole_numbers_in_ascii_digits_are_read(text: str, expected: int) -> None:
    assert whole_number(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "-1", "+1", "1.0", "1e3", " 1", "1 ", "²", "\uff11\uff12", "٣", "9" * 19, "0x10", "1_000"],
)
def test_anything_else_is_refused_not_raised(text: str) -> None:
    assert whole_number(text) is None


def test_the_length_bound_is_the_callers() -> None:
    assert whole_number("1" * 12, max_digits=12) == int("1" * 12)
    assert whole_number("1" * 13, max_digits=12) is None


# The consumer services' apps answer as billing does, whatever their routes forget.

MARK = "MARKED-jane@example.com"


def _consumer_app(*routes: tuple[str, Any]) -> ObservedAsgiFastStream:
    broker = KafkaBroker("127.0.0.1:1")  # never started: the routes alone are served
    return ObservedAsgiFastStream(
        broker, telemetry=create_telemetry("unit"), asgi_routes=list(routes)
    )


async def _ask(app: Any, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://consumer") as http:
        return await http.request(method, path)


@api_route
async def _fine(scope: Any) -> AsgiResponse:
    return json_response({"ok": True})


@api_route
async def _database_gone(scope: Any) -> AsgiResponse:
    raise ConnectionRefusedError(111, f"Connection refused for {MARK}")


@api_route
async def _driver_lost_its_protocol(scope: Any) -> AsgiResponse:
    raise asyncpg.exceptions.InternalClientError("got result for unknown protocol state 3")


@api_route
async def _bug(scope: Any) -> AsgiResponse:
    raise RuntimeError(f"a bug that quotes {MARK}")


def _assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert MARK not in response.text
    return body


async def test_an_unknown_path_is_a_404_problem_with_the_security_headers() -> None:
    response = await _ask(_consumer_app(("/fine", _fine)), "GET", "/elsewhere")
    _assert_problem(response, 404)


async def test_a_method_the_route_does_not_take_is_a_405_problem_naming_the_allowed() -> None:
    response = await _ask(_consumer_app(("/fine", _fine)), "DELETE", "/fine")
    _assert_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("endpoint", [_database_gone, _driver_lost_its_protocol])
async def test_an_outage_in_a_route_is_a_503_problem_with_retry_after(endpoint: Any) -> None:
    response = await _ask(_consumer_app(("/r", endpoint)), "GET", "/r")
    _assert_problem(response, 503)
    assert response.headers["retry-after"] == "5"


async def test_a_bug_in_a_route_is_a_500_problem_that_logs_no_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await _ask(_consumer_app(("/r", _bug)), "GET", "/r")
    _assert_problem(response, 500)
    assert caplog.records, "the error is logged"
    assert all(MARK not in record.getMessage() for record in caplog.records)
    assert all(record.exc_info is None for record in caplog.records)


async def test_a_success_carries_the_security_headers() -> None:
    response = await _ask(_consumer_app(("/fine", _fine)), "GET", "/fine")
    assert response.json() == {"ok": True}
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_route_that_would_answer_errors_in_plain_text_is_refused() -> None:
    """FastStream's own handler turns any error, outages included, into a plain-text 500."""

    @get(include_in_schema=False)
    async def plain(scope: Any) -> AsgiResponse:
        return json_response({})

    with pytest.raises(TypeError, match="api_route"):
        _consumer_app(("/plain", plain))
