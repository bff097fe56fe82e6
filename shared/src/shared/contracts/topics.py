"""Every topic, who writes it and who reads it; one event type per topic, keyed by account id.

A topic's producers are declared: the dispatcher dead-letters an event whose source is not one
of them. The saga's replies (slices, purge confirmations) are written by each participant, and
the producer, not a payload field, says which participant answered.
"""

from __future__ import annotations

from dataclasses import dataclass

DEAD_LETTER_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic:
    """A topic: its name (= the event type it carries), producers, consumers and purpose."""

    name: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    purpose: str


TOPICS: tuple[Topic, ...] = (
    Topic(
        "invoice.issued",
        ("billing",),
        ("notifications", "billing"),
        "An invoice was issued; email it (and send it to webhook endpoints).",
    ),
    Topic(
        "credit_note.issued",
        ("billing",),
        ("notifications", "billing"),
        "A credit note corrected an issued invoice; email it.",
    ),
    Topic(
        "invoice.voided",
        ("billing",),
        ("notifications", "billing"),
        "An issued invoice was voided: it is no longer due (for reminders and webhooks).",
    ),
    Topic(
        "statement.issued",
        ("billing",),
        ("notifications",),
        "A customer's monthly statement; email it with its PDF.",
    ),
    Topic(
        "payment.received",
        ("billing",),
        ("notifications", "billing"),
        "A payment confirmed by the gateway's signed webhook (for receipts and webhooks).",
    ),
    Topic(
        "payment.refunded",
        ("billing",),
        ("billing",),
        "A refund confirmed by the gateway's signed webhook (for notices and webhooks).",
    ),
    Topic(
        "invoice.payment_status_changed",
        ("billing",),
        ("notifications", "billing"),
        "An invoice became partially paid, paid, or owed again (reminders stop or resume).",
    ),
    Topic(
        "data.accessed",
        ("billing", "retention", "notifications", "audit"),
        ("audit",),
        "Staff or a third party read customer data (retention: an export link was used; any "
        "service: an operator sent one of the account's dead letters back).",
    ),
    Topic("user.invited", ("billing",), ("notifications",), "A colleague was invited; email it."),
    Topic(
        "user.new_device_signed_in",
        ("billing",),
        ("notifications",),
        "A sign-in from a new browser or system; send the user a security notice.",
    ),
    Topic(
        "details.changed",
        ("billing",),
        ("notifications",),
        "Details were corrected; tell the owner or the user when the change needs a notice.",
    ),
    Topic(
        "account.terminated",
        ("billing",),
        ("retention", "notifications"),
        "Start the termination saga; reminders stop at once; note where the certificate goes.",
    ),
    Topic(
        "account.mail_settings_changed",
        ("billing",),
        ("notifications",),
        "How the account's mail reads (language, time zone, logo) and its reminder schedule.",
    ),
    Topic(
        "email.status_changed",
        ("notifications",),
        ("billing",),
        "An email was sent, deferred, bounced or suppressed: the account's delivery log.",
    ),
    Topic(
        "export.requested",
        ("retention",),
        ("billing", "notifications", "audit"),
        "Each service writes its slice of the account to the export store.",
    ),
    Topic(
        "export.slice_chunk",
        ("billing", "notifications", "audit"),
        ("retention",),
        "A piece of a participant's CSV slice (sealed with the account's key).",
    ),
    Topic(
        "export.slice_written",
        ("billing", "notifications", "audit"),
        ("retention",),
        "A participant sent its whole slice.",
    ),
    Topic(
        "export.bundle_chunk",
        ("retention",),
        ("notifications",),
        "A piece of the assembled bundle (sealed with the account's key).",
    ),
    Topic("export.assembled", ("retention",), ("notifications",), "Send the CSV bundle."),
    Topic("export.delivered", ("notifications",), ("retention",), "The bundle was emailed."),
    Topic(
        "purge.requested",
        ("retention",),
        ("billing", "notifications", "audit"),
        "Delete everything about the account.",
    ),
    Topic(
        "purge.completed",
        ("billing", "notifications", "audit"),
        ("retention",),
        "A service confirms its purge.",
    ),
    Topic(
        "legal_hold.placed",
        ("billing",),
        ("retention", "notifications", "audit"),
        "A legal hold: nothing of the account may be purged until it is released (LAW).",
    ),
    Topic(
        "legal_hold.released",
        ("billing",),
        ("retention", "notifications", "audit"),
        "A legal hold was released; a termination waiting for it goes on.",
    ),
    Topic(
        "account.purged",
        ("retention",),
        ("notifications", "audit"),
        "The signed purge certificate was issued: email it to the owner; chain it in the trail.",
    ),
    Topic(
        "access_grant.changed",
        ("billing",),
        ("audit",),
        "A staff access grant was opened or revoked: in the trail, and what reads are checked by.",
    ),
    Topic(
        "audit.alert_raised",
        ("audit",),
        (),
        "Audit saw something a person must look at (the ops dashboard shows it, issue 12).",
    ),
    Topic(
        "account.plan_changed",
        ("billing",),
        ("retention",),
        "The account's plan was set or changed: how long each kind of its data is kept.",
    ),
    Topic(
        "retention.sweep_requested",
        ("retention",),
        ("billing", "notifications"),
        "Delete the account's rows past the plan's time, or count them in a dry run.",
    ),
    Topic(
        "retention.sweep_reported",
        ("billing", "notifications"),
        ("retention",),
        "A service swept the account: rows per table, deleted or that would be.",
    ),
)


def consumers_of(name: str) -> tuple[str, ...]:
    """The services that read a topic."""
    return next(topic.consumers for topic in TOPICS if topic.name == name)


def dead_letter_topic(name: str) -> str:
    """Return the dead-letter topic of a topic."""
    return f"{name}{DEAD_LETTER_SUFFIX}"
