"""Audit's account data map."""

from __future__ import annotations

from audit.models import AccessLogEntry
from shared.data_map import AccountDataMap, RetentionCategory, account_table

DATA_MAP = AccountDataMap(
    service="audit",
    tables=(
        account_table(
            AccessLogEntry,
            record_type="data_access",
            retention=RetentionCategory.ACCESS_TRAIL,
            exported=(
                "id",
                "account_id",
                "sequence",
                "event_id",
                "access_id",
                "actor",
                "actor_id",
                "actor_name",
                "purpose",
                "reason",
                "grant_id",
                "outcome",
                "resource_type",
                "resource_id",
                "accessed_at",
                "previous_hash",
                "entry_hash",
                "recorded_at",
            ),
            personal=("actor_name", "reason"),
            order_by=("sequence",),
        ),
    ),
)
