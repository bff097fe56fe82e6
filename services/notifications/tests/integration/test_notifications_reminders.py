"""Payment reminders, retries and bounces against the real database, broker and SMTP server,
with notifications' clock in the test's hand (no sleeping for days)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from babel.numbers import format_currency

from devstack.stack import Stack
from devstack.testing import MailCatcher, eventually, produce, read_events, running, sealed
from notifications.main import assemble
from notifications.services import NotificationsService
from notifications.settings import NotificationsSettings, SmtpSettings
from shared.contracts import (
    AccountMailSettingsChanged,
    AccountTerminated,
    CreditNoteIssued,
    InvoiceIssued,
    InvoiceLine,
    InvoicePaymentStatusChanged,
    InvoiceVoided,
    IssuedInvoiceCustomer,
    MailPresentation,
    QuietHours,
    ReminderSchedule,
    new_envelope,
)
from shared.telemetry import Telemetry, create_telemetry

pytestmark = pytest.mark.integration

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """The time notifications sees; only the test moves it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def settings(
    service_env: Callable[[str], dict[str, Any]], infrastructure: Stack
) -> NotificationsSettings:
    return NotificationsSettings(
        **service_env("notifications"),
        smtp=SmtpSettings(host="127.0.0.1", port=infrastructure.ports.smtp),
        resend_after_s=0.5,
        sweep_interval_s=0.2,
        reminder_interval_s=3600,  # the test runs reminders itself, at the times it chooses
    )


@pytest.fixture(scope="module")
def telemetry() -> Telemetry:
    return create_telemetry("notifications")


@pytest.fixture(scope="module")
async def service(
    settings: NotificationsSettings, clock: Clock, telemetry: Telemetry
) -> AsyncIterator[NotificationsService]:
    app, service = assemble(settings, clock=clock, telemetry=telemetry)
    async with running(app):
        yield service


OUTCOMES = ("sent", "deferred", "bounced", "suppressed")


def _emails(telemetry: Telemetry, kind: str, outcome: str) -> float:
    """Emails of a kind with an outcome, as the service's /metrics counts them."""
    labels = {"kind": kind, "outcome": outcome}
    return telemetry.registry.get_sample_value("quittance_notifications_emails_total", labels) or 0


async def _publish(settings: NotificationsSettings, data: Any, *, event: Any = None) -> Any:
    envelope = event or new_envelope(data, source="billing")
    await produce(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic(envelope.type),
        await sealed(envelope, settings.keystore),
        key=envelope.subject.encode(),
        headers=[("content-type", b"application/json")],
    )
    return envelope


async def _query(settings: NotificationsSettings, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def _invoice(account_id: uuid.UUID, email: str, *, due: date, total: str = "90") -> InvoiceIssued:
    return InvoiceIssued(
        account_id=account_id,
        invoice_id=uuid.uuid4(),
        number=f"INV-{uuid.uuid4().hex[:6]}",
        seller_name="Acme SA",
        customer=IssuedInvoiceCustomer(customer_id=uuid.uuid4(), name="Bob", email=email),
        currency="EUR",
        lines=[
            InvoiceLine(
                description="Work",
                quantity=Decimal(1),
                unit_price=Decimal(total),
                amount=Decimal(total),
            )
        ],
        total=Decimal(total),
        issue_date=due - timedelta(days=30),
        due_date=due,
    )


async def _account(
    settings: NotificationsSettings,
    schedule: ReminderSchedule,
    *,
    quiet: QuietHours | None = None,
    locale: str = "en-GB",
) -> uuid.UUID:
    account_id = uuid.uuid4()
    await _publish(
        settings,
        AccountMailSettingsChanged(
            account_id=account_id,
            account_name="Acme SA",
            presentation=MailPresentation(locale=locale, time_zone="Europe/Paris"),
            reminders=schedule,
            quiet_hours=quiet,
            changed_at=datetime.now(UTC),
        ),
    )
    return account_id


async def _noted(settings: NotificationsSettings, *invoices: InvoiceIssued) -> None:
    """Wait until notifications has the account's settings and the invoices."""

    async def all_there() -> bool:
        ids = [invoice.invoice_id for invoice in invoices]
        rows = await _query(
            settings,
            "SELECT count(*) FROM reminder_invoice r JOIN account_mail_settings s "
            "USING (account_id) WHERE r.invoice_id = ANY($1::uuid[])",
            ids,
        )
        return int(rows[0][0]) == len(ids)

    await eventually(all_there, timeout=20, what="the invoices noted for reminders")


async def _stages(settings: NotificationsSettings, *invoices: InvoiceIssued) -> list[int]:
    """The reminder stages sent for these invoices (other tests' invoices share the runner)."""
    rows = await _query(
        settings,
        "SELECT stage FROM reminder_sent WHERE invoice_id = ANY($1::uuid[]) "
        "ORDER BY sent_at, stage",
        [invoice.invoice_id for invoice in invoices],
    )
    return [row["stage"] for row in rows]


def _reminders(mail: MailCatcher, email: str) -> list[dict[str, Any]]:
    return [m for m in mail.to(email) if "Reminder" in m["subject"] or "Rappel" in m["subject"]]


@pytest.mark.clause("USE")
async def test_use_an_account_without_reminders_gets_none_and_holds_up_no_one_else(
    service: NotificationsService, settings: NotificationsSettings, clock: Clock
) -> None:
    """Most accounts set no schedule (and one can stop it): their invoices are never reminded
    of, and the run still reminds the others'."""
    silent = uuid.uuid4()
    await _publish(
        settings,
        AccountMailSettingsChanged(
            account_id=silent,
            account_name="Quiet Ltd",
            presentation=MailPresentation(),
            reminders=None,
            quiet_hours=None,
            changed_at=datetime.now(UTC),
        ),
    )
    reminded = await _account(settings, ReminderSchedule(on_due=True))
    never = _invoice(silent, f"n-{uuid.uuid4().hex[:6]}@example.com", due=date(2030, 1, 5))
    once = _invoice(reminded, f"o-{uuid.uuid4().hex[:6]}@example.com", due=date(2030, 1, 5))
    for invoice in (never, once):
        await _publish(settings, invoice)
    await _noted(settings, never, once)
    clock.now = datetime(2030, 1, 5, 12, tzinfo=UTC)
    await service.send_due_reminders()
    assert await _stages(settings, never) == []
    assert await _stages(settings, once) == [0]


@pytest.mark.clause("USE")
async def test_use_each_stage_is_sent_once_and_after_an_outage_only_the_latest(
    service: NotificationsService, settings: NotificationsSettings, clock: Clock, mail: MailCatcher
) -> None:
    """A schedule of 3 days before, on the due date, 7 days after, then weekly twice."""
    schedule = ReminderSchedule(
        days_before_due=[3], on_due=True, days_after_due=[7], repeat_every_days=7, repeat_limit=2
    )
    account_id = await _account(settings, schedule, locale="fr-FR")
    email = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    invoice = _invoice(account_id, email, due=date(2030, 1, 31))
    await _publish(settings, invoice)
    await _noted(settings, invoice)

    clock.now = datetime(2030, 1, 27, 12, tzinfo=UTC)  # 4 days before: nothing yet
    await service.send_due_reminders()
    assert await _stages(settings, invoice) == []
    clock.now = datetime(2030, 1, 28, 12, tzinfo=UTC)  # 3 days before
    # Two instances at once: the stage still goes once (row locks and its unique row).
    await asyncio.gather(service.send_due_reminders(), service.send_due_reminders())
    await service.send_due_reminders()
    assert await _stages(settings, invoice) == [-3], "once, however many runs"
    await mail.wait_for(lambda ms: len(_reminders(mail, email)) == 1)
    (first,) = _reminders(mail, email)
    assert first["subject"] == f"Rappel de paiement : facture {invoice.number} de Acme SA"
    assert "arrive à échéance le 31 janvier 2030" in first["text"]
    assert format_currency(Decimal(90), "EUR", locale="fr_FR") in first["text"]  # 90,00 €

    # Notifications was down from before the due date until 12 days after: the on-due and
    # 7-days-after stages are both past, and only the latest goes.
    clock.now = datetime(2030, 2, 12, 12, tzinfo=UTC)
    await service.send_due_reminders()
    await service.send_due_reminders()
    assert await _stages(settings, invoice) == [-3, 7], "the skipped on-due stage never goes"
    await mail.wait_for(lambda ms: len(_reminders(mail, email)) == 2)
    assert "il y a 12 jours" in _reminders(mail, email)[1]["text"]

    clock.now = datetime(2030, 2, 14, 12, tzinfo=UTC)  # the first weekly repeat (7 + 7)
    await service.send_due_reminders()
    clock.now = datetime(2030, 2, 21, 12, tzinfo=UTC)
    await service.send_due_reminders()
    clock.now = datetime(2030, 3, 30, 12, tzinfo=UTC)  # the repeats ran out
    await service.send_due_reminders()
    assert await _stages(settings, invoice) == [-3, 7, 14, 21]
    await mail.wait_for(lambda ms: len(_reminders(mail, email)) == 4)


@pytest.mark.clause("USE")
async def test_use_no_reminder_goes_in_the_accounts_quiet_hours(
    service: NotificationsService,
    settings: NotificationsSettings,
    clock: Clock,
    mail: MailCatcher,
    telemetry: Telemetry,
) -> None:
    """USE: quiet hours hold a reminder back; the reminder lag metric counts the wait."""
    account_id = await _account(
        settings, ReminderSchedule(on_due=True), quiet=QuietHours(start=time(21), end=time(8))
    )
    email = f"carl-{uuid.uuid4().hex[:8]}@example.com"
    invoice = _invoice(account_id, email, due=date(2030, 5, 10))
    await _publish(settings, invoice)
    await _noted(settings, invoice)
    clock.now = datetime(2030, 5, 10, 4, 30, tzinfo=UTC)  # 06:30 in Paris: quiet
    await service.send_due_reminders()
    assert await _stages(settings, invoice) == []
    lag = "quittance_notifications_reminder_lag"
    before = [telemetry.registry.get_sample_value(f"{lag}_{s}") or 0 for s in ("count", "sum")]
    clock.now = datetime(2030, 5, 10, 6, 0, tzinfo=UTC)  # 08:00 in Paris
    await service.send_due_reminders()
    assert await _stages(settings, invoice) == [0]
    after = [telemetry.registry.get_sample_value(f"{lag}_{s}") or 0 for s in ("count", "sum")]
    # Due from midnight in Paris, queued at 08:00 there: eight hours late.
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 8 * 3600]
    await mail.wait_for(lambda ms: len(_reminders(mail, email)) == 1)
    assert "Invoice" in _reminders(mail, email)[0]["text"]
    assert "is due today" in _reminders(mail, email)[0]["text"]


@pytest.mark.clause("USE")
async def test_use_reminders_stop_when_paid_voided_credited_or_the_account_terminated(
    service: NotificationsService, settings: NotificationsSettings, clock: Clock, mail: MailCatcher
) -> None:
    schedule = ReminderSchedule(on_due=True, repeat_every_days=1, repeat_limit=5)
    account_id = await _account(settings, schedule)
    email = f"dora-{uuid.uuid4().hex[:8]}@example.com"
    due = date(2030, 6, 10)
    paid, voided, credited, open_ = (_invoice(account_id, email, due=due) for _ in range(4))
    for invoice in (paid, voided, credited, open_):
        await _publish(settings, invoice)
    await _noted(settings, paid, voided, credited, open_)
    await _publish(
        settings,
        InvoicePaymentStatusChanged(
            account_id=account_id,
            invoice_id=paid.invoice_id,
            number=paid.number,
            status="paid",
            previous_status="issued",
            amount_paid=paid.total,
            amount_due=Decimal(0),
        ),
    )
    await _publish(
        settings,
        InvoiceVoided(
            account_id=account_id,
            invoice_id=voided.invoice_id,
            number=voided.number,
            voided_at=datetime.now(UTC),
            reason="issued by mistake",
        ),
    )
    await _publish(
        settings,
        CreditNoteIssued(
            account_id=account_id,
            credit_note_id=uuid.uuid4(),
            number="CN-000001",
            invoice_id=credited.invoice_id,
            invoice_number=credited.number,
            reason="cancelled order",
            seller_name="Acme SA",
            customer=credited.customer,
            currency="EUR",
            lines=credited.lines,
            subtotal=credited.total,
            tax_total=Decimal(0),
            total=credited.total,
            issue_date=due,
        ),
    )

    async def stopped() -> bool:
        rows = await _query(
            settings,
            "SELECT count(*) FROM reminder_invoice WHERE account_id = $1 AND state <> 'OPEN'",
            account_id,
        )
        return int(rows[0][0]) == 3

    await eventually(stopped, timeout=20, what="paid, void and credited invoices stopped")
    clock.now = datetime(2030, 6, 10, 12, tzinfo=UTC)
    await service.send_due_reminders()
    assert await _stages(settings, paid, voided, credited, open_) == [0], "only the one owed"
    await mail.wait_for(lambda ms: len(_reminders(mail, email)) == 1)
    assert open_.number in _reminders(mail, email)[0]["subject"]

    await _publish(
        settings,
        AccountTerminated(
            account_id=account_id,
            account_name="Acme SA",
            owner_email="owner@example.com",
            terminated_at=datetime.now(UTC),
        ),
    )

    async def terminated() -> bool:
        rows = await _query(
            settings, "SELECT state FROM reminder_invoice WHERE invoice_id = $1", open_.invoice_id
        )
        return rows[0]["state"] == "TERMINATED"

    await eventually(terminated, timeout=20, what="the terminated account's reminders stopped")
    clock.now = datetime(2030, 6, 11, 12, tzinfo=UTC)  # the next daily repeat
    await service.send_due_reminders()
    assert await _stages(settings, open_) == [0], "nothing after the termination"


@pytest.mark.clause("USE")
async def test_use_a_temporary_refusal_is_retried_and_a_queued_reminder_of_a_paid_invoice_never_goes(  # noqa: E501
    service: NotificationsService,
    settings: NotificationsSettings,
    clock: Clock,
    mail: MailCatcher,
    telemetry: Telemetry,
) -> None:
    """The mail server defers `defer…` addresses (451): the reminder waits for its retry; the
    invoice is paid meanwhile, and the waiting reminder is cancelled, not sent. /metrics counts
    each deferral."""
    deferred_before = _emails(telemetry, "payment-reminder", "deferred")
    account_id = await _account(settings, ReminderSchedule(on_due=True))
    email = f"defer-{uuid.uuid4().hex[:8]}@example.com"
    invoice = _invoice(account_id, email, due=date(2030, 7, 1))
    await _publish(settings, invoice)
    await _noted(settings, invoice)
    clock.now = datetime(2030, 7, 1, 12, tzinfo=UTC)
    await service.send_due_reminders()
    assert await _stages(settings, invoice) == [0]
    rows = await _query(
        settings,
        "SELECT status, attempts, next_attempt_at FROM outgoing_email "
        "WHERE document_id = $1 AND kind = 'PAYMENT_REMINDER'",
        invoice.invoice_id,
    )
    assert [(r["status"], r["attempts"]) for r in rows] == [("QUEUED", 1)]
    assert rows[0]["next_attempt_at"] == clock.now + timedelta(seconds=30)

    clock.now += timedelta(seconds=31)  # due again: tried again, refused again, waits longer
    await service.deliver_due()
    rows = await _query(
        settings,
        "SELECT attempts, next_attempt_at FROM outgoing_email WHERE document_id = $1 "
        "AND kind = 'PAYMENT_REMINDER'",
        invoice.invoice_id,
    )
    assert rows[0]["attempts"] >= 2
    assert rows[0]["next_attempt_at"] > clock.now + timedelta(seconds=60)
    deferrals = _emails(telemetry, "payment-reminder", "deferred") - deferred_before
    assert deferrals == rows[0]["attempts"], "each refused attempt counted once"

    await _publish(
        settings,
        InvoicePaymentStatusChanged(
            account_id=account_id,
            invoice_id=invoice.invoice_id,
            number=invoice.number,
            status="paid",
            previous_status="issued",
            amount_paid=invoice.total,
            amount_due=Decimal(0),
        ),
    )

    async def cancelled() -> bool:
        rows = await _query(
            settings,
            "SELECT status, mime IS NULL AS dropped FROM outgoing_email WHERE document_id = $1 "
            "AND kind = 'PAYMENT_REMINDER'",
            invoice.invoice_id,
        )
        return [(r["status"], r["dropped"]) for r in rows] == [("CANCELLED", True)]

    await eventually(cancelled, timeout=20, what="the waiting reminder cancelled")

    async def reminder_statuses() -> list[str] | None:
        # The invoice's own mail to the deferring address is retried meanwhile, and its
        # statuses share the account's key: read them all, keep the reminder's.
        statuses = await read_events(
            settings.kafka.bootstrap_servers,
            settings.kafka.topic("email.status_changed"),
            count=1000,
            key=str(account_id),
            timeout=2,
        )
        mine = [e["data"]["status"] for e in statuses if e["data"]["kind"] == "payment-reminder"]
        return mine if mine and mine[-1] == "cancelled" else None

    told = await eventually(reminder_statuses, timeout=20, what="the cancellation announced")
    assert told[0] == "deferred"
    assert told.count("cancelled") == 1


@pytest.mark.clause("USE")
async def test_use_a_bounced_address_gets_no_more_mail_until_corrected(
    service: NotificationsService,
    settings: NotificationsSettings,
    mail: MailCatcher,
    telemetry: Telemetry,
) -> None:
    """The mail server refuses `bounce…` addresses for good (550); /metrics counts the bounce
    and the suppression."""
    before = {outcome: _emails(telemetry, "invoice", outcome) for outcome in OUTCOMES}
    account_id = uuid.uuid4()
    bounced = f"bounce-{uuid.uuid4().hex[:8]}@example.com"
    first = _invoice(account_id, bounced, due=date(2030, 8, 1))
    await _publish(settings, first)

    async def status_of(invoice: InvoiceIssued) -> list[tuple[str, int]]:
        rows = await _query(
            settings,
            "SELECT status, attempts FROM outgoing_email WHERE document_id = $1",
            invoice.invoice_id,
        )
        return [(r["status"], r["attempts"]) for r in rows]

    async def bounced_once() -> bool:
        return await status_of(first) == [("BOUNCED", 1)]

    await eventually(bounced_once, timeout=20, what="the invoice bounced, not retried")
    recorded = await _query(
        settings, "SELECT reason FROM bounced_address WHERE address = $1", bounced
    )
    assert [r["reason"] for r in recorded] == ["SMTP 550"]

    second = _invoice(account_id, bounced.upper(), due=date(2030, 8, 1))  # same address
    await _publish(settings, second)

    async def suppressed() -> bool:
        return await status_of(second) == [("SUPPRESSED", 0)]

    await eventually(suppressed, timeout=20, what="the next mail to it held back, never tried")

    corrected = f"bob-{uuid.uuid4().hex[:8]}@example.com"  # the account corrects the address
    third = _invoice(account_id, corrected, due=date(2030, 8, 1))
    await _publish(settings, third)
    await mail.wait_for(lambda ms: any(corrected in m["to"] for m in ms))
    statuses = await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("email.status_changed"),
        count=3,
        key=str(account_id),
        keystore=settings.keystore,
    )
    assert [(e["data"]["status"], e["data"]["recipient"]) for e in statuses] == [
        ("bounced", bounced),
        ("suppressed", bounced.upper()),
        ("sent", corrected),
    ]
    counted = {o: _emails(telemetry, "invoice", o) - before[o] for o in OUTCOMES}
    assert counted["bounced"] == 1
    assert counted["suppressed"] == 1
    assert counted["sent"] >= 1, "the corrected address's invoice (others may go meanwhile)"


@pytest.mark.clause("USE")
async def test_use_mail_reads_in_the_accounts_settings_when_the_event_carries_none(
    service: NotificationsService,
    settings: NotificationsSettings,
    mail: MailCatcher,
    clock: Clock,
) -> None:
    """A security notice has no snapshot: it follows the account's settings as billing said."""
    account_id = await _account(settings, ReminderSchedule(on_due=True), locale="de-DE")

    async def settings_kept() -> bool:
        rows = await _query(
            settings, "SELECT 1 FROM account_mail_settings WHERE account_id = $1", account_id
        )
        return bool(rows)

    # The settings travel on their own topic: the invoice must not overtake them here.
    await eventually(settings_kept, timeout=20, what="the account's mail settings kept")
    email = f"erik-{uuid.uuid4().hex[:8]}@example.com"
    invoice = _invoice(account_id, email, due=date(2030, 9, 1))
    await _publish(settings, invoice)
    await _noted(settings, invoice)
    await mail.wait_for(lambda ms: any(email in m["to"] for m in ms))
    (issued,) = mail.to(email)
    assert issued["subject"].startswith("Rechnung "), "no snapshot: the account's language"
    assert issued["html"] is not None
    assert '<html lang="de">' in issued["html"]
