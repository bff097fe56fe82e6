"""Event payloads: past-tense facts, versioned, each field described, personal fields marked."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.envelope import EventData, personal_data


class AccessPurpose(StrEnum):
    """The closed list of purposes for which customer data may be read (PURPOSE)."""

    SUPPORT = "support"
    BILLING_OPERATIONS = "billing-operations"
    LEGAL = "legal"
    SECURITY = "security"
    CUSTOMER_SELF_SERVICE = "customer-self-service"
    INTEGRATION = "integration"


class AccessActor(StrEnum):
    """Who read the data: a staff member, a third-party integration, or a legal disclosure."""

    STAFF = "staff"
    INTEGRATION = "integration"
    LEGAL = "legal"


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IssuedInvoiceCustomer(_Part):
    """The invoiced customer as the invoice was issued to them."""

    customer_id: UUID = Field(description="Billing's customer id.")
    name: str = personal_data("Customer's name as printed on the invoice.")
    email: str = personal_data("Address the invoice is sent to.")


class InvoiceLine(_Part):
    """One line of an issued invoice."""

    description: str = personal_data("Line text; user-submitted, may name people.")
    quantity: Decimal = Field(description="Quantity, a decimal string.")
    unit_price: Decimal = Field(description="Price per unit in the invoice currency.")
    amount: Decimal = Field(
        description="quantity x unit_price, rounded to the currency's minor unit."
    )


class InvoiceIssued(EventData):
    """An invoice was issued: it has a number and is to be sent to the customer."""

    event_type = "invoice.issued"

    invoice_id: UUID = Field(description="Billing's invoice id.")
    number: str = Field(description="Gapless per-account invoice number.")
    seller_name: str = personal_data("The account's company name, the invoice's sender.")
    customer: IssuedInvoiceCustomer = Field(description="Who the invoice is for.")
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code.")
    lines: list[InvoiceLine] = Field(min_length=1, description="The invoice lines.")
    total: Decimal = Field(description="Sum of line amounts.")
    issue_date: date = Field(description="Date of issue.")
    due_date: date = Field(description="Payment due date.")


class AccountTerminated(EventData):
    """The account owner terminated the contract: export, deliver, then purge (TERMINATION)."""

    event_type = "account.terminated"

    account_name: str = personal_data("Company name, for the export's covering email.")
    owner_email: str = personal_data("Where the export is sent.")
    terminated_at: datetime = Field(description="When the owner terminated.")


class DataAccessed(EventData):
    """Someone other than the customer read customer data (STAFF-ACCESS, INTEGRATIONS, PURPOSE)."""

    event_type = "data.accessed"

    access_id: UUID = Field(description="Unique id of this access.")
    actor: AccessActor = Field(description="Kind of reader.")
    actor_id: str = Field(description="Staff member or integration id.")
    actor_name: str = personal_data("Name of the staff member or integration.")
    purpose: AccessPurpose = Field(description="Why the data was read, from the closed list.")
    reason: str = Field(description="Ticket or reason given on the grant.")
    grant_id: UUID | None = Field(description="Access grant that allowed the read.")
    resource_type: str = Field(description="What was read, e.g. customer.")
    resource_id: str = Field(description="Id of what was read.")
    accessed_at: datetime = Field(description="When it was read.")


class ExportRequested(EventData):
    """Retention asks every service to write its slice of the account's records."""

    event_type = "export.requested"

    saga_id: UUID = Field(description="The termination saga.")
    export_key: str = Field(description="Folder in the export store for this export.")


class ExportFile(_Part):
    """One file a service wrote into the export store."""

    name: str = Field(description="File name inside the service's slice folder.")
    record_type: str = Field(description="Kind of record, e.g. invoice.")
    records: int = Field(ge=0, description="Records in the file.")
    sha256: str = Field(description="Hex SHA-256 of the file.")


class ExportSliceWritten(EventData):
    """A service wrote its slice of an account's records to the export store."""

    event_type = "export.slice_written"

    saga_id: UUID = Field(description="The termination saga.")
    service: str = Field(description="The service that wrote the slice.")
    files: list[ExportFile] = Field(description="What it wrote.")


class ExportAssembled(EventData):
    """Retention assembled the CSV bundle; notifications sends it to the customer."""

    event_type = "export.assembled"

    saga_id: UUID = Field(description="The termination saga.")
    bundle_key: str = Field(description="Path of the bundle inside the export store.")
    sha256: str = Field(description="Hex SHA-256 of the bundle.")
    account_name: str = personal_data("Company name for the covering email.")
    recipient_email: str = personal_data("Where the bundle is sent.")


class ExportDelivered(EventData):
    """Notifications handed the export email to the mail server."""

    event_type = "export.delivered"

    saga_id: UUID = Field(description="The termination saga.")
    message_id: str = Field(description="Message-ID of the email that carried the export.")


class PurgeRequested(EventData):
    """Retention asks every service to delete everything about the account."""

    event_type = "purge.requested"

    saga_id: UUID = Field(description="The termination saga.")


class PurgeCompleted(EventData):
    """A service deleted everything it held about the account."""

    event_type = "purge.completed"

    saga_id: UUID = Field(description="The termination saga.")
    service: str = Field(description="The service that purged.")
    rows_deleted: int = Field(ge=0, description="Rows it deleted.")


class AccountPurged(EventData):
    """Every service confirmed the purge; the certificate is kept by retention."""

    event_type = "account.purged"

    saga_id: UUID = Field(description="The termination saga.")
    certificate_id: UUID = Field(description="The purge certificate retention issued.")
    services: list[str] = Field(description="Services that confirmed.")


EVENT_TYPES: dict[str, type[EventData]] = {
    model.event_type: model
    for model in (
        InvoiceIssued,
        AccountTerminated,
        DataAccessed,
        ExportRequested,
        ExportSliceWritten,
        ExportAssembled,
        ExportDelivered,
        PurgeRequested,
        PurgeCompleted,
        AccountPurged,
    )
}
