"""Notifications' account data map."""

from __future__ import annotations

from notifications.models import (
    AccountMailSettings,
    BouncedAddress,
    CertificateRecipient,
    OutgoingEmail,
    ReminderInvoice,
    ReminderSent,
)
from shared.data_map import AccountDataMap, RetentionCategory, account_table

DATA_MAP = AccountDataMap(
    service="notifications",
    tables=(
        account_table(
            OutgoingEmail,
            record_type="email",
            retention=RetentionCategory.DELIVERY_LOG,
            exported=(
                "id",
                "account_id",
                "kind",
                "message_id",
                "recipient",
                "subject",
                "status",
                "saga_id",
                "document_id",
                "attachment_name",
                "attachment_sha256",
                "attempts",
                "created_at",
                "sent_at",
            ),
            withheld={
                "mime": "the message itself: kept only until it leaves the queue",
                "last_error": "the mail server's diagnostics, not the customer's record",
                "next_attempt_at": "when the next try is due: working state",
                "attachment_transfer_id": "how the bundle reached notifications",
                "attachment_chunks": "how the bundle reached notifications",
            },
            personal=("recipient", "subject", "mime", "last_error"),
            kept_from="created_at",
            order_by=("created_at", "id"),
        ),
        account_table(
            BouncedAddress,
            record_type="bounced_address",
            retention=RetentionCategory.DELIVERY_LOG,
            exported=("account_id", "address", "reason", "bounced_at"),
            personal=("address", "reason"),
            kept_from="bounced_at",
            order_by=("address",),
        ),
        account_table(
            ReminderSent,
            record_type="payment_reminder",
            # Which reminders an invoice had: what stops a second one, kept with the invoice.
            retention=RetentionCategory.CONTRACT,
            exported=("invoice_id", "stage", "account_id", "email_id", "sent_at"),
            order_by=("invoice_id", "stage"),
        ),
        account_table(
            ReminderInvoice,
            record_type="reminder_invoice",
            retention=RetentionCategory.CONTRACT,
            exported=(
                "invoice_id",
                "account_id",
                "number",
                "due_date",
                "currency",
                "total",
                "credited",
                "paid",
                "state",
                "last_stage",
            ),
            withheld={
                "customer_name": "billing's record, copied to address reminders (exported there)",
                "customer_email": "billing's record, copied to address reminders (exported there)",
            },
            personal=("customer_name", "customer_email"),
            order_by=("invoice_id",),
        ),
        account_table(
            AccountMailSettings,
            record_type="mail_settings",
            retention=RetentionCategory.CONTRACT,
            exported=(
                "account_id",
                "locale",
                "time_zone",
                "logo_url",
                "reminders",
                "quiet_start",
                "quiet_end",
                "changed_at",
            ),
            withheld={
                "account_name": "billing's record, copied to sign mail (exported there)",
                "terminated": "working state: whether reminders stopped for termination",
            },
            personal=("account_name",),
            order_by=("account_id",),
        ),
        account_table(
            CertificateRecipient,
            record_type="certificate_recipient",
            # Not purged with the rest: the certificate is sent after every purge, and this
            # row goes with it (services.py, _forget_certificate_delivery).
            retention=RetentionCategory.CERTIFICATE_DELIVERY,
            withheld={
                column: "where the purge certificate goes; deleted once it is sent"
                for column in CertificateRecipient.model_fields
            },
            personal=("address", "account_name"),
            order_by=("account_id",),
        ),
    ),
)
