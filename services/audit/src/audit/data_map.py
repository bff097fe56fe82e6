"""Audit's account data map: the account's entries and their personal parts (ACCESS_TRAIL)."""

from __future__ import annotations

from audit.models import AuditEntry, AuditPersonal, GrantMark
from shared.data_map import AccountDataMap, RetentionCategory, account_table

BY_REFERENCE = "names the account only by a keyed hash, and outlives it as proof"

DATA_MAP = AccountDataMap(
    service="audit",
    tables=(
        account_table(
            AuditPersonal,
            record_type="data_access_personal",
            retention=RetentionCategory.ACCESS_TRAIL,
            exported=("global_seq", "account_id", "salt", "actor_name", "reason"),
            personal=("actor_name", "reason"),
            order_by=("global_seq",),
        ),
        account_table(
            AuditEntry,
            record_type="data_access",
            retention=RetentionCategory.ACCESS_TRAIL,
            exported=tuple(AuditEntry.model_fields),  # every column: nothing personal
            order_by=("account_seq",),
        ),
        account_table(
            GrantMark,
            retention=RetentionCategory.ACCESS_TRAIL,
            withheld={
                column: "a copy of billing's access grant, exported there"
                for column in GrantMark.model_fields
            },
        ),
    ),
    not_account_data={
        "audit_alert": "names a staff member and a grant by id, no account",
        "chain_link": BY_REFERENCE,
        "purged_account": BY_REFERENCE,
        "purge_record": "the signed purge certificate: " + BY_REFERENCE,
        "audit_checkpoint": "signs the chains' heads; names accounts only by keyed hashes",
    },
)
