"""Sending: every queued email goes only after its queueing committed, a few at a time, while
the consumer goes on (the service's own mechanism, not each handler's)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from notifications.models import OutgoingEmail
from notifications.services import NotificationsService
from notifications.settings import NotificationsSettings
from shared.contracts import MailPresentation, UserInvited, new_envelope


class _Session:
    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, row: Any) -> None:
        self.added.append(row)


class _Work:
    """A unit of work that records what waits for its commit."""

    def __init__(self) -> None:
        self.session = _Session()
        self.after: list[Any] = []

    def after_commit(self, action: Any) -> None:
        self.after.append(action)

    async def commit(self) -> None:
        for action in self.after:
            await action()


class _Sends:
    """Stands in for `deliver`: each send waits until the test lets it finish."""

    def __init__(self) -> None:
        self.started: list[UUID] = []
        self.release = asyncio.Event()
        self.fail = False

    async def __call__(self, email_id: UUID) -> bool:
        self.started.append(email_id)
        await self.release.wait()
        if self.fail:
            raise ConnectionError("the server went away")
        return True


def _service(concurrent_sends: int, sends: _Sends) -> NotificationsService:
    service = NotificationsService(
        sessions=None,  # type: ignore[arg-type]
        units=None,  # type: ignore[arg-type]
        mailer=None,  # type: ignore[arg-type]
        export_store=None,  # type: ignore[arg-type]
        settings=NotificationsSettings(concurrent_sends=concurrent_sends),
    )
    service.deliver = sends  # type: ignore[method-assign]
    return service


def _invitation() -> UserInvited:
    return UserInvited(
        account_id=uuid4(),
        user_id=uuid4(),
        account_name="Acme Ltd",
        inviter_name="Ada",
        name="Bob",
        email="bob@example.com",
        role="accountant",
        token="t" * 32,
        expires_at=datetime.now(UTC) + timedelta(days=7),
        presentation=MailPresentation(),
    )


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.clause("USE")
async def test_use_a_queued_email_is_sent_only_once_its_queueing_committed() -> None:
    sends = _Sends()
    service = _service(4, sends)
    work = _Work()
    email_id = await service.queue_invitation_email(
        event=new_envelope(_invitation(), source="billing"),
        work=work,  # type: ignore[arg-type]
    )
    (queued,) = work.session.added
    assert isinstance(queued, OutgoingEmail)
    assert queued.id == email_id
    await _settle()
    assert sends.started == [], "nothing is sent before the commit"
    await work.commit()
    await _settle()
    assert sends.started == [email_id], "sent once, after the commit"
    sends.release.set()
    await _settle()


async def test_sends_run_side_by_side_and_the_consumer_waits_only_for_a_free_slot() -> None:
    sends = _Sends()
    service = _service(2, sends)
    first, second, third = uuid4(), uuid4(), uuid4()
    await service.send_after_commit(first)
    await service.send_after_commit(second)  # returns at once: a slot was free
    await _settle()
    assert sends.started == [first, second], "two under way together"
    waiting = asyncio.create_task(service.send_after_commit(third))
    await _settle()
    assert not waiting.done(), "every slot taken: the consumer waits"
    sends.release.set()
    await asyncio.wait_for(waiting, timeout=10)
    await _settle()
    assert sends.started == [first, second, third]


async def test_a_failed_send_gives_its_slot_back(caplog: pytest.LogCaptureFixture) -> None:
    sends = _Sends()
    sends.fail = True
    sends.release.set()
    service = _service(1, sends)
    for _ in range(3):  # with the one slot kept by a failure, the second call would hang
        await asyncio.wait_for(service.send_after_commit(uuid4()), timeout=10)
        await _settle()
    assert len(sends.started) == 3
    assert "the sweeper tries again" in caplog.text
