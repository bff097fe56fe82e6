"""Event payloads: past-tense facts, versioned, each field described, personal fields marked."""

from __future__ import annotations

from datetime import date, datetime, time
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
    """Who read the data: a staff member, a third-party integration, a legal disclosure, or the
    holder of a termination's export link."""

    STAFF = "staff"
    INTEGRATION = "integration"
    LEGAL = "legal"
    EXPORT_LINK = "export-link"  # whoever held the signed link to the account's export


class AccessOutcome(StrEnum):
    """Whether a read of customer data was allowed or refused (STAFF-ACCESS)."""

    GRANTED = "granted"
    REFUSED = "refused"


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The languages the account's mail is written in: billing accepts no other (a contract, so that
# an account never chooses a language its mail silently ignores).
MAIL_LANGUAGES = ("en", "fr", "de", "es")


class MailPresentation(_Part):
    """How the account's mail reads: its language, time zone and logo, as the account set them."""

    locale: str = Field(default="en", description="BCP 47 language and optional region: fr-CA.")
    time_zone: str = Field(default="UTC", description="IANA time zone dates are shown in.")
    logo_url: str | None = Field(
        default=None, description="An https address of the account's logo, shown in HTML mail."
    )


class IssuedInvoiceCustomer(_Part):
    """The invoiced customer as the invoice was issued to them."""

    customer_id: UUID = Field(description="Billing's customer id.")
    name: str = personal_data("Customer's name as printed on the invoice.")
    email: str = personal_data("Address the invoice is sent to.")
    address: str | None = personal_data("Customer's postal address as printed.", default=None)
    tax_id: str | None = personal_data("Customer's tax or VAT number as printed.", default=None)


class InvoiceLine(_Part):
    """One line of an issued invoice."""

    description: str = personal_data("Line text; user-submitted, may name people.")
    quantity: Decimal = Field(description="Quantity, a decimal string.")
    unit_price: Decimal = Field(description="Price per unit in the invoice currency.")
    amount: Decimal = Field(
        description="quantity x unit_price, rounded to the currency's minor unit."
    )
    # Defaults keep events written before discounts and taxes readable.
    discount_percent: Decimal = Field(default=Decimal(0), description="Discount in percent.")
    discount_amount: Decimal = Field(default=Decimal(0), description="The discount's amount.")
    net_amount: Decimal | None = Field(
        default=None, description="amount - discount_amount; null: the amount."
    )
    tax_rate: Decimal = Field(default=Decimal(0), description="Tax rate on the net, in percent.")


class TaxTotal(_Part):
    """One tax rate's total on an issued invoice."""

    rate: Decimal = Field(description="Tax rate in percent.")
    taxable_amount: Decimal = Field(description="Sum of the nets of the lines at this rate.")
    tax_amount: Decimal = Field(description="Tax on that sum, rounded once.")


class InvoiceIssued(EventData):
    """An invoice was issued: it has a number and is to be sent to the customer."""

    event_type = "invoice.issued"

    invoice_id: UUID = Field(description="Billing's invoice id.")
    number: str = Field(description="Gapless per-account invoice number.")
    seller_name: str = personal_data("The account's company name, the invoice's sender.")
    seller_address: str | None = personal_data(
        "The account's postal address as printed on the invoice.", default=None
    )
    seller_tax_id: str | None = personal_data(
        "The account's tax or VAT number as printed on the invoice.", default=None
    )
    customer: IssuedInvoiceCustomer = Field(description="Who the invoice is for.")
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code.")
    lines: list[InvoiceLine] = Field(min_length=1, description="The invoice lines.")
    subtotal: Decimal | None = Field(
        default=None, description="Sum of the lines' nets; null: the total (no taxes)."
    )
    taxes: list[TaxTotal] = Field(default_factory=list, description="Tax per rate above 0.")
    tax_total: Decimal = Field(default=Decimal(0), description="Sum of the taxes.")
    total: Decimal = Field(description="subtotal + tax_total: what is due.")
    issue_date: date = Field(description="Date of issue.")
    due_date: date = Field(description="Payment due date.")
    presentation: MailPresentation | None = Field(
        default=None, description="How the account's mail reads; null: the account's settings."
    )


class CreditNoteIssued(EventData):
    """A credit note corrected an issued invoice: it has its number and is to be sent."""

    event_type = "credit_note.issued"

    credit_note_id: UUID = Field(description="Billing's credit note id.")
    number: str = Field(description="Gapless per-account credit note number.")
    invoice_id: UUID = Field(description="The invoice it corrects.")
    invoice_number: str = Field(description="That invoice's number.")
    reason: str = personal_data("Why, as a user of the account wrote it.")
    seller_name: str = personal_data("The account's company name, the credit note's sender.")
    seller_address: str | None = personal_data("The account's postal address.", default=None)
    seller_tax_id: str | None = personal_data("The account's tax or VAT number.", default=None)
    customer: IssuedInvoiceCustomer = Field(description="Who is credited.")
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code.")
    lines: list[InvoiceLine] = Field(min_length=1, description="What is credited.")
    subtotal: Decimal = Field(description="Sum of the lines' nets.")
    taxes: list[TaxTotal] = Field(default_factory=list, description="Tax per rate above 0.")
    tax_total: Decimal = Field(description="Sum of the taxes.")
    total: Decimal = Field(description="What is credited against the invoice.")
    issue_date: date = Field(description="Date of issue.")
    presentation: MailPresentation | None = Field(
        default=None, description="How the account's mail reads; null: the account's settings."
    )


class InvoiceVoided(EventData):
    """An issued invoice was voided: it is no longer due, and nothing more is sent about it."""

    event_type = "invoice.voided"

    invoice_id: UUID = Field(description="Billing's invoice id.")
    number: str = Field(description="The void invoice's number, which stays taken.")
    voided_at: datetime = Field(description="When it was voided.")
    reason: str = personal_data("Why, as a user of the account wrote it.")


class StatementEntry(_Part):
    """One line of a statement."""

    on: date = Field(description="Date of the document or payment.")
    kind: str = Field(description="invoice, credit_note, void, payment or refund.")
    number: str = Field(description="The document's number, or the gateway's payment id.")
    reference: str | None = Field(default=None, description="The invoice it concerns.")
    debit: Decimal = Field(description="What it adds to what is owed.")
    credit: Decimal = Field(description="What it takes off.")
    balance: Decimal = Field(description="What is owed after it.")


class StatementIssued(EventData):
    """A customer's statement for a month, to be sent to them (monthly statements)."""

    event_type = "statement.issued"

    customer: IssuedInvoiceCustomer = Field(description="Who the statement is for.")
    seller_name: str = personal_data("The account's company name, the statement's sender.")
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code.")
    period_start: date = Field(description="First day of the period.")
    period_end: date = Field(description="Last day of the period.")
    opening_balance: Decimal = Field(description="Owed before the period.")
    entries: list[StatementEntry] = Field(description="The period's documents and payments.")
    closing_balance: Decimal = Field(description="Owed at the period's end.")
    aging: dict[str, Decimal] = Field(
        description="What is owed at the end by days past due: current, 1-30, 31-60, 61-90, "
        "over-90."
    )
    presentation: MailPresentation | None = Field(
        default=None, description="How the account's mail reads; null: the account's settings."
    )


class PaymentReceived(EventData):
    """A payment was received through the gateway, confirmed by its signed webhook."""

    event_type = "payment.received"

    payment_id: UUID = Field(description="Billing's payment id.")
    invoice_id: UUID = Field(description="The invoice paid.")
    invoice_number: str = Field(description="That invoice's number.")
    customer: IssuedInvoiceCustomer = Field(description="Who paid, as the invoice names them.")
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code.")
    amount: Decimal = Field(description="What was paid.")
    applied_amount: Decimal = Field(description="The part that settled the invoice.")
    credit_amount: Decimal = Field(description="An overpayment, kept as the customer's credit.")
    amount_due: Decimal = Field(description="What the invoice still asks for after it.")
    received_at: datetime = Field(description="When billing recorded it.")
    seller_name: str | None = personal_data(
        "The account's company name, the receipt's sender.", default=None
    )
    presentation: MailPresentation | None = Field(
        default=None, description="How the account's mail reads; null: the account's settings."
    )


class PaymentRefunded(EventData):
    """Part or all of a payment was refunded, confirmed by the gateway's signed webhook."""

    event_type = "payment.refunded"

    refund_id: UUID = Field(description="Billing's refund id.")
    payment_id: UUID = Field(description="The payment refunded.")
    invoice_id: UUID = Field(description="The invoice the payment was for.")
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code.")
    amount: Decimal = Field(description="What was refunded.")
    from_credit: Decimal = Field(description="The part taken from the customer's credit.")
    from_invoice: Decimal = Field(description="The part taken back from the invoice.")
    refunded_at: datetime = Field(description="When billing recorded it.")


class InvoicePaymentStatusChanged(EventData):
    """An issued invoice became partially paid, paid, or owed again (after a refund)."""

    event_type = "invoice.payment_status_changed"

    invoice_id: UUID = Field(description="Billing's invoice id.")
    number: str = Field(description="The invoice's number.")
    status: str = Field(description="issued, partially_paid or paid.")
    previous_status: str = Field(description="Its status before.")
    amount_paid: Decimal = Field(description="Paid and credit applied, net of refunds.")
    amount_due: Decimal = Field(description="What it still asks for.")


class UserInvited(EventData):
    """A user of an account invited a colleague: email them the invitation."""

    event_type = "user.invited"

    user_id: UUID = Field(description="Billing's id of the invited user.")
    account_name: str = personal_data("The inviting company's name.")
    inviter_name: str = personal_data("Who sent the invitation.")
    name: str = personal_data("The invited person's name.")
    email: str = personal_data("Where the invitation is sent.")
    role: str = Field(description="The role offered: admin, accountant or read_only.")
    # Sealed like personal data: a secret must not be readable on the broker either.
    token: str = personal_data("The invitation's one-time secret, accepted once before expiry.")
    expires_at: datetime = Field(description="When the invitation lapses.")
    presentation: MailPresentation | None = Field(
        default=None, description="How the account's mail reads; null: the account's settings."
    )


class NewDeviceSignedIn(EventData):
    """A user signed in from a browser and system not seen for them before: tell them."""

    event_type = "user.new_device_signed_in"

    user_id: UUID = Field(description="Billing's id of the user.")
    name: str = personal_data("The user's name.")
    email: str = personal_data("Where the security notice goes.")
    address: str = personal_data("The IP address the sign-in came from.")
    location: str | None = personal_data(
        "City and country of the address, when billing has a GeoIP database.", default=None
    )
    browser: str = Field(description="The browser's name and major version.")
    operating_system: str = Field(description="The operating system's name and major version.")
    signed_in_at: datetime = Field(description="When.")


class DetailsChanged(EventData):
    """Someone corrected details of the account, a user or a customer (RECTIFY).

    Names the fields, never their values; when someone must be told (the owner of the company's
    details, a user at their former address), the notice's recipient comes with it.
    """

    event_type = "details.changed"

    change_id: UUID = Field(description="Billing's change record id.")
    subject: str = Field(description="What was corrected: account, user or customer.")
    subject_id: UUID = Field(description="Id of what was corrected.")
    fields: list[str] = Field(min_length=1, description="Names of the fields changed.")
    changed_by_name: str = personal_data("Who made the change.")
    changed_at: datetime = Field(description="When.")
    notice_name: str | None = personal_data("Whom to tell, if anyone.", default=None)
    notice_email: str | None = personal_data("Where to tell them, if anyone.", default=None)


class ReminderSchedule(_Part):
    """When an account's customers are reminded of an unpaid invoice, relative to its due date."""

    days_before_due: list[int] = Field(
        default_factory=list, max_length=5, description="Days before the due date, each 1 to 90."
    )
    on_due: bool = Field(default=False, description="On the due date.")
    days_after_due: list[int] = Field(
        default_factory=list, max_length=10, description="Days after the due date, each 1 to 365."
    )
    repeat_every_days: int | None = Field(
        default=None, ge=1, le=90, description="Then every N days after the last of those."
    )
    repeat_limit: int = Field(default=0, ge=0, le=24, description="At most this many repeats.")


class QuietHours(_Part):
    """The hours of the account's day when no reminder is sent (local time, may wrap midnight)."""

    start: time = Field(description="From this local time.")
    end: time = Field(description="Until this local time.")


class AccountMailSettingsChanged(EventData):
    """The account was opened or changed how its mail reads or when reminders go out."""

    event_type = "account.mail_settings_changed"

    account_name: str = personal_data("The account's company name, the mail's sender.")
    presentation: MailPresentation = Field(description="Language, time zone and logo.")
    reminders: ReminderSchedule | None = Field(description="The reminder schedule; null: none.")
    quiet_hours: QuietHours | None = Field(description="When no reminder goes out; null: any time.")
    changed_at: datetime = Field(description="When; an older change never overrides a newer one.")


class EmailStatusChanged(EventData):
    """An email changed status: the account's delivery log (in billing) shows it."""

    event_type = "email.status_changed"

    email_id: UUID = Field(description="Notifications' id of the email.")
    message_id: str = Field(description="Its Message-ID.")
    kind: str = Field(description="The transactional kind: invoice, payment-reminder...")
    recipient: str = personal_data("The address it is sent to.")
    status: str = Field(
        description="queued, deferred (a temporary failure, retried), sent, bounced (refused "
        "for good), suppressed (the address bounced before) or cancelled."
    )
    attempts: int = Field(ge=0, description="Attempts to hand it to the mail server so far.")
    reason: str | None = Field(
        default=None, description="For deferred, bounced, suppressed: the SMTP code and class."
    )
    document_id: UUID | None = Field(
        default=None, description="The invoice, credit note or payment it is about, if any."
    )
    changed_at: datetime = Field(description="When.")


class AccountTerminated(EventData):
    """The account owner terminated the contract: export, deliver, then purge (TERMINATION)."""

    event_type = "account.terminated"

    account_name: str = personal_data("Company name, for the export's covering email.")
    owner_email: str = personal_data("Where the export is sent.")
    terminated_at: datetime = Field(description="When the owner terminated.")
    plan: str | None = Field(
        default=None,
        description="The subscription plan: it sets the grace period before the purge.",
    )


class AccountPlanChanged(EventData):
    """The account's subscription plan was set or changed: how long its data is kept
    (PLAN-RETENTION)."""

    event_type = "account.plan_changed"

    plan: str = Field(description="The plan's name.")
    changed_at: datetime = Field(description="When.")


class RetentionSweepRequested(EventData):
    """Retention asks each owning service to delete the account's rows past the plan's time
    (PLAN-RETENTION, COLLECTED), or, in a dry run, to say what would go."""

    event_type = "retention.sweep_requested"

    sweep_id: UUID = Field(description="The sweep.")
    dry_run: bool = Field(description="Count, delete nothing.")
    as_of: datetime = Field(description="The time the cutoffs were taken from.")
    cutoffs: dict[str, datetime] = Field(
        description="Per retention category: rows whose time is before this are past it."
    )


class SweptTable(_Part):
    """What a sweep did (or would do) in one table of one account."""

    table: str = Field(description="The table.")
    category: str = Field(description="Its retention category.")
    rows: int = Field(ge=0, description="Rows past their time: deleted, or would be.")
    oldest_at: datetime | None = Field(description="The oldest of them.")
    next_due_at: datetime | None = Field(
        description="When the next row that stays passes its time; null: none stays."
    )


class RetentionSweepReported(EventData):
    """A service swept the account (the producer says which)."""

    event_type = "retention.sweep_reported"

    sweep_id: UUID = Field(description="The sweep.")
    dry_run: bool = Field(description="Nothing was deleted.")
    held: bool = Field(description="A legal hold stands: nothing was deleted (LAW).")
    tables: list[SweptTable] = Field(description="Per table swept.")


class DataAccessed(EventData):
    """Someone other than the customer read customer data (STAFF-ACCESS, INTEGRATIONS, PURPOSE)."""

    event_type = "data.accessed"

    access_id: UUID = Field(description="Unique id of this access.")
    actor: AccessActor = Field(description="Kind of reader.")
    actor_id: str = Field(description="Staff member or integration id.")
    actor_name: str = personal_data("Name of the staff member or integration.")
    purpose: AccessPurpose = Field(description="Why the data was read, from the closed list.")
    reason: str = personal_data(
        "Ticket or reason given on the grant (free text); for a refusal, why it was refused."
    )
    grant_id: UUID | None = Field(description="Access grant that allowed the read.")
    outcome: AccessOutcome = Field(
        default=AccessOutcome.GRANTED,
        description="granted, or refused: an attempt without a grant is recorded too.",
    )
    resource_type: str = Field(description="What was read, e.g. customer.")
    resource_id: str = Field(description="Id of what was read.")
    accessed_at: datetime = Field(description="When it was read.")


class LegalHoldPlaced(EventData):
    """Legal staff put the account's data on hold: no service may purge any of it until the
    hold is released or ends (LAW)."""

    event_type = "legal_hold.placed"

    hold_id: UUID = Field(description="The hold.")
    legal_basis: str = personal_data("The law, order or request that requires it (free text).")
    reason: str = personal_data("Why, as the legal staff member wrote it.")
    placed_by: UUID = Field(description="The legal staff member who placed it.")
    placed_by_name: str = personal_data("Their name.")
    placed_at: datetime = Field(description="When.")
    ends_at: datetime | None = Field(default=None, description="When it lapses; null: released.")


class AccessGrantChanged(EventData):
    """An account's user opened or revoked a staff member's access grant (STAFF-ACCESS)."""

    event_type = "access_grant.changed"

    grant_id: UUID = Field(description="The grant.")
    change: str = Field(pattern="^(opened|revoked)$", description="opened or revoked.")
    staff_id: UUID = Field(description="Who may read under it.")
    purpose: AccessPurpose = Field(description="For what.")
    reason: str = personal_data("The ticket or reason the user gave.")
    expires_at: datetime = Field(description="When it lapses on its own.")
    changed_by: UUID = Field(description="The account's user who opened or revoked it.")
    changed_by_name: str = personal_data("Their name.")
    changed_at: datetime = Field(description="When.")


class AuditAlertRaised(EventData):
    """Audit saw something a person must look at: one staff member reading many accounts, a
    read under a grant that had ended (STAFF-ACCESS)."""

    event_type = "audit.alert_raised"

    alert_id: UUID = Field(description="The alert.")
    kind: str = Field(description="many-accounts-read, or read-under-ended-grant.")
    actor_id: str = Field(description="The staff member concerned.")
    detail: str = Field(description="What was seen (no personal data: ids and counts).")
    raised_at: datetime = Field(description="When.")


class LegalHoldReleased(EventData):
    """The hold no longer applies; the account may be purged if no other hold stands (LAW)."""

    event_type = "legal_hold.released"

    hold_id: UUID = Field(description="The hold released.")
    released_by: UUID = Field(description="The legal staff member who released it.")
    released_by_name: str = personal_data("Their name.")
    reason: str = personal_data("Why it no longer applies.")
    released_at: datetime = Field(description="When.")


class ExportRequested(EventData):
    """Retention asks every participant to send its slice of the account's records."""

    event_type = "export.requested"

    saga_id: UUID = Field(description="The termination saga.")
    attempt: int = Field(default=1, ge=1, description="1, then more when a deadline passed.")


class ExportFile(_Part):
    """One CSV file of a participant's slice."""

    name: str = Field(description="File name, e.g. invoice.csv.")
    record_type: str = Field(description="Kind of record, e.g. invoice.")
    records: int = Field(ge=0, description="Records (rows after the header) in the file.")
    sha256: str = Field(description="Hex SHA-256 of the CSV bytes.")
    crc32: int = Field(ge=0, description="CRC-32 of the CSV bytes (what the ZIP entry states).")
    size: int = Field(ge=0, description="Size of the CSV in bytes.")
    chunks: int = Field(ge=0, description="How many chunks carry it.")


class ExportSliceChunk(EventData):
    """A piece of one CSV file of a participant's slice, on its way to retention."""

    event_type = "export.slice_chunk"

    saga_id: UUID = Field(description="The termination saga.")
    transfer_id: UUID = Field(description="One sending of a slice; a retry sends another.")
    file: str = Field(description="The file the chunk belongs to.")
    index: int = Field(ge=0, description="Position of the chunk in the file.")
    content: str = personal_data(
        "Base64 of the chunk's CSV bytes as raw deflate ending on a byte boundary (sync flush), "
        "so that a file's chunks joined are one deflate stream."
    )


class ExportSliceWritten(EventData):
    """A participant sent every chunk of its slice; the producer is the participant."""

    event_type = "export.slice_written"

    saga_id: UUID = Field(description="The termination saga.")
    transfer_id: UUID = Field(description="The sending the files belong to.")
    files: list[ExportFile] = Field(description="What it sent.")


class ExportBundleChunk(EventData):
    """A piece of the assembled bundle, on its way to notifications."""

    event_type = "export.bundle_chunk"

    saga_id: UUID = Field(description="The termination saga.")
    transfer_id: UUID = Field(description="One sending of the bundle.")
    index: int = Field(ge=0, description="Position of the chunk in the bundle.")
    content: str = personal_data("Base64 of the bundle's bytes in this chunk.")


class ExportAssembled(EventData):
    """Retention assembled the CSV bundle; notifications sends it to the customer."""

    event_type = "export.assembled"

    saga_id: UUID = Field(description="The termination saga.")
    transfer_id: UUID = Field(description="The sending of the bundle's chunks.")
    chunks: int = Field(ge=0, description="How many chunks carry the bundle; 0 with a link.")
    file_name: str = Field(description="Name of the attachment, e.g. quittance-export.zip.")
    size: int = Field(ge=0, description="Size of the bundle in bytes.")
    sha256: str = Field(description="Hex SHA-256 of the bundle.")
    account_name: str = personal_data("Company name for the covering email.")
    recipient_email: str = personal_data("Where the bundle is sent.")
    download_url: str | None = personal_data(
        "A signed link to the bundle for the grace period, instead of an attachment; a "
        "credential, so sealed.",
        default=None,
    )
    link_expires_at: datetime | None = Field(
        default=None, description="When the link stops working: the purge."
    )


class ExportDelivered(EventData):
    """Notifications handed the export email to the mail server."""

    event_type = "export.delivered"

    saga_id: UUID = Field(description="The termination saga.")
    message_id: str = Field(description="Message-ID of the email that carried the export.")


class PurgeRequested(EventData):
    """Retention asks every participant to delete everything about the account."""

    event_type = "purge.requested"

    saga_id: UUID = Field(description="The termination saga.")
    attempt: int = Field(default=1, ge=1, description="1, then more when a deadline passed.")


class PurgeCompleted(EventData):
    """A participant deleted everything it held about the account; the producer is it."""

    event_type = "purge.completed"

    saga_id: UUID = Field(description="The termination saga.")
    rows_deleted: int = Field(ge=0, description="Rows it deleted.")


class AccountPurged(EventData):
    """Every participant confirmed the purge; retention keeps the certificate."""

    event_type = "account.purged"

    saga_id: UUID = Field(description="The termination saga.")
    certificate_id: UUID = Field(description="The purge certificate retention issued.")
    services: list[str] = Field(description="Services that confirmed.")
    # No personal data (the account is a keyed hash in it): readable after the key is gone.
    certificate: str | None = Field(
        default=None, description="The certificate as signed: canonical JSON, byte for byte."
    )
    signature: str | None = Field(
        default=None, description="Base64 of the certificate's Ed25519 signature."
    )
    signing_key_id: str | None = Field(
        default=None, description="Id of the published public key that verifies it."
    )


EVENT_TYPES: dict[str, type[EventData]] = {
    model.event_type: model
    for model in (
        InvoiceIssued,
        InvoiceVoided,
        CreditNoteIssued,
        StatementIssued,
        PaymentReceived,
        PaymentRefunded,
        InvoicePaymentStatusChanged,
        AccountTerminated,
        AccountPlanChanged,
        AccessGrantChanged,
        AuditAlertRaised,
        RetentionSweepRequested,
        RetentionSweepReported,
        DataAccessed,
        ExportRequested,
        ExportSliceChunk,
        ExportSliceWritten,
        ExportBundleChunk,
        ExportAssembled,
        ExportDelivered,
        PurgeRequested,
        PurgeCompleted,
        AccountPurged,
        UserInvited,
        NewDeviceSignedIn,
        DetailsChanged,
        AccountMailSettingsChanged,
        EmailStatusChanged,
        LegalHoldPlaced,
        LegalHoldReleased,
    )
}
