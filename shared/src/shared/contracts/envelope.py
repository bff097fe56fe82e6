"""The CloudEvents 1.0 envelope (structured mode) that wraps every event on every topic."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar, Generic, Literal, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, model_validator

SPEC_VERSION = "1.0"
PERSONAL_DATA_MARK = "x-personal-data"
ENCRYPTION_MARK = "x-encrypted"
ENCRYPTION_FORM = (
    "AES-256-GCM with the account's data key, bound to the event's type, id and account; "
    "on the wire: enc:v1:<key id>:<base64url(nonce, ciphertext, tag)>. The purge destroys the key."
)
SOURCE_PREFIX = "/quittance/"


def source_of(service: str) -> str:
    """The CloudEvents source of a service's events."""
    return f"{SOURCE_PREFIX}{service}"


def producer_of(source: str) -> str:
    """The service named by a CloudEvents source, or "" when it is not one of ours."""
    return source.removeprefix(SOURCE_PREFIX) if source.startswith(SOURCE_PREFIX) else ""


def personal_data(description: str, **kwargs: Any) -> Any:
    """Declare a field that holds personal data: the outbox seals it, the schema says so."""
    return Field(
        description=description,
        json_schema_extra={PERSONAL_DATA_MARK: True, ENCRYPTION_MARK: ENCRYPTION_FORM},
        **kwargs,
    )


class EventData(BaseModel):
    """Base of every event payload: names its CloudEvents type and schema version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    account_id: UUID = Field(description="The account (tenant) the event is about; the Kafka key.")


DataT = TypeVar("DataT", bound=EventData)


class Envelope(BaseModel, Generic[DataT]):
    """A CloudEvents envelope; trace context travels beside it in Kafka headers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = Field(default="1.0", description="CloudEvents version.")
    id: UUID = Field(default_factory=uuid4, description="Unique event id; the inbox key.")
    source: str = Field(
        description="URI reference of the emitting service, e.g. /quittance/billing"
    )
    type: str = Field(description="Event type, e.g. invoice.issued")
    time: datetime = Field(description="When the fact happened (UTC).")
    subject: str = Field(description="The account id the event is about.")
    datacontenttype: Literal["application/json"] = Field(
        default="application/json", description="Media type of data."
    )
    schemaversion: int = Field(ge=1, description="Version of the data schema for this type.")
    data: DataT = Field(description="The event payload.")

    @model_validator(mode="after")
    def _type_matches_data(self) -> Envelope[DataT]:
        expected = getattr(type(self.data), "event_type", None)
        if expected is not None and self.type != expected:
            raise ValueError(f"type {self.type!r} does not match a {expected!r} payload")
        if self.subject != str(self.data.account_id):
            raise ValueError("subject must be the payload's account_id")
        return self

    @property
    def producer(self) -> str:
        """The service that emitted the event (the dispatcher checks it is the declared one)."""
        return producer_of(self.source)


@cache
def envelope_of(data_type: type[Any]) -> type[Envelope[Any]]:
    """`Envelope[data_type]`, kept: pydantic caches it only weakly, and once the garbage
    collector frees the class every event would build it again (a millisecond each)."""
    return Envelope.__class_getitem__(data_type)  # type: ignore[return-value]


def new_envelope(data: DataT, *, source: str, time: datetime | None = None) -> Envelope[DataT]:
    """Wrap an event payload in a fresh envelope with a new id."""
    # Parametrise by the payload's own class, so it serialises with all its fields.
    envelope_class: type[Envelope[DataT]] = envelope_of(type(data))
    return envelope_class(
        source=source_of(source),
        type=data.event_type,
        time=time or datetime.now(UTC),
        subject=str(data.account_id),
        schemaversion=data.schema_version,
        data=data,
    )
