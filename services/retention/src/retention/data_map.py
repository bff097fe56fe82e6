"""Retention's account data map: its saga's working data, gone with the certificate."""

from __future__ import annotations

from retention.models import AccountPlan, TerminationSaga
from shared.data_map import AccountDataMap, RetentionCategory, account_table

WORKING_DATA = "the termination's working data, not the customer's record"

DATA_MAP = AccountDataMap(
    service="retention",
    tables=(
        account_table(
            TerminationSaga,
            retention=RetentionCategory.TERMINATION,
            withheld={column: WORKING_DATA for column in TerminationSaga.model_fields},
            personal=("account_name", "owner_email"),
        ),
        account_table(
            AccountPlan,
            retention=RetentionCategory.TERMINATION,
            withheld={
                column: "a copy of the plan billing exports, kept for the sweeps' cutoffs"
                for column in AccountPlan.model_fields
            },
        ),
    ),
    not_account_data={
        "purge_certificate": "names the account only by a keyed hash, and outlives it as proof",
        "retention_sweep": "a sweep's totals over every account: names none",
        "sweep_tally": "a sweep's totals per table over every account: names none",
    },
)
