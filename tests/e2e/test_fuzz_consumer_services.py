"""Hostile requests to every HTTP route of notifications, retention, audit and the ops
dashboard, over real HTTP.

Billing is fuzzed from its OpenAPI document (schemathesis); these surfaces have none, so every
route they serve is found in the apps themselves (a new one cannot escape) and sent generated
methods, paths, query strings, credentials and bodies. Each answer must be a clear error or a
success: never a 5xx, a 4xx an RFC 9457 problem (naming the field on 422, the allowed methods
on 405) except the dashboard's sign-in page, the security headers always, operator routes for
operators only, and no value of the request echoed.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from audit.main import create_app as create_audit
from audit.settings import AuditSettings
from devstack.processes import free_port
from devstack.stack import Stack
from notifications.main import create_app as create_notifications
from notifications.settings import NotificationsSettings
from ops.main import create_app as create_ops
from retention.main import create_app as create_retention
from retention.settings import RetentionSettings
from shared.asgi_api import ApiRoute

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz, pytest.mark.clause("USE", "LEAST-ACCESS")]

SEED = int(os.environ.get("FUZZ_SEED", "20261122"))
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "15")) * 4
MARK = "FZ" + uuid.uuid4().hex[:10]  # planted in every generated value: never to come back

SERVICES: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "notifications": (create_notifications, NotificationsSettings),
    "retention": (create_retention, RetentionSettings),
    "audit": (create_audit, AuditSettings),
}


@pytest.fixture(scope="module")
def dashboard(system: Stack) -> Iterator[str]:
    """The ops dashboard, reading the end-to-end services."""
    system.ports.dashboard = free_port()
    system.start_dashboard()
    try:
        yield system.dashboard_url
    finally:
        system.stop_dashboard()


def _served_routes() -> list[tuple[str, str, tuple[str, ...]]]:
    """(service, path, methods) of every route each app serves."""
    found = []
    for service, (create_app, _) in SERVICES.items():
        for path, route in create_app().routes:
            methods = tuple(route.methods) if isinstance(route, ApiRoute) else ("GET",)
            found.append((service, path, methods))
    for route in create_ops().routes:  # FastAPI's: a path template and its methods
        template, methods = getattr(route, "path", ""), getattr(route, "methods", None)
        if methods:
            found.append(("ops", template, tuple(sorted(methods))))
    return found


ROUTES = _served_routes()
# Names the routes read, and names they do not; a value may come twice, as in a real query.
PARAMETERS = st.sampled_from(
    [
        *("after", "first", "last", "limit", "account_id", "actor_id", "grant_id", "purpose"),
        *("id", "reason", "operator", "operator_id", "dry_run", "key_id", "part"),
        *("saga", "account", "expires", "signature", "format", "cursor", "x"),
    ]
) | st.text(min_size=1, max_size=12)
HOSTILE_VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(
        [
            "",
            "-1",
            "0",
            "²",
            "9" * 40,
            "1e309",
            "NaN",
            "true",
            "' OR 1=1 --",
            "../../etc/passwd",
            "%00",
            "\x00",
            "<script>alert(1)</script>",
            "4111111111111111",
            str(uuid.uuid4()),
            "00000000-0000-0000-0000-000000000000",
            "x" * 2000,
        ]
    ),
    st.uuids().map(str),
    st.integers().map(str),
)
# Half the values carry the mark (so an echo shows), half are left as made (so some are valid).
MARKED_VALUES = st.tuples(HOSTILE_VALUES, st.booleans()).map(
    lambda made: f"{made[0]}{MARK}" if made[1] else made[0]
)
BODIES = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    ).map(lambda value: json.dumps(value).encode()),
)


def _operator_token(service: str) -> str:
    if service == "ops":
        return "no-token-signs-in-to-the-dashboard"
    return str(SERVICES[service][1]().operator_token.get_secret_value())


def _tokens(service: str) -> st.SearchStrategy[dict[str, str]]:
    """No token, a wrong one, a malformed one, and the operator's (to get past the check)."""
    operator = _operator_token(service)
    return st.sampled_from(
        [
            {},
            {"authorization": f"Bearer {operator}"},
            {"authorization": f"Bearer {operator}"},
            {"authorization": f"Bearer wrong{MARK}"},
            {"authorization": f"Basic {MARK}"},
            {"authorization": "Bearer"},
            {"cookie": f"quittance_ops_session={MARK}"},
        ]
    )


def _paths(template: str) -> st.SearchStrategy[str]:
    """The route's path, its {parameters} filled with hostile values, or a near miss."""
    if "{" in template:
        prefix = template.split("{", 1)[0]
        filled = MARKED_VALUES.filter(lambda v: v and "/" not in v and v not in (".", ".."))
        exact = filled.map(lambda value: prefix + quote(value, safe=""))
    else:
        exact = st.just(template)
    return st.one_of(exact, exact, st.sampled_from([f"{template}/{MARK}", f"/{MARK}"]))


def _requests(path: str, methods: tuple[str, ...], service: str) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {
            "method": st.sampled_from(methods)
            | st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
            "path": _paths(path),
            "params": st.lists(st.tuples(PARAMETERS, MARKED_VALUES), max_size=5),
            "headers": _tokens(service),
            "body": BODIES,
        }
    )


# Routes for operators only: without their token (or, on the dashboard, a signed-in session),
# nothing but a refusal or, for the page, a redirect to the sign-in.
OPERATOR_ONLY = {
    *("/dead-letters", "/traces", "/sagas", "/sweeps", "/verify", "/alerts"),
    *("/api/state", "/api/dead-letters/redrive"),
}
# The dashboard's sign-in is a form for a browser: a refused sign-in is its page again.
HTML_PAGES = {("ops", "/sign-in")}


def _without_instance(response: httpx.Response) -> str:
    """The answer's text; a problem's `instance` (the path asked for, RFC 9457) left out."""
    if response.headers.get("content-type") != "application/problem+json" or not response.content:
        return response.text
    problem = response.json()
    problem.pop("instance", None)
    return json.dumps(problem)


def check_answer(service: str, request: dict[str, Any], response: httpx.Response) -> None:
    """What every answer of a consumer service keeps, whatever it was sent."""
    described = f"{request['method']} {request['path']} -> {response.status_code}"
    assert response.status_code < 500, f"{described}: {response.text[:300]}"
    operator = _operator_token(service)
    if request["path"] in OPERATOR_ONLY and response.status_code < 300:
        assert request["headers"].get("authorization") == f"Bearer {operator}", described
    assert response.headers.get("x-content-type-options") == "nosniff", described
    assert response.headers.get("cache-control"), described
    if response.status_code == 405:
        assert response.headers.get("allow"), f"{described}: no Allow header"
    page = (service, request["path"]) in HTML_PAGES and response.status_code in (401, 403, 429)
    if response.status_code >= 400 and request["method"] != "HEAD" and not page:
        assert response.headers["content-type"] == "application/problem+json", described
        problem = response.json()
        assert problem["status"] == response.status_code, described
        assert problem["title"], described
        assert problem["type"].startswith("https://"), described
        if response.status_code == 422:
            assert [e["field"] for e in problem["errors"]], f"{described}: no field named"
    assert MARK not in _without_instance(response), f"{described}: a value came back"


@pytest.mark.parametrize(
    ("service", "path", "methods"), ROUTES, ids=[f"{s}{p}" for s, p, _ in ROUTES]
)
def test_no_hostile_request_gets_anything_but_a_clear_answer(
    system: Stack, dashboard: str, service: str, path: str, methods: tuple[str, ...]
) -> None:
    """USE, LEAST-ACCESS: generated requests to the route answer a success or a problem, and
    an operator route answers no one without the operator's token."""
    seen: list[int] = []
    base_url = system.dashboard_url if service == "ops" else system.service_url(service)

    @seed(SEED)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(request=_requests(path, methods, service))
    def send(request: dict[str, Any]) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            response = http.request(
                request["method"],
                request["path"],
                params=request["params"],
                headers=request["headers"],
                content=request["body"],
            )
        seen.append(response.status_code)
        check_answer(service, request, response)

    send()
    assert len(seen) >= MAX_EXAMPLES // 2, "the fuzzer sent its requests"


# Routes an operator reads with the token alone; the rest need a signed link, a signed token or
# an identifier, and answer a problem without one.
OPERATOR_READS = {
    ("notifications", "/healthz"),
    ("notifications", "/metrics"),
    ("notifications", "/dead-letters"),
    ("notifications", "/traces"),
    ("retention", "/healthz"),
    ("retention", "/metrics"),
    ("retention", "/dead-letters"),
    ("retention", "/traces"),
    ("retention", "/sagas"),
    ("retention", "/plans"),
    ("retention", "/sweeps"),
    ("retention", "/certificates/signing-key.pem"),
    ("retention", "/certificates/signing-keys"),
    ("audit", "/healthz"),
    ("audit", "/metrics"),
    ("audit", "/dead-letters"),
    ("audit", "/traces"),
    ("audit", "/checkpoints"),
    ("audit", "/checkpoints/signing-key.pem"),
    ("audit", "/verify"),
    ("audit", "/alerts"),
}


def test_the_fuzzed_routes_answer_a_well_formed_request(system: Stack) -> None:
    """The fuzzer's control: with the operator's token and no query, each route it fuzzes
    answers 2xx, or a problem when it needs more than a token (so the fuzz reached the routes
    themselves, past routing and the token check)."""
    answered: dict[tuple[str, str], int] = {}
    for service, path, _ in ROUTES:
        if service == "ops":
            continue  # its sign-in is tested in its own tests and in Chromium
        token = _operator_token(service)
        with httpx.Client(base_url=system.service_url(service), timeout=30) as http:
            response = http.get(path, headers={"authorization": f"Bearer {token}"})
        request = {"method": "GET", "path": path, "headers": {"authorization": f"Bearer {token}"}}
        check_answer(service, request, response)
        answered[(service, path)] = response.status_code
    succeeded = {route for route, status in answered.items() if status < 300}
    assert succeeded == OPERATOR_READS, answered
