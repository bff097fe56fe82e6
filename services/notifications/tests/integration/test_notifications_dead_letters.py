"""Dead letters with their reasons, and their redrive by an operator, recorded in the account's
trail (issue 12; STAFF-ACCESS): the shared desk every consumer service serves, here through
notifications against the real database and broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from devstack.testing import eventually, produce, read_events, read_topic, running
from notifications.main import create_app
from notifications.settings import NotificationsSettings, SmtpSettings
from shared.dead_letters import REDRIVEN_FROM_HEADER

pytestmark = pytest.mark.integration
TOKEN = "test-notifications-operator-token"  # what service_env gives notifications
STAFF_ID = "6f1c0a52-4c1e-4b7e-9d38-2f0c1e7a9b11"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def settings(
    service_env: Callable[[str], dict[str, Any]], infrastructure: Stack
) -> NotificationsSettings:
    return NotificationsSettings(
        **service_env("notifications"),
        smtp=SmtpSettings(host="127.0.0.1", port=infrastructure.ports.smtp),
    )


@pytest.fixture(scope="module")
async def notifications(settings: NotificationsSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(settings)) as client:
        yield client


async def _plant(settings: NotificationsSettings, account_id: uuid.UUID) -> bytes:
    """A message that fails validation, on a topic notifications reads."""
    body = f'{{"type": "invoice.issued", "data": {{"total": "{uuid.uuid4()}"}}}}'.encode()
    await produce(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("invoice.issued"),
        body,
        key=str(account_id).encode(),
        headers=[("content-type", b"application/json")],
    )
    return body


async def _letters(api: httpx.AsyncClient, account_id: uuid.UUID) -> list[dict[str, Any]]:
    listed = await api.get("/dead-letters", headers=OPERATOR)
    assert listed.status_code == 200, listed.text
    return [letter for letter in listed.json() if letter["account_id"] == str(account_id)]


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_an_operator_sees_why_a_message_failed_and_sends_it_back_once(
    notifications: httpx.AsyncClient, settings: NotificationsSettings
) -> None:
    account_id = uuid.uuid4()
    body = await _plant(settings, account_id)
    (letter,) = await eventually(lambda: _letters(notifications, account_id), what="the letter")
    assert letter["topic"] == "invoice.issued"
    assert letter["kind"] == "invalid"
    assert letter["reason"], "the reason the consumer gave"
    assert letter["redriven"] is False
    assert letter["size_bytes"] == len(body)
    assert "total" not in str(letter), "the operator sees where and why, never the content"

    sent_back = await notifications.post(
        "/dead-letters",
        headers=OPERATOR,
        params={
            "id": letter["id"],
            "reason": "INC-42 fixed",
            "operator": "Olga Ops",
            "operator_id": STAFF_ID,
        },
    )
    assert sent_back.status_code == 202, sent_back.text
    assert sent_back.json()["redriven"] is True

    # Back on its topic, byte for byte, saying where it came from.
    records = await read_topic(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("invoice.issued"),
        count=2,
        key=str(account_id),
    )
    assert [r.value for r in records] == [body, body]
    headers = dict(records[1].headers)
    assert headers[REDRIVEN_FROM_HEADER].decode() == letter["id"]
    assert headers["content-type"] == b"application/json"
    assert not any(name.startswith("x-dead-letter-") for name in headers)
    # In the account's trail: who sent it back, why, and which letter.
    (access,) = await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("data.accessed"),
        count=1,
        key=str(account_id),
        keystore=settings.keystore,
    )
    assert access["source"].endswith("notifications")
    assert access["data"]["resource_type"] == "dead-letter"
    assert access["data"]["resource_id"] == letter["id"]
    assert access["data"]["actor_name"] == "Olga Ops"
    assert access["data"]["actor_id"] == STAFF_ID, "the staff member, by id"
    assert access["data"]["reason"] == "INC-42 fixed"

    again = await notifications.post(
        "/dead-letters",
        headers=OPERATOR,
        params={"id": letter["id"], "reason": "twice", "operator": "Olga Ops"},
    )
    assert again.status_code == 409, again.text
    # Still invalid, it is dead-lettered again: a new letter; the first one shows it went back.

    async def both() -> list[dict[str, Any]]:
        found = await _letters(notifications, account_id)
        return found if len(found) == 2 else []

    letters = await eventually(both, what="the letter dead-lettered again")
    assert {x["id"]: x["redriven"] for x in letters} == {
        letter["id"]: True,
        next(x["id"] for x in letters if x["id"] != letter["id"]): False,
    }


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"id": "nope", "reason": "r", "operator": "o"}, 404, "id"),
        ({"id": "other.dlq/0/0", "reason": "r", "operator": "o"}, 404, "id"),
        ({"id": "x/0/0", "reason": "", "operator": "o"}, 422, "reason"),
        ({"id": "x/0/0", "reason": "r\x00", "operator": "o"}, 422, "reason"),
        ({"id": "x/0/0", "reason": "r" * 501, "operator": "o"}, 422, "reason"),
        ({"id": "x/0/0", "reason": "r"}, 422, "operator"),
        ({"id": "x/0/0", "reason": "r", "operator": "o", "operator_id": ""}, 422, "operator_id"),
        (
            {"id": "x/0/0", "reason": "r", "operator": "o", "operator_id": "i" * 101},
            422,
            "operator_id",
        ),
    ],
)
async def test_a_redrive_of_what_is_not_a_dead_letter_here_changes_nothing(
    notifications: httpx.AsyncClient, params: dict[str, str], status: int, field: str
) -> None:
    refused = await notifications.post("/dead-letters", headers=OPERATOR, params=params)
    assert refused.status_code == status, refused.text
    assert refused.json()["errors"][0]["field"] == field


async def test_dead_letters_are_for_operators_only(notifications: httpx.AsyncClient) -> None:
    for method in ("GET", "POST"):
        refused = await notifications.request(
            method, "/dead-letters", headers={"Authorization": "Bearer wrong"}
        )
        assert refused.status_code == 401, refused.text


async def test_an_operator_reads_the_services_recent_spans_and_nobody_else(
    notifications: httpx.AsyncClient, settings: NotificationsSettings
) -> None:
    """Kept in process when no collector is set: what the dashboard shows as recent traces."""
    await _plant(settings, uuid.uuid4())  # the consumer handles (and dead-letters) it: spans

    async def consumer_spans() -> list[dict[str, Any]]:
        listed = await notifications.get("/traces", headers=OPERATOR, params={"limit": 2000})
        assert listed.status_code == 200, listed.text
        return [s for s in listed.json() if s["kind"] == "consumer"]

    (span, *_) = await eventually(consumer_spans, what="the consumer's span")
    assert span["service"] == "notifications"
    assert "invoice.issued" in span["name"]
    assert len(span["trace_id"]) == 32
    assert (await notifications.get("/traces")).status_code == 401
    for limit in ("0", "5001", "x", "-1"):
        refused = await notifications.get("/traces", headers=OPERATOR, params={"limit": limit})
        assert refused.status_code == 422, limit
        assert refused.json()["errors"][0]["field"] == "limit"
