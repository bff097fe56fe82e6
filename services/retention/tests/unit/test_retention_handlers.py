"""Retention's handlers on the in-memory broker: each saga step reaches the service once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from devstack.testing import HandlerHarness
from retention.handlers import create_routes
from shared.contracts import (
    AccountTerminated,
    ExportDelivered,
    ExportFile,
    ExportSliceChunk,
    ExportSliceWritten,
    PurgeCompleted,
)
from shared.telemetry import create_telemetry


class _Saga:
    def __init__(self) -> None:
        self.steps: list[tuple[str, Any, str]] = []

    async def start_termination(self, *, terminated: AccountTerminated, work: Any) -> None:
        self.steps.append(("start", terminated, ""))

    async def receive_slice_chunk(self, *, event: Any, work: Any) -> None:
        self.steps.append(("chunk", event.data, event.producer))

    async def record_slice(self, *, event: Any, work: Any) -> None:
        self.steps.append(("slice", event.data, event.producer))

    async def record_delivery(self, *, delivered: ExportDelivered, work: Any) -> None:
        self.steps.append(("delivered", delivered, ""))

    async def record_purge(self, *, event: Any, work: Any) -> None:
        self.steps.append(("purged", event.data, event.producer))


@pytest.mark.clause("TERMINATION")
async def test_termination_every_step_reaches_the_saga_once_with_its_producer() -> None:
    """TERMINATION: the saga learns which participant answered from the event's producer."""
    saga = _Saga()
    harness = HandlerHarness(
        create_routes(
            service=saga,  # type: ignore[arg-type]
            sweeps=None,  # type: ignore[arg-type]
            telemetry=create_telemetry("retention"),
        ),
        service="retention",
    )
    account_id, saga_id, transfer_id = uuid4(), uuid4(), uuid4()
    terminated = AccountTerminated(
        account_id=account_id,
        account_name="Acme Ltd",
        owner_email="ada@acme.example.com",
        terminated_at=datetime.now(UTC),
    )
    chunk = ExportSliceChunk(
        account_id=account_id,
        saga_id=saga_id,
        transfer_id=transfer_id,
        file="invoice.csv",
        index=0,
        content="eJwDAAAAAAE=",
    )
    written = ExportSliceWritten(
        account_id=account_id,
        saga_id=saga_id,
        transfer_id=transfer_id,
        files=[
            ExportFile(
                name="invoice.csv",
                record_type="invoice",
                records=0,
                sha256="0",
                crc32=0,
                size=0,
                chunks=1,
            )
        ],
    )
    delivered = ExportDelivered(account_id=account_id, saga_id=saga_id, message_id="<m@x>")
    purged = PurgeCompleted(account_id=account_id, saga_id=saga_id, rows_deleted=7)
    await harness.deliver(
        (terminated, "billing"),
        (chunk, "audit"),
        (written, "audit"),
        (delivered, "notifications"),
        (purged, "billing"),
        repeat=2,
    )
    assert saga.steps == [
        ("start", terminated, ""),
        ("chunk", chunk, "audit"),
        ("slice", written, "audit"),
        ("delivered", delivered, ""),
        ("purged", purged, "billing"),
    ]
    assert harness.dead == []
