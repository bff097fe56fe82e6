"""Scale-out: instances of a service start together on one database, and share a consumer
group without doubling an effect."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from unittest import mock

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from devstack.processes import free_port
from devstack.stack import SERVICES, Stack, StackPorts
from devstack.testing import MailCatcher, eventually
from notifications.settings import NotificationsSettings
from shared.contracts import InvoiceIssued, InvoiceLine, IssuedInvoiceCustomer, new_envelope
from shared.keystore import create_key_store
from shared.outbox import seal_envelope

pytestmark = pytest.mark.integration
INSTANCES = 2


async def test_instances_starting_together_migrate_their_database_once(
    infrastructure: Stack,
) -> None:
    """Two instances of a service run their migrations on a fresh database at the same moment
    (a Deployment of two replicas): both succeed and the database is at head once. Billing,
    whose history is the longest; every service's migrations go through the same lock."""
    base = infrastructure.database_url("x").rsplit("/", 1)[0]
    names = {"billing": f"billing_scale_{uuid.uuid4().hex[:8]}"}
    await asyncio.to_thread(infrastructure.create_databases, list(names.values()), suffixed=False)

    async def migrate(service: str, database: str) -> str | None:
        run = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"{service}.main",
            "migrate",
            env=os.environ
            | {
                f"{service.upper()}_ENVIRONMENT": "development",
                f"{service.upper()}_DATABASE_URL": f"{base}/{database}",
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(run.communicate(), 240)
        if run.returncode == 0:
            return None
        return f"{service} on {database}: exit {run.returncode}\n{output.decode()[-3000:]}"

    outcomes = await asyncio.gather(
        *(migrate(s, d) for s, d in names.items() for _ in range(INSTANCES))
    )
    failures = [outcome for outcome in outcomes if outcome is not None]
    assert not failures, "\n\n".join(failures)
    admin = infrastructure.admin_url().rsplit("/", 1)[0]
    for database in names.values():
        connection = await asyncpg.connect(f"{admin}/{database}")
        try:
            versions = await connection.fetch("SELECT version_num FROM alembic_version")
        finally:
            await connection.close()
        assert len(versions) == 1, f"{database}: {versions}"


@pytest.mark.system  # two instances started and fed: a run of a minute, in `make test-system`
async def test_two_instances_in_one_consumer_group_share_the_work_and_email_each_invoice_once(
    infrastructure: Stack, tmp_path: Path
) -> None:
    """Notifications as two processes in one consumer group: both send part of 60 invoices
    over 12 accounts (the group split the partitions), and each invoice is emailed once."""
    stack = Stack(
        var_dir=tmp_path,
        ports=StackPorts(smtp=infrastructure.ports.smtp, mail_web=infrastructure.ports.mail_web),
        postgres_admin_url=infrastructure.admin_url(),
        kafka_bootstrap=infrastructure.bootstrap_servers,
        service_ports={spec.name: free_port() for spec in SERVICES},
        topic_prefix=f"scale{uuid.uuid4().hex[:8]}.",
        database_suffix=f"_scale{uuid.uuid4().hex[:6]}",
    )
    await asyncio.to_thread(stack.create_topics)
    await asyncio.to_thread(stack.create_databases, ["notifications", "keystore"])
    await asyncio.to_thread(stack.migrate, "notifications")
    instances = []
    for _ in range(INSTANCES):  # the same service twice, each on a port of its own
        stack.service_ports["notifications"] = free_port()
        process = await asyncio.to_thread(stack.start_service, "notifications")
        instances.append((process, stack.service_url("notifications")))
    recipient = f"scale-{uuid.uuid4().hex[:8]}@buyer.example.com"
    try:
        with mock.patch.dict(os.environ, stack.service_env("notifications")):
            settings = NotificationsSettings()
        topic = settings.kafka.topic("invoice.issued")

        async def group_split_the_partitions() -> bool:
            # Healthy is not yet assigned: the second instance's join starts a rebalance.
            async with httpx.AsyncClient(timeout=10) as client:
                held = [
                    _assigned(topic, (await client.get(f"{url}/metrics")).text)
                    for _, url in instances
                ]
            return all(held) and not set.intersection(*held)

        await eventually(group_split_the_partitions, timeout=60, what="both instances assigned")
        numbers = await _produce_invoices(settings, recipient, count=60, accounts=12)
        mail = MailCatcher(stack.mail_url)
        await mail.wait_for(lambda ms: len([m for m in ms if recipient in m["to"]]) >= 60)
        await asyncio.sleep(3)  # a duplicate would arrive in this time
        subjects = [m["subject"].split()[1] for m in mail.to(recipient)]
        assert sorted(subjects) == sorted(numbers)
        async with httpx.AsyncClient(timeout=10) as client:
            sent = [
                _invoices_sent((await client.get(f"{url}/metrics")).text) for _, url in instances
            ]
        assert sum(sent) == 60, sent
        assert all(sent), f"one instance sent nothing: {sent}"
    finally:
        for process, _ in instances:
            process.stop()


def _assigned(topic: str, metrics: str) -> set[int]:
    """The topic's partitions this instance consumes, from its consumer-lag samples."""
    return {
        int(line.split('messaging_destination_partition_id="', 1)[1].split('"', 1)[0])
        for line in metrics.splitlines()
        if line.startswith("messaging_kafka_consumer_lag{")
        and f'messaging_destination_name="{topic}"' in line
    }


def _invoices_sent(metrics: str) -> int:
    """Invoice emails this instance sent, from its /metrics."""
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith("quittance_notifications_emails_total")
        and 'outcome="sent"' in line
        and 'kind="invoice"' in line
    )


async def _produce_invoices(
    settings: NotificationsSettings, recipient: str, *, count: int, accounts: int
) -> list[str]:
    """Sealed invoice.issued events, keyed by account as billing's relay sends them."""
    keys = create_key_store(settings.keystore)
    await keys.start()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    owners = [uuid.uuid4() for _ in range(accounts)]
    numbers = []
    try:
        for index in range(count):
            account = owners[index % accounts]
            number = f"SCALE-{index:04d}"
            event = InvoiceIssued(
                account_id=account,
                invoice_id=uuid.uuid4(),
                number=number,
                seller_name="Acme",
                customer=IssuedInvoiceCustomer(
                    customer_id=uuid.uuid4(), name="Bob", email=recipient
                ),
                currency="EUR",
                lines=[
                    InvoiceLine(
                        description="Work",
                        quantity=Decimal(1),
                        unit_price=Decimal(10),
                        amount=Decimal(10),
                    )
                ],
                total=Decimal(10),
                issue_date=date(2030, 1, 1),
                due_date=date(2030, 1, 31),
            )
            envelope = new_envelope(event, source="billing")
            body = seal_envelope(envelope, await keys.key_for_writing(account))
            await producer.send_and_wait(
                settings.kafka.topic("invoice.issued"),
                body,
                key=str(account).encode(),
                headers=[("content-type", b"application/json")],
            )
            numbers.append(number)
        return numbers
    finally:
        await producer.stop()
        await keys.close()
