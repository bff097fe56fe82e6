"""What an API key can be limited to: reading or changing one area of the API."""

from __future__ import annotations

from enum import StrEnum

# An area is the first segment of its routes' paths: a new route falls under its area's scope.
SCOPE_AREAS = (
    "account",
    "users",
    "customers",
    "invoices",
    "credit-notes",
    "integrations",
    "payments",
    "recurring-invoices",
    "statements",
    "access-grants",
    "api-keys",
    "session",
    "sessions",
    "webhook-endpoints",
    "email-deliveries",
)


class ApiKeyScope(StrEnum):
    """Reading (safe methods) or changing (the others) one area."""

    ACCOUNT_READ = "account:read"
    ACCOUNT_WRITE = "account:write"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    INVOICES_READ = "invoices:read"
    INVOICES_WRITE = "invoices:write"
    CREDIT_NOTES_READ = "credit-notes:read"
    CREDIT_NOTES_WRITE = "credit-notes:write"
    INTEGRATIONS_READ = "integrations:read"
    INTEGRATIONS_WRITE = "integrations:write"
    PAYMENTS_READ = "payments:read"
    PAYMENTS_WRITE = "payments:write"  # refunds
    RECURRING_INVOICES_READ = "recurring-invoices:read"
    RECURRING_INVOICES_WRITE = "recurring-invoices:write"
    STATEMENTS_READ = "statements:read"  # a customer's invoices and credit notes, summed
    STATEMENTS_WRITE = "statements:write"
    ACCESS_GRANTS_READ = "access-grants:read"
    ACCESS_GRANTS_WRITE = "access-grants:write"
    API_KEYS_READ = "api-keys:read"
    API_KEYS_WRITE = "api-keys:write"
    SESSIONS_READ = "sessions:read"
    SESSIONS_WRITE = "sessions:write"
    SESSION_READ = "session:read"
    SESSION_WRITE = "session:write"
    WEBHOOK_ENDPOINTS_READ = "webhook-endpoints:read"
    WEBHOOK_ENDPOINTS_WRITE = "webhook-endpoints:write"
    EMAIL_DELIVERIES_READ = "email-deliveries:read"  # the delivery log (it has nothing to write)
    EMAIL_DELIVERIES_WRITE = "email-deliveries:write"


def scope_for(route_path: str, *, changes: bool) -> str:
    """The scope a call needs: its area (the path's first segment), to read or to write."""
    area = route_path.strip("/").split("/", 1)[0]
    return f"{area}:{'write' if changes else 'read'}"
