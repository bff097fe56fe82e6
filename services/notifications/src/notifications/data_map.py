"""Notifications' account data map."""

from __future__ import annotations

from notifications.models import OutgoingEmail
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
                "attachment_name",
                "attachment_sha256",
                "attempts",
                "created_at",
                "sent_at",
            ),
            withheld={
                "mime": "the message itself: kept only until sent, its content is billing's",
                "last_error": "the mail server's diagnostics, not the customer's record",
                "attachment_transfer_id": "how the bundle reached notifications",
                "attachment_chunks": "how the bundle reached notifications",
            },
            personal=("recipient", "subject", "mime", "last_error"),
            order_by=("created_at", "id"),
        ),
    ),
)
