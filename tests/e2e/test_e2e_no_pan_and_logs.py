"""Card numbers and marked personal values sent to the running system, then looked for."""

from __future__ import annotations

import email
import email.policy
import json
import re
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, quote_plus

import asyncpg
import httpx
import pytest

from devstack.stack import SERVICES, Stack
from devstack.testing import (
    MailCatcher,
    add_staff,
    enrol_staff,
    eventually,
    produce,
    read_all_topics,
    read_topic,
    sealed,
    security_admin_of,
)
from shared.contracts import (
    EVENT_TYPES,
    Envelope,
    InvoiceIssued,
    InvoiceLine,
    IssuedInvoiceCustomer,
    new_envelope,
)
from shared.crypto import FieldDecryptionError, decrypt_personal, personal_paths
from shared.kafka import DLQ_CONSUMER_HEADER
from shared.keystore import KeyStore, create_key_store
from shared.outbox import event_aad
from shared.settings import KeyStoreSettings

pytestmark = pytest.mark.e2e
JSON = {"content-type": "application/json"}

# ---------------------------------------------------------------- card numbers and layouts


def _luhn_valid(digits: str) -> bool:
    """The Luhn checksum, written here so the test does not trust the code it checks."""
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _with_check_digit(body: str) -> str:
    """body followed by the one digit that makes it Luhn-valid."""
    return next(body + digit for digit in "0123456789" if _luhn_valid(body + digit))


@dataclass(frozen=True)
class Card:
    """A test card number and the digit groups its scheme prints it in."""

    scheme: str
    digits: str
    groups: tuple[int, ...]

    def grouped(self, separators: str | Iterable[str]) -> str:
        """The digits in their groups, parted by one separator or by each in turn."""
        cycle = [separators] if isinstance(separators, str) else list(separators)
        parts, start = [], 0
        for size in self.groups:
            parts.append(self.digits[start : start + size])
            start += size
        text = parts[0]
        for index, part in enumerate(parts[1:]):
            text += cycle[index % len(cycle)] + part
        return text


CARDS = (
    Card("Visa", "4111111111111111", (4, 4, 4, 4)),
    Card("Mastercard", "5555555555554444", (4, 4, 4, 4)),
    Card("American Express", "378282246310005", (4, 6, 5)),
    Card("Visa 19 digits", _with_check_digit("411111111111111111"), (4, 4, 4, 4, 3)),
    Card("Visa 13 digits", "4222222222222", (4, 4, 5)),
    Card("Mastercard 2-series", "2223003122003222", (4, 4, 4, 4)),
    Card("Discover", "6011111111111117", (4, 4, 4, 4)),
    Card("Diners Club", "30569309025904", (4, 6, 4)),
    Card("JCB", "3530111333300000", (4, 4, 4, 4)),
)


def _in_script(text: str, zero: int) -> str:
    """text with each ASCII digit written in the script whose zero is at code point `zero`."""
    return text.translate({ord(str(d)): chr(zero + d) for d in range(10)})


LAYOUTS: tuple[tuple[str, Callable[[Card], str]], ...] = (
    ("plain", lambda card: card.digits),
    ("spaces", lambda card: card.grouped(" ")),
    ("double spaces", lambda card: card.grouped("  ")),
    ("dots", lambda card: card.grouped(".")),
    ("slashes", lambda card: card.grouped("/")),
    ("underscores", lambda card: card.grouped("_")),
    ("dashes", lambda card: card.grouped("-")),
    ("spaced dashes", lambda card: card.grouped(" - ")),
    ("tabs", lambda card: card.grouped("\t")),
    ("line breaks", lambda card: card.grouped("\n")),
    ("CRLF line breaks", lambda card: card.grouped("\r\n")),
    ("no-break spaces", lambda card: card.grouped("\u00a0")),
    ("thin spaces", lambda card: card.grouped("\u2009")),
    ("zero-width spaces between digits", lambda card: "\u200b".join(card.digits)),
    ("fullwidth digits", lambda card: _in_script(card.digits, 0xFF10)),
    ("fullwidth digits in groups", lambda card: _in_script(card.grouped(" "), 0xFF10)),
    ("Arabic-Indic digits", lambda card: _in_script(card.grouped(" "), 0x0660)),
    ("Devanagari digits", lambda card: _in_script(card.digits, 0x0966)),
    ("mixed separators", lambda card: card.grouped(["-", " ", ".", "/"])),
    ("glued to words", lambda card: f"card{card.grouped(' ')}exp"),
    ("beside other numbers", lambda card: f"ref 12 {card.grouped(' ')} 2030"),
    ("in a sentence", lambda card: f"Please charge {card.digits} for order 7, thanks."),
)


def _written_forms(text: str) -> set[str]:
    """text as sent, and as JSON, repr() and URL encoding would write it into a file."""
    return {
        text,
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        repr(text)[1:-1],
        quote(text),
        quote(text, safe=""),
        quote_plus(text),
    }


@dataclass
class Needles:
    """Strings to look for, each with what it stands for; matched in text and in raw bytes."""

    labels: dict[str, str] = field(default_factory=dict)
    encoded: dict[bytes, str] = field(default_factory=dict)

    def add(self, text: str, label: str) -> None:
        """Look for text (and the forms a file would hold it in) under label."""
        for form in _written_forms(text):
            self.labels.setdefault(form, label)
            self.encoded.setdefault(form.encode(), label)

    def found_in(self, haystack: str | bytes) -> set[str]:
        """The labels of the needles haystack holds."""
        if isinstance(haystack, bytes):
            return {label for text, label in self.encoded.items() if text in haystack}
        return {label for text, label in self.labels.items() if text in haystack}


def _card_needles() -> Needles:
    """Every card's digits, compact and in the usual ASCII groupings."""
    needles = Needles()
    for card in CARDS:
        for text in (card.digits, card.grouped(" "), card.grouped("-"), card.grouped(".")):
            needles.add(text, f"{card.scheme} ({card.digits})")
    return needles


# ---------------------------------------------------------------- scanning what the system wrote


class Reader:
    """Turns stored bytes into every readable form: as is, inflated, MIME parts, opened events."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    async def forms(self, raw: bytes) -> list[str | bytes]:
        """raw, its UTF-8 text, and what inflating, MIME decoding or opening seals yields."""
        forms: list[str | bytes] = [raw, raw.decode("utf-8", errors="replace")]
        for wbits in (47, -15):  # zlib or gzip (auto), raw deflate
            try:
                inflated = zlib.decompressobj(wbits).decompress(raw, 64 << 20)
            except zlib.error:
                continue
            if inflated:
                forms += [inflated, inflated.decode("utf-8", errors="replace")]
        forms += _mime_parts(raw)
        opened = await self._opened_event(raw)
        if opened is not None:
            forms.append(opened)
        return forms

    async def _opened_event(self, raw: bytes) -> str | None:
        try:
            event = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(event, dict) or event.get("type") not in EVENT_TYPES:
            return None
        paths = personal_paths(EVENT_TYPES[event["type"]])
        if not paths or not isinstance(event.get("data"), dict):
            return None
        aad = event_aad(event["type"], str(event.get("id")), str(event.get("subject")))
        try:
            data = await decrypt_personal(event["data"], paths, self.keys.key, aad=aad)
        except (FieldDecryptionError, ValueError, KeyError, TypeError):
            return None
        return json.dumps(data, ensure_ascii=False, default=str)


_MIME_START = re.compile(rb"(?:[A-Za-z-]+: [^\r\n]*\r?\n)+")


def _mime_parts(raw: bytes) -> list[str | bytes]:
    """The decoded headers and parts of raw, if it is a MIME message."""
    if _MIME_START.match(raw) is None or b"content-type:" not in raw[:16384].lower():
        return []
    message = email.message_from_bytes(raw, policy=email.policy.default)
    forms: list[str | bytes] = []
    for part in message.walk():
        forms += [f"{name}: {value}" for name, value in part.items()]
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            forms += [payload, payload.decode("utf-8", errors="replace")]
    return forms


_COLUMNS = """
SELECT c.table_schema, c.table_name, c.column_name, c.data_type
FROM information_schema.columns c
JOIN information_schema.tables t USING (table_schema, table_name)
WHERE t.table_type = 'BASE TABLE' AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2, c.ordinal_position
"""


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _database_hits(system: Stack, reader: Reader, needles: Needles) -> list[str]:
    """Every table column of every database (the key store's too) holding a needle."""
    hits = []
    for database in [*(spec.name for spec in SERVICES), "keystore"]:
        dsn = system.database_url(database).replace("postgresql+asyncpg://", "postgresql://", 1)
        connection = await asyncpg.connect(dsn)
        try:
            columns = await connection.fetch(_COLUMNS)
            assert columns, f"no table found in {database}"
            for column in columns:
                table = f"{_identifier(column['table_schema'])}.{_identifier(column['table_name'])}"
                name = _identifier(column["column_name"])
                bytea = column["data_type"] == "bytea"
                values = await connection.fetch(
                    # Names come from information_schema, not from input.
                    f"SELECT {name if bytea else f'{name}::text'} AS v FROM {table} "  # noqa: S608
                    f"WHERE {name} IS NOT NULL"
                )
                found: set[str] = set()
                for row in values:
                    haystacks = await reader.forms(row["v"]) if bytea else [row["v"]]
                    for haystack in haystacks:
                        found |= needles.found_in(haystack)
                if found:
                    where = f"{column['table_name']}.{column['column_name']}"
                    hits.append(f"database {database}, {where}: {sorted(found)}")
        finally:
            await connection.close()
    return hits


async def _topic_hits(system: Stack, reader: Reader, needles: Needles) -> tuple[list[str], int]:
    """Every record of every topic, from offset zero, holding a needle; and how many were read."""
    records = await read_all_topics(system.bootstrap_servers, system.topic_prefix)
    hits = []
    for record in records:
        haystacks: list[str | bytes] = [record.key or b"", *(v for _, v in record.headers)]
        haystacks += await reader.forms(record.value or b"")
        found = set[str]().union(*(needles.found_in(h) for h in haystacks))
        if found:
            hits.append(f"topic {record.topic} offset {record.offset}: {sorted(found)}")
    return hits, len(records)


def _log_hits(system: Stack, needles: Needles) -> list[str]:
    """Every log file of the stack holding a needle."""
    hits = []
    for log in sorted(system.log_dir.glob("*.log")):
        raw = log.read_bytes()
        found = needles.found_in(raw) | needles.found_in(raw.decode("utf-8", errors="replace"))
        if found:
            hits.append(f"log {log.name}: {sorted(found)}")
    return hits


async def _mail_hits(
    system: Stack, mail: MailCatcher, reader: Reader, needles: Needles
) -> list[str]:
    """Every message at the mail catcher, as its API shows it and as stored, holding a needle."""
    hits = []
    for message in mail.messages():
        found = needles.found_in(json.dumps(message, ensure_ascii=False)) | needles.found_in(
            repr(message)
        )
        if found:
            hits.append(f"mail {message['id']} (API): {sorted(found)}")
    for stored in sorted(system.mail_dir.glob("*")):
        forms = await reader.forms(stored.read_bytes())
        found = set[str]().union(*(needles.found_in(form) for form in forms))
        if found:
            hits.append(f"mail file {stored.name}: {sorted(found)}")
    return hits


async def _everywhere(system: Stack, mail: MailCatcher, needles: Needles) -> dict[str, list[str]]:
    """Where the needles are: databases, topics, log files and mail."""
    keys = create_key_store(KeyStoreSettings(url=system.keystore_url()))
    await keys.start()
    try:
        reader = Reader(keys)
        topics, records = await _topic_hits(system, reader, needles)
        assert records, "the topics were read"
        return {
            "databases": await _database_hits(system, reader, needles),
            "topics": topics,
            "logs": _log_hits(system, needles),
            "mail": await _mail_hits(system, mail, reader, needles),
        }
    finally:
        await keys.close()


# ---------------------------------------------------------------- requests holding a card number


@dataclass(frozen=True)
class Tenant:
    """An account with a customer, and a staff member it granted access to."""

    account_id: str
    owner: dict[str, str]
    customer_id: str
    staff_id: str
    staff: dict[str, str]
    security_admin: dict[str, str]


def _unique_email(who: str) -> str:
    return f"{who}-{uuid.uuid4().hex[:8]}@example.com"


def _due_date() -> str:
    return (datetime.now(UTC).date() + timedelta(days=30)).isoformat()


def _account_body(
    *, name: str = "Acme", owner_name: str = "Ada", email: str | None = None
) -> dict[str, Any]:
    return {"name": name, "owner": {"name": owner_name, "email": email or _unique_email("ada")}}


def _customer_body(**fields: Any) -> dict[str, Any]:
    return {"name": "Bob", "email": _unique_email("bob"), **fields}


def _invoice_body(
    customer_id: str, *, description: str = "Consulting", **extra: Any
) -> dict[str, Any]:
    line = {"description": description, "quantity": "1", "unit_price": "100"}
    return {
        "customer_id": customer_id,
        "currency": "EUR",
        "due_date": _due_date(),
        "lines": [line],
        **extra,
    }


def _grant_body(staff_id: str, *, reason: str = "TICKET-1") -> dict[str, Any]:
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return {"staff_id": staff_id, "purpose": "support", "reason": reason, "expires_at": expires}


Send = Callable[[httpx.AsyncClient, Tenant, str], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Probe:
    """One place in one route where a text can go."""

    where: str
    send: Send
    takes_line_breaks: bool = True  # an HTTP header value cannot hold one
    # A malformed JSON body is refused as malformed; a card number written in its JSON escapes
    # ("4111\u00a01111...") can only be read by parsing it, so the refusal need not name it.
    names_the_card_number: bool = True


PROBES: tuple[Probe, ...] = (
    Probe("account name", lambda api, t, s: api.post("/accounts", json=_account_body(name=s))),
    Probe("owner name", lambda api, t, s: api.post("/accounts", json=_account_body(owner_name=s))),
    Probe(
        "owner email local part",
        lambda api, t, s: api.post("/accounts", json=_account_body(email=f"{s}@acme.example.com")),
    ),
    Probe(
        "customer name",
        lambda api, t, s: api.post("/customers", headers=t.owner, json=_customer_body(name=s)),
    ),
    Probe(
        "customer email local part",
        lambda api, t, s: api.post(
            "/customers", headers=t.owner, json=_customer_body(email=f"{s}@buyer.example.com")
        ),
    ),
    Probe(
        "customer address",
        lambda api, t, s: api.post("/customers", headers=t.owner, json=_customer_body(address=s)),
    ),
    Probe(
        "corrected customer address",
        lambda api, t, s: api.patch(
            f"/customers/{t.customer_id}", headers=t.owner, json={"address": s}
        ),
    ),
    Probe(
        "corrected company address",
        lambda api, t, s: api.patch("/account", headers=t.owner, json={"address": s}),
    ),
    Probe(
        "corrected tax id",
        lambda api, t, s: api.patch("/account", headers=t.owner, json={"tax_id": s}),
        # Its pattern (letters, digits, a few separators) refuses most layouts first.
        names_the_card_number=False,
    ),
    Probe(
        "corrected own name",
        lambda api, t, s: api.patch("/users/me", headers=t.owner, json={"name": s}),
    ),
    Probe(
        "invoice line description",
        lambda api, t, s: api.post(
            "/invoices", headers=t.owner, json=_invoice_body(t.customer_id, description=s)
        ),
    ),
    Probe(
        "invoice line description, issued at once",
        lambda api, t, s: api.post(
            "/invoices",
            headers=t.owner,
            json=_invoice_body(t.customer_id, description=s, issue=True),
        ),
    ),
    Probe(
        "staff name",
        lambda api, t, s: api.post(
            "/staff",
            headers=t.security_admin,
            json={"name": s, "email": _unique_email("sam"), "roles": ["support"]},
        ),
    ),
    Probe(
        "staff email local part",
        lambda api, t, s: api.post(
            "/staff",
            headers=t.security_admin,
            json={"name": "Sam", "email": f"{s}@quittance.example.com", "roles": ["support"]},
        ),
    ),
    Probe(
        "access grant reason",
        lambda api, t, s: api.post(
            "/access-grants", headers=t.owner, json=_grant_body(t.staff_id, reason=s)
        ),
    ),
    Probe(
        "invoice status query",
        lambda api, t, s: api.get("/invoices", headers=t.owner, params={"status": s}),
    ),
    Probe(
        "invoice customer query",
        lambda api, t, s: api.get("/invoices", headers=t.owner, params={"customer_id": s}),
    ),
    Probe(
        "unknown query parameter",
        lambda api, t, s: api.get("/customers", headers=t.owner, params={"note": s}),
    ),
    Probe(
        "query parameter name",
        lambda api, t, s: api.get("/customers", headers=t.owner, params={s: "1"}),
    ),
    Probe(
        "staff read purpose query",
        lambda api, t, s: api.get(
            f"/staff/accounts/{t.account_id}/customers/{t.customer_id}",
            headers=t.staff,
            params={"purpose": s},
        ),
    ),
    Probe(
        "custom header X-Note",
        lambda api, t, s: api.get(
            "/account",
            headers=[
                (b"authorization", t.owner["Authorization"].encode()),
                (b"x-note", s.encode()),
            ],
        ),
        takes_line_breaks=False,
    ),
    Probe(
        "unknown JSON field",
        lambda api, t, s: api.post("/customers", headers=t.owner, json=_customer_body(note=s)),
    ),
    Probe(
        "JSON object key",
        lambda api, t, s: api.post("/customers", headers=t.owner, json={**_customer_body(), s: 1}),
    ),
    Probe(
        "JSON object key in an invoice line",
        lambda api, t, s: api.post(
            "/invoices",
            headers=t.owner,
            json=_invoice_body(t.customer_id) | {"lines": [{"description": "Work", s: "1"}]},
        ),
    ),
    Probe(
        "customer id in the path",
        lambda api, t, s: api.get(f"/customers/{quote(s, safe='')}", headers=t.owner),
    ),
    Probe(
        "grant id in the path",
        lambda api, t, s: api.post(f"/access-grants/{quote(s, safe='')}/revoke", headers=t.owner),
    ),
    Probe(
        "malformed JSON body",
        lambda api, t, s: api.post(
            "/customers",
            headers={**t.owner, **JSON},
            content=json.dumps({"name": "Bob", "address": s})[:-1].encode(),
        ),
        names_the_card_number=False,
    ),
    Probe(
        "plain text body",
        lambda api, t, s: api.post(
            "/customers", headers={**t.owner, "content-type": "text/plain"}, content=s.encode()
        ),
    ),
)

# A card number as a JSON number: written out here, as a client would put it on the wire.
JSON_NUMBER_BODIES: tuple[tuple[str, str, str], ...] = (
    ("line quantity", "/invoices", '"quantity": 4111111111111111'),
    ("unknown field", "/customers", '"note": 4111111111111111'),
    ("unknown field, with a fraction", "/customers", '"note": 4111111111111111.0'),
    ("unknown field, with an exponent", "/customers", '"note": 4.111111111111111e15'),
    ("unknown field, negative", "/customers", '"note": -5555555555554444'),
    ("number in a list", "/customers", '"notes": [1, 378282246310005]'),
)


def _json_number_body(tenant: Tenant, path: str, member: str) -> str:
    if path == "/invoices":
        return (
            f'{{"customer_id": "{tenant.customer_id}", "currency": "EUR", '
            f'"due_date": "{_due_date()}", "lines": [{{"description": "Work", {member}, '
            '"unit_price": "1"}]}'
        )
    return f'{{"name": "Bob", "email": "{_unique_email("bob")}", {member}}}'


def _refusal_fault(
    response: httpx.Response, sent: str, needles: Needles, *, names_the_card_number: bool = True
) -> str | None:
    """What is wrong with the answer to a request holding a card number, or None."""
    faults = []
    if response.status_code != 422:
        faults.append(f"answered {response.status_code}")
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        faults.append(f"as {response.headers.get('content-type')}")
    elif names_the_card_number and "card number" not in response.text:
        faults.append("without saying a card number was refused")
    echoed = needles.found_in(response.text) | (
        {"the text as sent"} if any(f in response.text for f in _written_forms(sent)) else set()
    )
    if echoed:
        faults.append(f"repeating {sorted(echoed)}")
    return ", ".join(faults) or None


async def _open_tenant(api: httpx.AsyncClient, tag: str, system: Stack) -> Tenant:
    opened = await api.post("/accounts", json=_account_body(name=f"Acme {tag}"))
    assert opened.status_code == 201, opened.text
    owner = {"Authorization": f"Bearer {opened.json()['api_key']}"}
    customer = await api.post("/customers", headers=owner, json=_customer_body())
    assert customer.status_code == 201, customer.text
    security_admin = await security_admin_of(system.service_env("billing"), api)
    staff_id, staff = await add_staff(api, security_admin, roles=["support"])
    grant = await api.post("/access-grants", headers=owner, json=_grant_body(staff_id))
    assert grant.status_code == 201, grant.text
    return Tenant(
        account_id=opened.json()["account"]["id"],
        owner=owner,
        customer_id=customer.json()["id"],
        staff_id=staff_id,
        staff=staff,
        security_admin=security_admin,
    )


@pytest.mark.clause("NO-PAN")
async def test_no_pan_planted_card_numbers_reach_no_table_topic_log_or_mail(
    system: Stack, mail: MailCatcher
) -> None:
    """NO-PAN: a card number in any layout, anywhere in a request, is refused and kept nowhere."""
    for card in CARDS:
        assert _luhn_valid(card.digits), card
        assert len(card.digits) == sum(card.groups), card
    needles = _card_needles()
    faults: list[str] = []
    tag = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=system.service_url("billing"), timeout=30) as api:
        tenant = await _open_tenant(api, tag, system)

        async def plant(probe: Probe, card: Card, layout: str, text: str) -> None:
            needles.add(text, f"{card.scheme} ({card.digits})")
            response = await probe.send(api, tenant, text)
            fault = _refusal_fault(
                response, text, needles, names_the_card_number=probe.names_the_card_number
            )
            if fault:
                faults.append(f"{probe.where} <- {card.scheme}, {layout}: {fault}")

        address = next(p for p in PROBES if p.where == "customer address")
        for card in CARDS:
            for layout, write in LAYOUTS:
                await plant(address, card, layout, write(card))
        for p, probe in enumerate(PROBES):
            for n, (layout, write) in enumerate(LAYOUTS):
                card = CARDS[(p + n) % len(CARDS)]  # every probe sees every layout
                text = write(card)
                if probe.takes_line_breaks or not ("\n" in text or "\r" in text):
                    await plant(probe, card, layout, text)
        for what, path, member in JSON_NUMBER_BODIES:
            response = await api.post(
                path,
                headers={**tenant.owner, **JSON},
                content=_json_number_body(tenant, path, member),
            )
            fault = _refusal_fault(response, member.split(": ", 1)[1], needles)
            if fault:
                faults.append(f"JSON number, {what} ({member}): {fault}")

        # Ordinary requests still work, digits and all; the invoice is mailed.
        customer_email = f"carol-{tag}@buyer.example.com"
        customer = await api.post(
            "/customers",
            headers=tenant.owner,
            json={
                "name": f"Carol {tag}",
                "email": customer_email,
                "address": "12 Main Street, 4th floor, 75001 Paris",
            },
        )
        assert customer.status_code == 201, customer.text
        issued = await api.post(
            "/invoices",
            headers=tenant.owner,
            json=_invoice_body(
                customer.json()["id"], description=f"Consulting {tag}, order 2030-0042", issue=True
            ),
        )
        assert issued.status_code == 201, issued.text
        assert issued.json()["number"], issued.text
    await mail.wait_for(lambda ms: any(customer_email in m["to"] for m in ms), timeout=60)

    # The scans can find what is there: the ordinary customer's email is in each place it went.
    known = Needles()
    known.add(customer_email, "the ordinary customer's email")
    seen = await _everywhere(system, mail, known)
    assert seen["databases"], "the database scan finds a stored value"
    assert seen["topics"], "the topic scan finds a sealed personal value once opened"
    assert seen["mail"], "the mail scan finds a recipient"

    leaks = await _everywhere(system, mail, needles)
    findings = {"refusal faults": faults, **leaks}
    assert not any(findings.values()), json.dumps(findings, indent=1, ensure_ascii=False)


# ---------------------------------------------------------------- personal data and the logs


def _marked_invoice_issued(mark: str, account_id: uuid.UUID) -> Envelope[InvoiceIssued]:
    """A valid invoice.issued event whose personal fields hold the mark."""
    issued = InvoiceIssued(
        account_id=account_id,
        invoice_id=uuid.uuid4(),
        number="INV-000001",
        seller_name=f"Acme {mark}",
        customer=IssuedInvoiceCustomer(
            customer_id=uuid.uuid4(), name=f"Bob {mark}", email=f"{mark.lower()}@buyer.example.com"
        ),
        currency="EUR",
        lines=[
            InvoiceLine(
                description=f"Work for {mark}",
                quantity=Decimal(1),
                unit_price=Decimal(1),
                amount=Decimal(1),
            )
        ],
        total=Decimal(1),
        issue_date=date.today(),
        due_date=date.today(),
    )
    return new_envelope(issued, source="billing")


@pytest.mark.clause("TERMINATION", "COLLECTED")
async def test_logs_hold_no_personal_data_from_the_main_flows_or_their_errors(
    system: Stack, mail: MailCatcher
) -> None:
    """TERMINATION, COLLECTED: no log line holds a value sent in a flow, a refusal or an event."""
    mark = f"PII{uuid.uuid4().hex[:10]}"
    low = mark.lower()
    owner_email = f"{low}-owner@acme.example.com"
    customer_email = f"{low}-buyer@buyer.example.com"
    staff_email = f"{low}-sam@quittance.example.com"
    async with httpx.AsyncClient(base_url=system.service_url("billing"), timeout=30) as api:
        opened = await api.post(
            "/accounts",
            json={"name": f"Acme {mark}", "owner": {"name": f"Ada {mark}", "email": owner_email}},
        )
        assert opened.status_code == 201, opened.text
        account_id = opened.json()["account"]["id"]
        owner = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        customer = await api.post(
            "/customers",
            headers=owner,
            json={"name": f"Bob {mark}", "email": customer_email, "address": f"1 {mark} Street"},
        )
        assert customer.status_code == 201, customer.text
        customer_id = customer.json()["id"]
        draft = await api.post(
            "/invoices",
            headers=owner,
            json=_invoice_body(customer_id, description=f"Work for {mark}"),
        )
        assert draft.status_code == 201, draft.text
        issued = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=owner)
        assert issued.status_code == 200, issued.text
        at_once = await api.post(
            "/invoices",
            headers=owner,
            json=_invoice_body(customer_id, description=f"More work for {mark}", issue=True),
        )
        assert at_once.status_code == 201, at_once.text

        # Refusals holding the mark: queries, bodies, paths, and a conflict.
        refused = {
            "status query": await api.get("/invoices", headers=owner, params={"status": mark}),
            "customer query": await api.get(
                "/invoices", headers=owner, params={"customer_id": mark}
            ),
            "currency": await api.post(
                "/invoices",
                headers=owner,
                json=_invoice_body(customer_id, currency=f"X{mark}"),
            ),
            "NUL in a name": await api.post(
                "/customers",
                headers=owner,
                json={"name": f"Bob\x00{mark}", "email": customer_email},
            ),
            "over-long name": await api.post(
                "/customers", headers=owner, json={"name": mark * 50, "email": customer_email}
            ),
            "not an email": await api.post(
                "/customers", headers=owner, json={"name": "Bob", "email": f"{mark} at home"}
            ),
            "unknown field": await api.post(
                "/customers", headers=owner, json={**_customer_body(), mark: mark}
            ),
            "malformed JSON": await api.post(
                "/customers",
                headers={**owner, **JSON},
                content=f'{{"name": "Bob {mark}", "email": '.encode(),
            ),
            "customer id in the path": await api.get(f"/customers/{mark}", headers=owner),
        }
        assert {k: r.status_code for k, r in refused.items()} == dict.fromkeys(refused, 422)
        unknown_path = await api.get(f"/nothing/{mark}", headers=owner)
        assert unknown_path.status_code == 404
        again = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=owner)
        assert again.status_code == 409, again.text

        # A staff member, a grant, a read under it, and a read for a purpose not granted.
        security_admin = await security_admin_of(system.service_env("billing"), api)
        staff_body = {"name": f"Sam {mark}", "email": staff_email, "roles": ["support"]}
        staff = await api.post("/staff", headers=security_admin, json=staff_body)
        assert staff.status_code == 201, staff.text
        twice = await api.post("/staff", headers=security_admin, json=staff_body)
        assert twice.status_code == 409, twice.text
        staff_auth = await enrol_staff(api, email=staff_email, code=staff.json()["enrolment_code"])
        grant = await api.post(
            "/access-grants",
            headers=owner,
            json=_grant_body(staff.json()["staff"]["id"], reason=f"TICKET {mark}"),
        )
        assert grant.status_code == 201, grant.text
        staff_read = f"/staff/accounts/{account_id}/customers/{customer_id}"
        read = await api.get(staff_read, headers=staff_auth, params={"purpose": "support"})
        assert read.status_code == 200, read.text
        not_granted = await api.get(staff_read, headers=staff_auth, params={"purpose": "legal"})
        assert not_granted.status_code == 403, not_granted.text
    await mail.wait_for(lambda ms: len([m for m in ms if customer_email in m["to"]]) >= 2)
    await eventually(
        lambda: _audit_entries(system, uuid.UUID(account_id)),
        what="the staff reads reached the audit trail",
    )

    # Malformed events holding the mark, each dead-lettered once by each consumer of the topic
    # (notifications, which emails invoices; billing, which sends them to webhook endpoints).
    topic = system.topic_prefix + "invoice.issued"
    keystore = KeyStoreSettings(url=system.keystore_url())
    envelope = _marked_invoice_issued(mark, uuid.UUID(account_id))
    sealed_event = json.loads(await sealed(envelope, keystore))
    plain_event = json.loads(envelope.model_dump_json())
    malformed: dict[str, bytes] = {
        "wrong values beside sealed personal fields": _changed(
            sealed_event, number=mark, currency=f"X{mark}", total=mark
        ),
        "personal fields not sealed": json.dumps(plain_event).encode(),
        "an unknown field named with the mark": _changed(sealed_event, **{f"note {mark}": mark}),
        "not JSON": f"invoice for {mark} {{".encode(),
    }
    for what, body in malformed.items():
        key = f"{what}-{uuid.uuid4()}"
        await produce(
            system.bootstrap_servers,
            topic,
            body,
            key=key.encode(),
            headers=[("content-type", b"application/json")],
        )
        dead = await read_topic(system.bootstrap_servers, topic + ".dlq", count=2, key=key)
        consumers = sorted(dict(record.headers)[DLQ_CONSUMER_HEADER].decode() for record in dead)
        assert len(consumers) == 2, f"dead-lettered: {what}: {consumers}"
        assert len(set(consumers)) == 2, f"dead-lettered once by each consumer: {what}"

    notifications_log = system.log_dir / "notifications.log"
    dead_letter_line = f"dead-lettered invalid from {topic}:"
    await eventually(
        lambda: (
            notifications_log.read_text(errors="replace").count(dead_letter_line) >= len(malformed)
        ),
        what="notifications logged each dead letter",
    )
    for spec in SERVICES:
        log = system.log_dir / f"{spec.name}.log"
        assert log.stat().st_size > 0, f"{log.name} is empty: the scan below could not fail"
    hits = [
        f"{log.name}:{number}: {line.strip()}"
        for log in sorted(system.log_dir.glob("*.log"))
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1)
        if mark in line or low in line
    ]
    assert hits == [], "a log line holds a personal value:\n" + "\n".join(hits)


def _changed(event: dict[str, Any], **data: Any) -> bytes:
    """The event's bytes with some fields of its data replaced or added."""
    return json.dumps({**event, "data": {**event["data"], **data}}).encode()


async def _audit_entries(system: Stack, account_id: uuid.UUID) -> bool:
    """Whether both staff reads (granted and refused) are in the audit trail."""
    dsn = system.database_url("audit").replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM audit_entry WHERE account_id = $1 AND kind = 'data-access'",
            account_id,
        )
    finally:
        await connection.close()
    return bool(count and count >= 2)
