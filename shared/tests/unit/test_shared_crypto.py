"""Crypto-shredding of event fields: sealed with the account key, unreadable once it is gone."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from shared.contracts import (
    EVENT_TYPES,
    AccessActor,
    AccessGrantChanged,
    AccessPurpose,
    AccountMailSettingsChanged,
    AccountPlanChanged,
    AccountPurged,
    AccountTerminated,
    AuditAlertRaised,
    CreditNoteIssued,
    DataAccessed,
    DetailsChanged,
    EmailStatusChanged,
    EventData,
    ExportAssembled,
    ExportBundleChunk,
    ExportDelivered,
    ExportFile,
    ExportRequested,
    ExportSliceChunk,
    ExportSliceWritten,
    InvoiceIssued,
    InvoiceLine,
    InvoicePaymentStatusChanged,
    InvoiceVoided,
    IssuedInvoiceCustomer,
    LegalHoldPlaced,
    LegalHoldReleased,
    MailPresentation,
    NewDeviceSignedIn,
    PaymentReceived,
    PaymentRefunded,
    PurgeCompleted,
    PurgeRequested,
    QuietHours,
    ReminderSchedule,
    RetentionSweepReported,
    RetentionSweepRequested,
    StatementIssued,
    SweptTable,
    UserInvited,
    personal_data,
)
from shared.crypto import (
    WIRE_PREFIX,
    DataKey,
    FieldDecryptionError,
    KeyDestroyedError,
    TamperedFieldError,
    UnencryptedPersonalFieldError,
    decrypt_personal,
    encrypt_personal,
    key_ids_in,
    new_data_key,
    personal_paths,
)

ACCOUNT = uuid.uuid4()
SAGA = uuid.uuid4()
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SECRET_WORDS = (
    "Zoë Secretperson",
    "zoe@private.example",
    "Therapy for Zoë",
    "Secret GmbH",
    "Geheimweg",
    "DE999999999",
    "Privatstraße",
    "olga@private.example",
)


def _invoice(lines: int = 2) -> InvoiceIssued:
    return InvoiceIssued(
        account_id=ACCOUNT,
        invoice_id=uuid.uuid4(),
        number="2025-0001",
        seller_name="Secret GmbH",
        seller_address="Geheimweg 1, Berlin",
        seller_tax_id="DE999999999",
        customer=IssuedInvoiceCustomer(
            customer_id=uuid.uuid4(),
            name="Zoë Secretperson",
            email="zoe@private.example",
            address="Privatstraße 7, Köln",
        ),
        currency="EUR",
        lines=[
            InvoiceLine(
                description=f"Therapy for Zoë {n}",
                quantity=Decimal("1"),
                unit_price=Decimal("10.00"),
                amount=Decimal("10.00"),
            )
            for n in range(lines)
        ],
        total=Decimal(10 * lines),
        issue_date=date(2025, 1, 2),
        due_date=date(2025, 2, 1),
    )


SAMPLES: dict[str, EventData] = {
    "invoice.issued": _invoice(),
    "credit_note.issued": CreditNoteIssued(
        account_id=ACCOUNT,
        credit_note_id=uuid.uuid4(),
        number="CN-000001",
        invoice_id=uuid.uuid4(),
        invoice_number="INV-000001",
        reason="Zoë Secretperson was billed twice",
        seller_name="Secret GmbH",
        customer=IssuedInvoiceCustomer(
            customer_id=uuid.uuid4(), name="Zoë Secretperson", email="zoe@private.example"
        ),
        currency="EUR",
        lines=[
            InvoiceLine(
                description="Consulting for Zoë Secretperson",
                quantity=Decimal(1),
                unit_price=Decimal(10),
                amount=Decimal(10),
            )
        ],
        subtotal=Decimal(10),
        tax_total=Decimal(0),
        total=Decimal(10),
        issue_date=NOW.date(),
    ),
    "statement.issued": StatementIssued(
        account_id=ACCOUNT,
        customer=IssuedInvoiceCustomer(
            customer_id=uuid.uuid4(), name="Zoë Secretperson", email="zoe@private.example"
        ),
        seller_name="Secret GmbH",
        currency="EUR",
        period_start=NOW.date(),
        period_end=NOW.date(),
        opening_balance=Decimal(0),
        entries=[],
        closing_balance=Decimal(0),
        aging={},
    ),
    "payment.received": PaymentReceived(
        account_id=ACCOUNT,
        payment_id=uuid.uuid4(),
        invoice_id=uuid.uuid4(),
        invoice_number="INV-000001",
        customer=IssuedInvoiceCustomer(
            customer_id=uuid.uuid4(), name="Zoë Secretperson", email="zoe@private.example"
        ),
        currency="EUR",
        amount=Decimal(10),
        applied_amount=Decimal(10),
        credit_amount=Decimal(0),
        amount_due=Decimal(0),
        received_at=NOW,
    ),
    "payment.refunded": PaymentRefunded(
        account_id=ACCOUNT,
        refund_id=uuid.uuid4(),
        payment_id=uuid.uuid4(),
        invoice_id=uuid.uuid4(),
        currency="EUR",
        amount=Decimal(5),
        from_credit=Decimal(0),
        from_invoice=Decimal(5),
        refunded_at=NOW,
    ),
    "invoice.payment_status_changed": InvoicePaymentStatusChanged(
        account_id=ACCOUNT,
        invoice_id=uuid.uuid4(),
        number="INV-000001",
        status="paid",
        previous_status="issued",
        amount_paid=Decimal(10),
        amount_due=Decimal(0),
    ),
    "invoice.voided": InvoiceVoided(
        account_id=ACCOUNT,
        invoice_id=uuid.uuid4(),
        number="INV-000001",
        voided_at=NOW,
        reason="Billed Zoë Secretperson twice",
    ),
    "user.new_device_signed_in": NewDeviceSignedIn(
        account_id=ACCOUNT,
        user_id=uuid.uuid4(),
        name="Zoë Secretperson",
        email="zoe@private.example",
        address="203.0.113.9",
        browser="Firefox 121",
        operating_system="Windows 10",
        signed_in_at=NOW,
    ),
    "account.mail_settings_changed": AccountMailSettingsChanged(
        account_id=ACCOUNT,
        account_name="Secret GmbH",
        presentation=MailPresentation(locale="de-DE", time_zone="Europe/Berlin"),
        reminders=ReminderSchedule(days_after_due=[7]),
        quiet_hours=QuietHours(start=time(21), end=time(8)),
        changed_at=NOW,
    ),
    "email.status_changed": EmailStatusChanged(
        account_id=ACCOUNT,
        email_id=uuid.uuid4(),
        message_id="<m@quittance.example>",
        kind="invoice",
        recipient="olga@private.example",
        status="sent",
        attempts=1,
        changed_at=NOW,
    ),
    "details.changed": DetailsChanged(
        account_id=ACCOUNT,
        change_id=uuid.uuid4(),
        subject="account",
        subject_id=ACCOUNT,
        fields=["address", "tax_id"],
        changed_by_name="Zoë Secretperson",
        changed_at=NOW,
        notice_name="Olga Secretowner",
        notice_email="olga@private.example",
    ),
    "user.invited": UserInvited(
        account_id=ACCOUNT,
        user_id=uuid.uuid4(),
        account_name="Secret GmbH",
        inviter_name="Zoë Secretperson",
        name="Ivo Invitee",
        email="ivo@private.example",
        role="accountant",
        token="invitation-secret-token",
        expires_at=NOW,
    ),
    "account.terminated": AccountTerminated(
        account_id=ACCOUNT,
        account_name="Secret GmbH",
        owner_email="zoe@private.example",
        terminated_at=NOW,
    ),
    "data.accessed": DataAccessed(
        account_id=ACCOUNT,
        access_id=uuid.uuid4(),
        actor=AccessActor.STAFF,
        actor_id="s-1",
        actor_name="Zoë Secretperson",
        purpose=AccessPurpose.SUPPORT,
        reason="ticket 1",
        grant_id=None,
        resource_type="customer",
        resource_id="c-1",
        accessed_at=NOW,
    ),
    "export.requested": ExportRequested(account_id=ACCOUNT, saga_id=SAGA),
    "export.slice_chunk": ExportSliceChunk(
        account_id=ACCOUNT,
        saga_id=SAGA,
        transfer_id=SAGA,
        file="a.csv",
        index=0,
        content="Zoe Private,zoe@private.example",
    ),
    "export.slice_written": ExportSliceWritten(
        account_id=ACCOUNT,
        saga_id=SAGA,
        transfer_id=SAGA,
        files=[
            ExportFile(
                name="a.csv",
                record_type="invoice",
                records=1,
                sha256="00",
                crc32=0,
                size=0,
                chunks=1,
            )
        ],
    ),
    "export.bundle_chunk": ExportBundleChunk(
        account_id=ACCOUNT, saga_id=SAGA, transfer_id=SAGA, index=0, content="Secret GmbH"
    ),
    "export.assembled": ExportAssembled(
        account_id=ACCOUNT,
        saga_id=SAGA,
        transfer_id=SAGA,
        chunks=1,
        file_name="b.zip",
        size=2,
        sha256="00",
        account_name="Secret GmbH",
        recipient_email="zoe@private.example",
        download_url="https://retention.example/exports/download?saga=1&signature=secret-link",
        link_expires_at=datetime(2030, 3, 1, tzinfo=UTC),
    ),
    "export.delivered": ExportDelivered(account_id=ACCOUNT, saga_id=SAGA, message_id="<m@x>"),
    "purge.requested": PurgeRequested(account_id=ACCOUNT, saga_id=SAGA),
    "purge.completed": PurgeCompleted(account_id=ACCOUNT, saga_id=SAGA, rows_deleted=3),
    "account.purged": AccountPurged(
        account_id=ACCOUNT, saga_id=SAGA, certificate_id=uuid.uuid4(), services=["billing"]
    ),
    "legal_hold.placed": LegalHoldPlaced(
        account_id=ACCOUNT,
        hold_id=uuid.uuid4(),
        legal_basis="Court order 2030/117 (Jane Doe v. Acme)",
        reason="Preserve everything of 2029",
        placed_by=uuid.uuid4(),
        placed_by_name="Lea Legal",
        placed_at=datetime(2030, 1, 1, tzinfo=UTC),
        ends_at=None,
    ),
    "legal_hold.released": LegalHoldReleased(
        account_id=ACCOUNT,
        hold_id=uuid.uuid4(),
        released_by=uuid.uuid4(),
        released_by_name="Lea Legal",
        reason="Settled with Jane Doe",
        released_at=datetime(2030, 2, 1, tzinfo=UTC),
    ),
    "access_grant.changed": AccessGrantChanged(
        account_id=ACCOUNT,
        grant_id=uuid.uuid4(),
        change="opened",
        staff_id=uuid.uuid4(),
        purpose=AccessPurpose.SUPPORT,
        reason="TICKET-42 for Jane Doe",
        expires_at=datetime(2030, 1, 2, tzinfo=UTC),
        changed_by=uuid.uuid4(),
        changed_by_name="Olga Owner",
        changed_at=datetime(2030, 1, 1, tzinfo=UTC),
    ),
    "audit.alert_raised": AuditAlertRaised(
        account_id=uuid.UUID(int=0),
        alert_id=uuid.uuid4(),
        kind="many-accounts-read",
        actor_id="staff-1",
        detail="21 accounts read within an hour (limit 20)",
        raised_at=datetime(2030, 1, 1, tzinfo=UTC),
    ),
    "account.plan_changed": AccountPlanChanged(
        account_id=ACCOUNT, plan="free", changed_at=datetime(2030, 1, 1, tzinfo=UTC)
    ),
    "retention.sweep_requested": RetentionSweepRequested(
        account_id=ACCOUNT,
        sweep_id=SAGA,
        dry_run=True,
        as_of=datetime(2030, 6, 1, tzinfo=UTC),
        cutoffs={"request-metadata": datetime(2030, 5, 2, tzinfo=UTC)},
    ),
    "retention.sweep_reported": RetentionSweepReported(
        account_id=ACCOUNT,
        sweep_id=SAGA,
        dry_run=True,
        held=False,
        tables=[
            SweptTable(
                table="web_session",
                category="request-metadata",
                rows=3,
                oldest_at=datetime(2030, 1, 1, tzinfo=UTC),
                next_due_at=None,
            )
        ],
    ),
}


def _aad(event_type: str, event_id: uuid.UUID | None = None) -> bytes:
    return f"{event_id or uuid.UUID(int=1)}|{event_type}".encode()


def _sealed_invoice(key: DataKey, aad: bytes | None = None) -> dict[str, Any]:
    data = _invoice().model_dump(mode="json")
    return encrypt_personal(
        data, personal_paths(InvoiceIssued), key, aad=aad or _aad("invoice.issued")
    )


def test_every_event_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)


@pytest.mark.clause("TERMINATION")
def test_termination_invoice_issued_personal_paths_cover_nested_fields() -> None:
    assert set(personal_paths(InvoiceIssued)) >= {
        "seller_name",
        "seller_address",
        "seller_tax_id",
        "customer.name",
        "customer.email",
        "customer.address",
        "lines[].description",
    }
    assert personal_paths(InvoiceIssued) is personal_paths(InvoiceIssued), "cached"


def test_personal_paths_recurse_through_optional_and_lists() -> None:
    class Person(BaseModel):
        name: str = personal_data("A name.")
        age: int

    class Holder(BaseModel):
        main: Person | None = None
        others: list[Person] = []
        notes: list[str] = personal_data("Free text, sealed as one value.", default=[])

    assert set(personal_paths(Holder)) == {"main.name", "others[].name", "notes"}


def test_personal_fields_in_a_shape_without_path_syntax_are_refused_not_skipped() -> None:
    class Person(BaseModel):
        name: str = personal_data("A name.")

    class Company(BaseModel):
        vat: str

    class ByUnion(BaseModel):
        payer: Person | Company

    class ByDict(BaseModel):
        people: dict[str, Person]

    class Whole(BaseModel):
        people: dict[str, Person] = personal_data("Sealed as one value.")

    for model in (ByUnion, ByDict):
        with pytest.raises(TypeError, match="personal_data"):
            personal_paths(model)
    assert personal_paths(Whole) == ("people",)


@pytest.mark.clause("TERMINATION")
@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
async def test_termination_every_event_type_round_trips_without_plaintext_on_the_wire(
    event_type: str,
) -> None:
    model = EVENT_TYPES[event_type]
    data = SAMPLES[event_type].model_dump(mode="json")
    paths = personal_paths(model)
    key = new_data_key()

    sealed = encrypt_personal(data, paths, key, aad=_aad(event_type))
    wire = json.dumps(sealed, ensure_ascii=False)
    opened = await decrypt_personal(sealed, paths, {key.key_id: key}, aad=_aad(event_type))

    assert opened == data
    assert model.model_validate(opened) == SAMPLES[event_type]
    assert not any(word in wire for word in SECRET_WORDS)
    assert key_ids_in(sealed, paths) == ({key.key_id} if paths else set())
    assert data == SAMPLES[event_type].model_dump(mode="json"), "the input is not mutated"


def test_sealed_values_have_the_wire_form_and_differ_each_time() -> None:
    key = new_data_key()
    first, second = _sealed_invoice(key), _sealed_invoice(key)
    assert first["customer"]["name"].startswith(f"{WIRE_PREFIX}{key.key_id}:")
    assert "=" not in first["customer"]["name"], "base64url without padding"
    assert first["customer"]["name"] != second["customer"]["name"]
    assert first["lines"][0]["description"] != first["lines"][1]["description"]
    assert first["number"] == "2025-0001", "other fields are untouched"
    assert first["total"] == "20"


async def test_none_stays_none_and_any_json_value_round_trips() -> None:
    class Sample(BaseModel):
        nickname: str | None = personal_data("Optional.")
        tags: list[str] = personal_data("A list.")
        extra: dict[str, int] = personal_data("An object.")

    data = {"nickname": None, "tags": ["a", "ü"], "extra": {"n": 1}}
    key = new_data_key()
    sealed = encrypt_personal(data, personal_paths(Sample), key, aad=b"x")
    assert sealed["nickname"] is None
    assert await decrypt_personal(sealed, personal_paths(Sample), {key.key_id: key}, aad=b"x") == (
        data
    )


@pytest.mark.clause("TERMINATION")
async def test_termination_a_ciphertext_moved_to_another_field_fails() -> None:
    key = new_data_key()
    sealed = _sealed_invoice(key)
    sealed["customer"]["email"] = sealed["customer"]["name"]
    with pytest.raises(TamperedFieldError) as caught:
        await decrypt_personal(
            sealed, personal_paths(InvoiceIssued), {key.key_id: key}, aad=_aad("invoice.issued")
        )
    assert caught.value.path == "customer.email"


async def test_a_ciphertext_moved_to_another_line_fails() -> None:
    key = new_data_key()
    sealed = _sealed_invoice(key)
    lines = sealed["lines"]
    lines[0]["description"], lines[1]["description"] = (
        lines[1]["description"],
        lines[0]["description"],
    )
    with pytest.raises(TamperedFieldError, match=r"lines\[0\]\.description"):
        await decrypt_personal(
            sealed, personal_paths(InvoiceIssued), {key.key_id: key}, aad=_aad("invoice.issued")
        )


@pytest.mark.clause("TERMINATION")
async def test_termination_a_ciphertext_moved_to_another_event_fails() -> None:
    key = new_data_key()
    one = _sealed_invoice(key, aad=_aad("invoice.issued", uuid.uuid4()))
    other = _sealed_invoice(key, aad=_aad("invoice.issued", uuid.uuid4()))
    other["customer"]["name"] = one["customer"]["name"]
    with pytest.raises(TamperedFieldError):
        await decrypt_personal(
            other, personal_paths(InvoiceIssued), {key.key_id: key}, aad=_aad("invoice.issued")
        )


def _flip_byte(wire: str, position: int) -> str:
    prefix, encoded = wire.rsplit(":", 1)
    sealed = bytearray(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    sealed[position] ^= 0x01
    return f"{prefix}:{base64.urlsafe_b64encode(bytes(sealed)).rstrip(b'=').decode()}"


@pytest.mark.clause("TERMINATION")
@pytest.mark.parametrize("position", [0, 12, -1], ids=["nonce", "ciphertext", "tag"])
async def test_termination_a_flipped_byte_fails(position: int) -> None:
    key = new_data_key()
    sealed = _sealed_invoice(key)
    sealed["seller_name"] = _flip_byte(sealed["seller_name"], position)
    with pytest.raises(TamperedFieldError):
        await decrypt_personal(
            sealed, personal_paths(InvoiceIssued), {key.key_id: key}, aad=_aad("invoice.issued")
        )


@pytest.mark.parametrize("wire", ["enc:v1:", "enc:v1:k", "enc:v1:k:", "enc:v1:k:!!", "enc:v9:k:AA"])
async def test_malformed_wire_values_are_tampered(wire: str) -> None:
    sealed = _sealed_invoice(new_data_key())
    sealed["seller_name"] = wire
    with pytest.raises(TamperedFieldError):
        await decrypt_personal(sealed, personal_paths(InvoiceIssued), {}, aad=b"x")


@pytest.mark.clause("TERMINATION")
async def test_termination_a_destroyed_key_makes_every_copy_unreadable() -> None:
    key = new_data_key()
    store = {key.key_id: key}
    sealed = _sealed_invoice(key)
    paths = personal_paths(InvoiceIssued)
    opened = await decrypt_personal(sealed, paths, store, aad=_aad("invoice.issued"))
    assert opened["seller_name"] == "Secret GmbH"

    del store[key.key_id]  # the purge destroys the account's key

    with pytest.raises(KeyDestroyedError) as caught:
        await decrypt_personal(sealed, paths, store, aad=_aad("invoice.issued"))
    assert caught.value.key_id == key.key_id


@pytest.mark.clause("TERMINATION")
@pytest.mark.parametrize("plaintext", ["Zoë Secretperson", 42, ["Zoë"], {"n": "Zoë"}])
async def test_termination_a_consumer_refuses_plaintext_personal_data(plaintext: Any) -> None:
    key = new_data_key()
    sealed = _sealed_invoice(key)
    sealed["customer"]["name"] = plaintext
    with pytest.raises(UnencryptedPersonalFieldError) as caught:
        await decrypt_personal(
            sealed, personal_paths(InvoiceIssued), {key.key_id: key}, aad=_aad("invoice.issued")
        )
    assert caught.value.path == "customer.name"


async def test_plaintext_is_refused_before_any_key_lookup() -> None:
    sealed = _invoice().model_dump(mode="json")  # never sealed at all
    with pytest.raises(UnencryptedPersonalFieldError):
        await decrypt_personal(sealed, personal_paths(InvoiceIssued), {}, aad=b"x")


async def test_error_messages_never_contain_field_values() -> None:
    key = new_data_key()
    paths = personal_paths(InvoiceIssued)
    plaintext, tampered, orphaned = (_sealed_invoice(key) for _ in range(3))
    plaintext["customer"]["name"] = "Zoë Secretperson"
    tampered["seller_name"] = _flip_byte(tampered["seller_name"], 12)
    cases: list[tuple[dict[str, Any], dict[str, DataKey]]] = [
        (plaintext, {key.key_id: key}),
        (tampered, {key.key_id: key}),
        (orphaned, {}),
    ]
    errors: list[FieldDecryptionError] = []
    for data, keys in cases:
        with pytest.raises(FieldDecryptionError) as caught:
            await decrypt_personal(data, paths, keys, aad=_aad("invoice.issued"))
        errors.append(caught.value)

    assert [type(e) for e in errors] == [
        UnencryptedPersonalFieldError,
        TamperedFieldError,
        KeyDestroyedError,
    ]
    for error in errors:
        text = f"{error!s} {error!r} {error.__cause__!r} {error.__context__!r}"
        assert not any(word in text for word in SECRET_WORDS)


def test_data_key_repr_hides_the_secret() -> None:
    key = new_data_key()
    assert key.secret.hex() not in repr(key)
    assert repr(key.secret) not in repr(key)
    assert key.key_id in repr(key)


def test_data_key_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey("k", b"short")


def test_the_cipher_is_built_once_per_key() -> None:
    key = new_data_key()
    assert key.cipher is key.cipher


async def test_an_unstored_key_from_a_callable_store_propagates_key_destroyed() -> None:
    async def lookup(key_id: str) -> DataKey:
        raise KeyDestroyedError(key_id)

    sealed = _sealed_invoice(new_data_key())
    with pytest.raises(KeyDestroyedError):
        await decrypt_personal(sealed, personal_paths(InvoiceIssued), lookup, aad=b"x")
