"""Every table of billing, from its domains: one metadata for migrations and the data map."""

from __future__ import annotations

from billing.accounts.models import Account, AppUser
from billing.auth.models import ApiKey, SignInFailure, UserRecoveryCode, WebSession
from billing.credit_notes.models import CreditNote, CreditNoteLine
from billing.customers.models import Customer, CustomerContact
from billing.database import BillingTable
from billing.deliveries.models import EmailDelivery
from billing.integrations.models import Integration
from billing.invoices.models import Invoice, InvoiceLine
from billing.legal.models import AccountLegalHold, LegalDisclosure
from billing.payments.models import (
    CustomerCredit,
    GatewayWebhook,
    Payment,
    PaymentCheckout,
    PaymentRefund,
)
from billing.rectification.models import ChangeRecord
from billing.recurring.models import RecurringInvoice, RecurringRun
from billing.staff_access.models import AccessGrant, StaffMember
from billing.statements.models import StatementRun
from billing.users.models import UserInvitation
from billing.webhooks.models import WebhookDelivery, WebhookEndpoint
from shared.idempotency import idempotency_table

# Answers kept to replay retried POSTs (shared.idempotency), in billing's metadata.
IdempotencyRecord = idempotency_table(BillingTable.metadata)

__all__ = [
    "AccessGrant",
    "Account",
    "AccountLegalHold",
    "ApiKey",
    "AppUser",
    "BillingTable",
    "ChangeRecord",
    "CreditNote",
    "CreditNoteLine",
    "Customer",
    "CustomerContact",
    "CustomerCredit",
    "EmailDelivery",
    "GatewayWebhook",
    "IdempotencyRecord",
    "Integration",
    "Invoice",
    "InvoiceLine",
    "LegalDisclosure",
    "Payment",
    "PaymentCheckout",
    "PaymentRefund",
    "RecurringInvoice",
    "RecurringRun",
    "SignInFailure",
    "StaffMember",
    "StatementRun",
    "UserInvitation",
    "UserRecoveryCode",
    "WebSession",
    "WebhookDelivery",
    "WebhookEndpoint",
]
