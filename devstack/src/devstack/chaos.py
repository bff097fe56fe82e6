"""`make chaos`: the whole system under a steady load while its processes are killed.

For a set time, a few simulated customers open accounts, sign in, issue invoices, let support
staff read their customers under grants, and some terminate their accounts, while every few
seconds one of the four services or the PostgreSQL server is killed with SIGKILL and started
again. Every POST carries an Idempotency-Key and is sent again with it until it is answered, as
a careful client does. Then the load stops, the system settles, and the run checks what the
policies promise:

- every issued invoice produced exactly one email to its customer (one Message-ID: a kill
  between the SMTP server's acceptance and the commit that records it sends the same message
  again, which SMTP cannot prevent; those redeliveries are counted and printed apart);
- every staff read produced exactly one entry in the audit trail (a read that got no answer may
  have happened or not: at most one);
- every terminated account got its export and its purge certificate, once each, and no row in
  any database mentions it any more;
- no dead letter but the ones planted at the start;
- the audit trail verifies.

It prints what it did and found, and the lost and doubled effects. The broker is the embedded
Tansu, which keeps messages in memory only: killing it would test the relays' replay, not
durability, so it is not killed here (a durable Kafka's restarts are tested in the suite against
a broker that keeps its log; see README).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from devstack.payment_sandbox import DELIVERY_ATTEMPTS
from devstack.processes import free_port
from devstack.stack import SERVICES, Stack, StackPorts
from devstack.testing import MailCatcher, add_staff, produce, rows_mentioning, security_admin_of
from shared.contracts.topics import dead_letter_topic

OWNER_PASSWORD = "a chaos owner's long passphrase"  # noqa: S105 - a throwaway stack's test data
OPERATOR_TOKENS = {  # the services' development defaults
    "billing": "dev-only-operator-token",
    "notifications": "dev-only-operator-token",
    "retention": "dev-only-operator-token",
    "audit": "dev-only-audit-operator-token",
}
PLANTED_TOPIC = "invoice.issued"  # billing and notifications read it: two planted dead letters
VICTIMS = (*(spec.name for spec in SERVICES), "postgres")
# A careful client sends these again (with the same Idempotency-Key for a POST: only a success
# is kept for it). A 500 is among them: a statement cut off by a kill of PostgreSQL can come out
# as a driver error that is not classified as an outage; the run counts those apart.
RETRYABLE_STATUS = {500, 502, 503, 504}


@dataclass
class Account:
    """A customer company of the run, and what the run did with it."""

    id: str
    headers: dict[str, str]
    owner_email: str
    customer_id: str
    customer_email: str
    terminate: bool
    invoices: dict[str, str] = field(default_factory=dict)  # invoice id -> number
    paid: dict[str, str] = field(default_factory=dict)  # invoice id -> total, paid at the gateway
    terminated: bool = False


@dataclass
class Findings:
    """What the checks found."""

    invoices: int = 0
    invoice_emails_missing: list[str] = field(default_factory=list)
    invoice_emails_doubled: list[str] = field(default_factory=list)
    payments: int = 0
    payments_missing: list[str] = field(default_factory=list)
    payments_doubled: list[str] = field(default_factory=list)
    receipts_missing: list[str] = field(default_factory=list)
    receipts_doubled: list[str] = field(default_factory=list)
    reads: int = 0
    reads_unanswered: int = 0
    audit_entries_missing: list[str] = field(default_factory=list)
    audit_entries_doubled: list[str] = field(default_factory=list)
    terminations: int = 0
    certificates_missing: list[str] = field(default_factory=list)
    mails_to_owner_doubled: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    unexpected_dead_letters: list[str] = field(default_factory=list)
    audit_chain: str = "not checked"
    kills: Counter[str] = field(default_factory=Counter)
    sign_ins: int = 0
    # The same message (same Message-ID) delivered again: SMTP has no idempotency, so a kill
    # between the server's acceptance and the commit that records it sends it once more.
    redelivered: int = 0
    server_errors: int = 0  # 500 answers during the faults (each sent again)

    @property
    def checked(self) -> int:
        """The effects the run checked: invoices emailed, payments recorded and receipted,
        reads recorded, accounts purged."""
        return self.invoices + self.payments + self.reads + self.terminations

    @property
    def lost(self) -> int:
        """Effects that should have happened and did not."""
        return (
            len(self.invoice_emails_missing)
            + len(self.payments_missing)
            + len(self.receipts_missing)
            + len(self.audit_entries_missing)
            + len(self.certificates_missing)
            + len(self.leftovers)
        )

    @property
    def doubled(self) -> int:
        """Effects that happened more than once."""
        return (
            len(self.invoice_emails_doubled)
            + len(self.payments_doubled)
            + len(self.receipts_doubled)
            + len(self.audit_entries_doubled)
            + len(self.mails_to_owner_doubled)
        )

    @property
    def passed(self) -> bool:
        """Nothing lost, nothing doubled, no stray dead letter, a trail that verifies."""
        return (
            self.lost == 0
            and self.doubled == 0
            and not self.unexpected_dead_letters
            and self.audit_chain == "verified"
        )

    def summary(self) -> str:
        """The run in a few lines."""
        lines = [
            f"kills: {dict(self.kills)}",
            f"invoices issued: {self.invoices}; emails missing {len(self.invoice_emails_missing)}"
            f", doubled {len(self.invoice_emails_doubled)}",
            f"payments at the gateway: {self.payments}; recorded missing "
            f"{len(self.payments_missing)}, doubled {len(self.payments_doubled)}; receipts "
            f"missing {len(self.receipts_missing)}, doubled {len(self.receipts_doubled)}",
            f"staff reads: {self.reads} ({self.reads_unanswered} unanswered); audit entries "
            f"missing {len(self.audit_entries_missing)}, doubled {len(self.audit_entries_doubled)}",
            f"terminations: {self.terminations}; certificates missing "
            f"{len(self.certificates_missing)}, owner mails doubled "
            f"{len(self.mails_to_owner_doubled)}, accounts with rows left {len(self.leftovers)}",
            f"sign-ins: {self.sign_ins}",
            f"messages delivered again with the same Message-ID: {self.redelivered}",
            f"500 answers during the faults (sent again): {self.server_errors}",
            f"dead letters other than the planted ones: {self.unexpected_dead_letters or 'none'}",
            f"audit trail: {self.audit_chain}",
            f"effects lost: {self.lost}, doubled: {self.doubled}",
        ]
        details = [
            *self.invoice_emails_missing,
            *self.invoice_emails_doubled,
            *self.payments_missing,
            *self.payments_doubled,
            *self.receipts_missing,
            *self.receipts_doubled,
            *self.audit_entries_missing,
            *self.audit_entries_doubled,
            *self.certificates_missing,
            *self.mails_to_owner_doubled,
            *self.leftovers,
        ]
        return "\n".join(lines + [f"  {detail}" for detail in details[:40]])


class Chaos:
    """One run: the load, the faults, then the checks."""

    def __init__(
        self,
        stack: Stack,
        *,
        seconds: float,
        seed: int,
        customers: int = 3,
        workers: int = 1,
        log: Any = print,
    ) -> None:
        self.stack = stack
        self.workers = workers  # instances of each service, in one consumer group
        self.services = [spec.name for spec in SERVICES]
        # The broker is killed too when its topics outlive it (a durable broker).
        durable = stack.broker is not None and stack.broker.durable
        self.victims = [*VICTIMS, "kafka"] if durable else list(VICTIMS)
        self.seconds = seconds
        self.seed = seed
        self.random = random.Random(seed)  # noqa: S311 - repeatable load, not security
        self.customers = customers
        self.log = log
        self.accounts: list[Account] = []
        self.reads: dict[str, int] = {}  # grant reason -> reads answered 200
        self.unanswered: dict[str, int] = {}  # grant reason -> reads that got no answer
        self.findings = Findings()
        self.deadline = 0.0
        self.staff_headers: dict[str, str] = {}
        self.staff_id = ""
        self.planted_topics: set[str] = set()
        self.client_for_reads = httpx.AsyncClient()  # replaced by the run's client

    # The client: a careful one, that sends a POST again with its key until it is answered.

    async def _call(
        self,
        api: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        key: bool = False,
        patience_s: float = 120,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        give_up = time.monotonic() + patience_s
        while True:
            try:
                answer = await api.request(method, path, headers=headers, **kwargs)
                self.findings.server_errors += answer.status_code == 500
                # A 409 "request in flight": the attempt that a kill cut off still holds its key
                # until its lease ends; the same request then runs (or replays) as one.
                if answer.status_code not in RETRYABLE_STATUS and not (
                    answer.status_code == 409 and "request-in-flight" in answer.text
                ):
                    return answer
            except httpx.TransportError:
                pass
            if time.monotonic() > give_up:
                raise RuntimeError(f"{method} {path} got no answer in {patience_s:.0f} s")
            await asyncio.sleep(self.random.uniform(0.2, 0.8))

    async def _expect(self, answer: httpx.Response, status: int, what: str) -> dict[str, Any]:
        if answer.status_code != status:
            raise RuntimeError(f"{what}: {answer.status_code} {answer.text[:300]}")
        body: dict[str, Any] = answer.json() if answer.content else {}
        return body

    # The load.

    async def _open_account(self, api: httpx.AsyncClient, terminate: bool) -> Account:
        while True:
            tag = uuid.uuid4().hex[:10]
            owner_email = f"owner-{tag}@chaos.example.com"
            answer = await self._call(
                api,
                "POST",
                "/accounts",
                key=True,
                json={
                    "name": f"Chaos {tag}",
                    "plan": "free",  # no grace period: a termination purges at once
                    "owner": {"name": "Olga", "email": owner_email, "password": OWNER_PASSWORD},
                },
            )
            if answer.status_code != 409:  # 409: an earlier attempt opened it, unanswered
                break
        opened = await self._expect(answer, 201, "opening an account")
        headers = {"Authorization": f"Bearer {opened['api_key']}"}
        customer_email = f"buyer-{tag}@chaos.example.com"
        customer = await self._expect(
            await self._call(
                api,
                "POST",
                "/customers",
                key=True,
                headers=headers,
                json={"name": f"Buyer {tag}", "email": customer_email},
            ),
            201,
            "adding a customer",
        )
        account = Account(
            opened["account"]["id"], headers, owner_email, customer["id"], customer_email, terminate
        )
        self.accounts.append(account)
        return account

    async def _issue(self, api: httpx.AsyncClient, account: Account) -> None:
        draft = await self._expect(
            await self._call(
                api,
                "POST",
                "/invoices",
                key=True,
                headers=account.headers,
                json={
                    "customer_id": account.customer_id,
                    "currency": "EUR",
                    "due_date": "2030-01-31",
                    "lines": [
                        {
                            "description": "Chaos engineering",
                            "quantity": "1",
                            "unit_price": str(self.random.randint(10, 999)),
                        }
                    ],
                },
            ),
            201,
            "drafting an invoice",
        )
        issued = await self._expect(
            await self._call(
                api, "POST", f"/invoices/{draft['id']}/issue", key=True, headers=account.headers
            ),
            200,
            "issuing an invoice",
        )
        account.invoices[issued["id"]] = issued["number"]
        if not account.terminate and self.random.random() < 0.5:
            await self._pay(api, account, issued["id"])

    async def _pay(self, api: httpx.AsyncClient, account: Account, invoice_id: str) -> None:
        """The customer pays on the gateway's page; billing learns it from the gateway's signed
        webhook, which the gateway sends again until billing takes it."""
        checkout = await self._expect(
            await self._call(
                api,
                "POST",
                f"/invoices/{invoice_id}/checkout",
                key=True,
                headers=account.headers,
                json={},
            ),
            201,
            "opening a checkout",
        )
        async with httpx.AsyncClient(timeout=15) as payer:  # the gateway is not killed
            paid = await payer.post(checkout["url"], data={"card_number": "4242 4242 4242 4242"})
        if paid.status_code != 303:
            raise RuntimeError(f"paying at the gateway: {paid.status_code} {paid.text[:200]}")
        account.paid[invoice_id] = str(checkout["amount"])

    async def _staff_read(self, api: httpx.AsyncClient, account: Account) -> None:
        reason = f"CHAOS-{uuid.uuid4().hex[:12]}"
        await self._expect(
            await self._call(
                api,
                "POST",
                "/access-grants",
                key=True,
                headers=account.headers,
                json={
                    "staff_id": self.staff_id,
                    "purpose": "support",
                    "reason": reason,
                    "expires_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
                },
            ),
            201,
            "opening a grant",
        )
        self.reads[reason] = 0
        self.unanswered[reason] = 0
        path = f"/staff/accounts/{account.id}/customers/{account.customer_id}"
        while True:  # a read that got no answer is read again: each attempt may be an access
            try:
                answer = await self.client_for_reads.get(
                    path, params={"purpose": "support"}, headers=self.staff_headers
                )
            except httpx.TransportError:
                self.unanswered[reason] += 1
                await asyncio.sleep(0.5)
                continue
            if answer.status_code in RETRYABLE_STATUS:
                self.findings.server_errors += answer.status_code == 500
                self.unanswered[reason] += 1  # a 5xx may come after the access was recorded
                await asyncio.sleep(0.5)
                continue
            await self._expect(answer, 200, "a staff read")
            self.reads[reason] += 1
            return

    async def _sign_in(self, api: httpx.AsyncClient, account: Account) -> None:
        answer = await self._call(
            api,
            "POST",
            "/sessions",
            json={"email": account.owner_email, "password": OWNER_PASSWORD},
        )
        if answer.status_code == 201:
            self.findings.sign_ins += 1

    async def _terminate(self, api: httpx.AsyncClient, account: Account, mail: MailCatcher) -> None:
        # Its invoices' emails first: a termination right after an issue may purge the account
        # before its email goes, which is the policy, not a lost email.
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:
            subjects = {
                m["subject"] for m in await asyncio.to_thread(mail.to, account.customer_email)
            }
            if all(any(n in s for s in subjects) for n in account.invoices.values()):
                break
            await asyncio.sleep(1)
        else:
            account.terminate = False  # its mail is late: kept, and checked like the others
            return
        await self._expect(
            await self._call(
                api,
                "POST",
                "/account/termination",
                key=True,
                headers=account.headers,
                json={"password": OWNER_PASSWORD},
            ),
            202,
            "terminating",
        )
        account.terminated = True

    async def _customer(self, number: int, mail: MailCatcher) -> None:
        """One simulated customer company after another, until the time is up."""
        base = self.stack.service_url("billing")
        async with httpx.AsyncClient(base_url=base, timeout=15, verify=self.stack.verify()) as api:
            while time.monotonic() < self.deadline:
                account = await self._open_account(api, terminate=self.random.random() < 0.4)
                for _ in range(self.random.randint(1, 3)):
                    await self._issue(api, account)
                await self._sign_in(api, account)
                if account.terminate:
                    await self._terminate(api, account, mail)
                else:
                    await self._staff_read(api, account)

    # The faults.

    async def _faults(self) -> None:
        # The victims in a shuffled order, again and again: every one is killed once before
        # any twice, and a seed gives the same kills whatever the load did with its own draws.
        draws = random.Random(self.seed)  # noqa: S311 - repeatable faults, not security
        order: list[str] = []
        while time.monotonic() < self.deadline:
            await asyncio.sleep(draws.uniform(3, 8))
            if time.monotonic() >= self.deadline:
                return
            if not order:
                order = draws.sample(self.victims, len(self.victims))
            victim = order.pop()
            if victim in self.services and self.workers > 1 and draws.random() < 0.5:
                await self._kill_one_instance(victim)
                continue
            self.findings.kills[victim] += 1
            self.log(f"  kill -9 {victim}")
            if victim == "kafka":
                assert self.stack.broker is not None
                await asyncio.to_thread(self.stack.broker.kill)
                await asyncio.sleep(self.random.uniform(0.5, 3))
                await asyncio.to_thread(self.stack.broker.start)
            elif victim == "postgres":
                postgres = self.stack.postgres
                if postgres is None or postgres.process is None:
                    raise RuntimeError("the chaos stack runs its own PostgreSQL")
                postgres.process.kill()
                await asyncio.sleep(self.random.uniform(0.5, 3))
                await asyncio.to_thread(postgres.start)
            else:
                self.stack.services[victim].kill()
                await asyncio.sleep(self.random.uniform(0.5, 3))
                await asyncio.to_thread(
                    self.stack.start_service, victim, wait=False, workers=self.workers
                )

    async def _kill_one_instance(self, service: str) -> None:
        """kill -9 of one of the service's instances; the others go on, and the server starts
        a new one in its place (a pod's container restarted)."""
        supervisor = self.stack.services[service].pid
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children")
        try:
            instances = [int(pid) for pid in (await asyncio.to_thread(children.read_text)).split()]
        except OSError:
            instances = []
        if not instances:
            return
        self.findings.kills[f"{service} (one instance)"] += 1
        self.log(f"  kill -9 one instance of {service}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.random.choice(instances), signal.SIGKILL)

    # Settling, then the checks.

    async def _count(self, service: str, query: str) -> int:
        dsn = self.stack.database_url(service).replace("postgresql+asyncpg://", "postgresql://", 1)
        connection = await asyncpg.connect(dsn)
        try:
            return int(await connection.fetchval(query))
        finally:
            await connection.close()

    async def _pending(self, client: httpx.AsyncClient) -> list[str]:
        """What is still on its way: unpublished events, queued email, sagas in flight."""
        pending = []
        for spec in SERVICES:
            waiting = await self._count(
                spec.name,
                "SELECT count(*) FROM outbox_message "
                "WHERE published_at IS NULL AND parked_at IS NULL",
            )
            if waiting:
                pending.append(f"{waiting} events in {spec.name}'s outbox")
        queued = await self._count(
            "notifications", "SELECT count(*) FROM outgoing_email WHERE status = 'QUEUED'"
        )
        if queued:
            pending.append(f"{queued} queued emails")
        sagas = await client.get(
            f"{self.stack.service_url('retention')}/sagas",
            headers={"Authorization": f"Bearer {OPERATOR_TOKENS['retention']}"},
        )
        if sagas.status_code != 200 or sagas.json():
            pending.append(f"sagas in flight: {sagas.text[:200]}")
        unconfirmed = await self._payments_unconfirmed(client)
        if unconfirmed:
            pending.append(f"{unconfirmed} payments the gateway is still telling billing")
        return pending

    async def _payments_unconfirmed(self, client: httpx.AsyncClient) -> int:
        """Payment events the gateway has neither delivered nor given up on."""
        events = await client.get(
            f"{self.stack.payment_gateway_url}/v1/events",
            headers={"Authorization": f"Bearer {self.stack.gateway_api_key}"},
        )
        events.raise_for_status()
        return sum(
            1
            for event in events.json()
            if not event["delivered"] and len(event["attempts"]) < DELIVERY_ATTEMPTS
        )

    async def _settle(self, mail: MailCatcher) -> None:
        """Until nothing is on its way and no mail arrived for a few seconds (a queued email
        retried after a failure waits its 30 s, so this can take a while)."""
        for spec in SERVICES:
            await asyncio.to_thread(self.stack.wait_healthy, spec.name, 120)
        stable_since, last_count, pending = time.monotonic(), -1, ["?"]
        give_up = time.monotonic() + 240
        async with httpx.AsyncClient(timeout=10, verify=self.stack.verify()) as client:
            while time.monotonic() < give_up:
                count = len(await asyncio.to_thread(mail.messages))
                pending = await self._pending(client)
                if count != last_count or pending:
                    stable_since, last_count = time.monotonic(), count
                elif time.monotonic() - stable_since > 5:
                    return
                await asyncio.sleep(1)
        self.log(f"  the system did not settle in 4 minutes ({pending}); checking as it is")

    async def _check_payments(self, account: Account, to_customer: list[dict[str, Any]]) -> None:
        """Each payment made at the gateway: recorded once, its invoice paid, one receipt."""
        found = self.findings
        base = self.stack.service_url("billing")
        async with httpx.AsyncClient(base_url=base, timeout=30, verify=self.stack.verify()) as api:
            for invoice_id in account.paid:
                found.payments += 1
                number = account.invoices[invoice_id]
                recorded = await api.get(
                    "/payments", params={"invoice_id": invoice_id}, headers=account.headers
                )
                payments = recorded.json() if recorded.status_code == 200 else []
                if not payments:
                    found.payments_missing.append(f"invoice {number}: no payment recorded")
                elif len(payments) > 1:
                    found.payments_doubled.append(f"invoice {number}: {len(payments)} payments")
                invoice = await api.get(f"/invoices/{invoice_id}", headers=account.headers)
                if payments and invoice.json().get("status") != "paid":
                    found.payments_missing.append(f"invoice {number}: paid, not marked paid")
                receipts = [
                    m
                    for m in to_customer
                    if m["subject"] == f"Payment received for invoice {number}"
                ]
                ids = {m["message_id"] for m in receipts}
                if not ids:
                    found.receipts_missing.append(f"invoice {number}: no receipt")
                elif len(ids) > 1:
                    found.receipts_doubled.append(f"invoice {number}: {len(ids)} receipts")
                found.redelivered += len(receipts) - len(ids)

    async def _audit_entries(self) -> Counter[str]:
        dsn = self.stack.database_url("audit").replace("postgresql+asyncpg://", "postgresql://", 1)
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch(
                "SELECT p.reason FROM audit_entry e JOIN audit_personal p USING (global_seq) "
                "WHERE e.kind = 'data-access' AND p.reason LIKE 'CHAOS-%'"
            )
        finally:
            await connection.close()
        return Counter(row["reason"] for row in rows)

    async def _check(self, mail: MailCatcher) -> None:
        found = self.findings
        messages = await asyncio.to_thread(mail.messages)
        for account in self.accounts:
            to_customer = [m for m in messages if account.customer_email in m["to"]]
            for invoice_id, number in account.invoices.items():
                found.invoices += 1
                sent = [m for m in to_customer if m["subject"].startswith(f"Invoice {number} ")]
                ids = {m["message_id"] for m in sent}
                if not sent:
                    found.invoice_emails_missing.append(
                        f"invoice {number} ({invoice_id}): no email"
                    )
                elif len(ids) > 1:
                    found.invoice_emails_doubled.append(
                        f"invoice {number}: {len(ids)} emails: "
                        + "; ".join(f"{m['subject']} {m['message_id']}" for m in sent)
                    )
                found.redelivered += len(sent) - len(ids)
            if account.paid:
                await self._check_payments(account, to_customer)
            if account.terminated:
                found.terminations += 1
                to_owner = [m for m in messages if account.owner_email in m["to"]]
                certificates = {
                    m["message_id"] for m in to_owner if "certificate" in m["subject"].lower()
                }
                exports = {
                    m["message_id"]
                    for m in to_owner
                    if m.get("attachments") and "certificate" not in m["subject"].lower()
                }
                found.redelivered += sum(1 for m in to_owner if m.get("attachments")) - len(
                    certificates | exports
                )
                if not certificates:
                    found.certificates_missing.append(f"account {account.id}: no certificate")
                if len(certificates) > 1 or len(exports) > 1:
                    found.mails_to_owner_doubled.append(
                        f"account {account.id}: {len(exports)} exports, "
                        f"{len(certificates)} certificates"
                    )
                for spec in SERVICES:
                    left = await rows_mentioning(self.stack.database_url(spec.name), account.id)
                    if left:
                        found.leftovers.append(f"account {account.id} in {spec.name}: {left}")
        entries = await self._audit_entries()
        for reason, answered in self.reads.items():
            found.reads += answered
            found.reads_unanswered += self.unanswered[reason]
            recorded = entries.get(reason, 0)
            if recorded < answered:
                found.audit_entries_missing.append(f"grant {reason}: {recorded} of {answered}")
            if recorded > answered + self.unanswered[reason]:
                found.audit_entries_doubled.append(
                    f"grant {reason}: {recorded} entries for {answered} reads "
                    f"and {self.unanswered[reason]} unanswered"
                )
        async with httpx.AsyncClient(timeout=30, verify=self.stack.verify()) as client:
            for spec in SERVICES:
                letters = await client.get(
                    f"{self.stack.service_url(spec.name)}/dead-letters",
                    headers={"Authorization": f"Bearer {OPERATOR_TOKENS[spec.name]}"},
                )
                for letter in letters.json():
                    if letter.get("topic") not in self.planted_topics:
                        found.unexpected_dead_letters.append(
                            f"{spec.name}: {letter.get('topic')}: {letter.get('reason')}"
                        )
            verified = await client.get(
                f"{self.stack.service_url('audit')}/verify",
                headers={"Authorization": f"Bearer {OPERATOR_TOKENS['audit']}"},
            )
            body = verified.json()
            found.audit_chain = (
                "verified" if body.get("verified") else f"NOT verified: {body.get('first_problem')}"
            )

    async def _plant_dead_letters(self) -> None:
        """A record no consumer can read, on a topic two services consume."""
        topic = f"{self.stack.topic_prefix}{PLANTED_TOPIC}"
        self.planted_topics = {PLANTED_TOPIC, topic, dead_letter_topic(topic)}
        await produce(self.stack.bootstrap_servers, topic, b"\xff not an event", key=b"chaos")

    async def run(self) -> Findings:
        """Prepare, load with faults for the set time, settle, check."""
        mail = MailCatcher(self.stack.mail_url)
        base = self.stack.service_url("billing")
        async with httpx.AsyncClient(base_url=base, timeout=30, verify=self.stack.verify()) as api:
            admin = await security_admin_of(self.stack.service_env("billing"), api)
            self.staff_id, self.staff_headers = await add_staff(
                api, admin, roles=["support"], name="Chaos Support"
            )
        await self._plant_dead_letters()
        self.deadline = time.monotonic() + self.seconds
        async with httpx.AsyncClient(
            base_url=base, timeout=15, verify=self.stack.verify()
        ) as self.client_for_reads:
            self.log(f"load with faults for {self.seconds:.0f} s ...")
            await asyncio.gather(
                *(self._customer(n, mail) for n in range(self.customers)), self._faults()
            )
        self.log("settling ...")
        await self._settle(mail)
        self.log("checking ...")
        await self._check(mail)
        return self.findings


def chaos_stack(var_dir: Path, *, durable_broker: bool = False) -> Stack:
    """A stack of its own on free ports: its PostgreSQL (and its broker, when durable) are the
    ones the run kills."""
    return Stack(
        var_dir=var_dir,
        ports=StackPorts.free(),
        durable_broker=durable_broker,
        service_ports={spec.name: free_port() for spec in SERVICES},
        topic_prefix=f"chaos{uuid.uuid4().hex[:6]}.",
    )


async def run_chaos(
    seconds: float,
    seed: int,
    var_dir: Path,
    log: Any = print,
    workers: int = 1,
    durable_broker: bool = False,
) -> Findings:
    """Start a stack (each service as `workers` instances; a durable broker, which the run
    kills too, if asked), run the chaos on it, stop it."""
    stack = chaos_stack(var_dir, durable_broker=durable_broker)
    try:
        await asyncio.to_thread(stack.start_infrastructure)
        await asyncio.to_thread(stack.start_services, workers)
        return await Chaos(stack, seconds=seconds, seed=seed, workers=workers, log=log).run()
    finally:
        await asyncio.to_thread(stack.stop)


def main() -> None:
    """`python -m devstack.chaos --minutes N [--seed S]`: run, print, exit 1 on a finding."""
    parser = argparse.ArgumentParser(prog="python -m devstack.chaos", description=__doc__)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--instances", type=int, default=1, help="instances of each service (one consumer group)"
    )
    parser.add_argument(
        "--memory-broker",
        action="store_true",
        help="keep the broker's topics in memory, and never kill it (default: durable, killed)",
    )
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)  # noqa: S311
    print(f"chaos: {args.minutes} min, seed {seed}, {args.instances} instance(s) of each service")
    with tempfile.TemporaryDirectory(prefix="quittance-chaos-") as folder:
        findings = asyncio.run(
            run_chaos(
                args.minutes * 60,
                seed,
                Path(folder),
                workers=args.instances,
                durable_broker=not args.memory_broker,
            )
        )
    print(findings.summary())
    for metric, value in (
        ("chaos_effects_lost", findings.lost),
        ("chaos_effects_doubled", findings.doubled),
    ):
        print(json.dumps({"metric": metric, "value": value, "unit": "effects"}))
    print(json.dumps({"metric": "chaos_messages_redelivered", "value": findings.redelivered}))
    sys.exit(0 if findings.passed else 1)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
