"""Billing's account data map: every table holding account data, in purge order."""

from __future__ import annotations

from billing.models import (
    AccessGrant,
    Account,
    ApiKey,
    AppUser,
    Customer,
    Invoice,
    InvoiceLine,
    SignInFailure,
    UserInvitation,
    WebSession,
)
from shared.data_map import AccountDataMap, RetentionCategory, account_table

CONTRACT = RetentionCategory.CONTRACT

DATA_MAP = AccountDataMap(
    service="billing",
    tables=(
        account_table(
            InvoiceLine,
            retention=CONTRACT,
            exported=(
                "id",
                "invoice_id",
                "account_id",
                "position",
                "description",
                "quantity",
                "unit_price",
                "amount",
            ),
            personal=("description",),
            order_by=("invoice_id", "position"),
        ),
        account_table(
            Invoice,
            retention=CONTRACT,
            exported=(
                "id",
                "account_id",
                "customer_id",
                "number",
                "status",
                "currency",
                "total",
                "issue_date",
                "due_date",
                "created_at",
                "issued_at",
            ),
            order_by=("created_at", "id"),
        ),
        account_table(
            Customer,
            retention=CONTRACT,
            exported=("id", "account_id", "name", "email", "address", "created_at"),
            personal=("name", "email", "address"),
            order_by=("created_at", "id"),
        ),
        account_table(
            AccessGrant,
            retention=CONTRACT,
            exported=(
                "id",
                "account_id",
                "staff_id",
                "purpose",
                "reason",
                "granted_by_user_id",
                "expires_at",
                "revoked_at",
                "created_at",
            ),
            personal=("reason",),
            order_by=("created_at", "id"),
        ),
        account_table(
            ApiKey,
            retention=RetentionCategory.CREDENTIALS,
            exported=("id", "account_id", "user_id", "staff_id", "created_at", "revoked_at"),
            withheld={"key_hash": "a credential's hash is never handed out"},
            order_by=("created_at", "id"),
        ),
        account_table(
            WebSession,
            record_type="session",
            retention=RetentionCategory.REQUEST_METADATA,
            exported=(
                "id",
                "account_id",
                "user_id",
                "created_at",
                "last_seen_at",
                "expires_at",
                "ended_at",
            ),
            withheld={
                "token_hash": "a credential's hash is never handed out",
                "csrf_hash": "a credential's hash is never handed out",
            },
            order_by=("created_at", "id"),
        ),
        account_table(
            SignInFailure,
            retention=RetentionCategory.REQUEST_METADATA,
            exported=("id", "account_id", "user_id", "address", "created_at"),
            personal=("address",),
            order_by=("created_at", "id"),
        ),
        account_table(
            UserInvitation,
            retention=CONTRACT,
            exported=("id", "account_id", "user_id", "expires_at", "accepted_at", "created_at"),
            withheld={"token_hash": "a credential's hash is never handed out"},
            order_by=("created_at", "id"),
        ),
        account_table(
            AppUser,
            record_type="user",
            retention=CONTRACT,
            exported=(
                "id",
                "account_id",
                "name",
                "email",
                "role",
                "status",
                "created_at",
                "removed_at",
            ),
            withheld={"password_hash": "a credential's hash is never handed out"},
            personal=("name", "email"),
            order_by=("created_at", "id"),
        ),
        account_table(
            Account,
            retention=CONTRACT,
            account_column="id",
            exported=("id", "name", "plan", "status", "created_at", "terminated_at"),
            withheld={"next_invoice_number": "an internal counter, shown by the invoice numbers"},
            personal=("name",),
        ),
    ),
    not_account_data={
        "staff_member": "Quittance's own employees, not a customer's data",
    },
)
