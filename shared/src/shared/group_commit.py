"""Group commit: changes that queue for the same lock are made together, in one transaction."""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeAlias, TypeVar

Key = TypeVar("Key", bound=Hashable)
Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 64


@dataclass
class Submitted(Generic[Item]):
    """An item with the context it was submitted in (its trace), to emit its events under."""

    item: Item
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


# What a batch runner returns for each item, in order: its result, or the error refusing it
# alone (the others still commit). Raising fails the whole batch.
Outcome: TypeAlias = Result | Exception
BatchRunner: TypeAlias = Callable[
    [Key, Sequence[Submitted[Item]]], Awaitable[Sequence[Outcome[Result]]]
]


@dataclass
class _Pending(Generic[Item, Result]):
    submitted: Submitted[Item]
    future: asyncio.Future[Result]


class GroupCommit(Generic[Key, Item, Result]):
    """Runs the items of one key in batches: whatever queued while the previous batch ran.

    Changes serialised by one row lock (an account's invoice numbering) then pay for the lock,
    the round trips and the commit once per batch instead of once per item. Nothing waits for
    a batch to fill: a lone item runs at once. A batch that fails is run again item by item, so
    one bad item fails alone. An item whose caller went away before its batch started is
    skipped; once started, it commits with the others.
    """

    def __init__(
        self, run_batch: BatchRunner[Key, Item, Result], *, max_batch: int = MAX_BATCH
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queues: dict[Key, deque[_Pending[Item, Result]]] = {}
        self._drainers: dict[Key, asyncio.Task[None]] = {}

    async def submit(self, key: Key, item: Item) -> Result:
        """Queue item under key and wait for its outcome."""
        pending = _Pending(Submitted(item), asyncio.get_running_loop().create_future())
        self._queues.setdefault(key, deque()).append(pending)
        if key not in self._drainers:
            self._drainers[key] = asyncio.create_task(self._drain(key))
        result: Result = await pending.future
        return result

    async def _drain(self, key: Key) -> None:
        queue = self._queues[key]
        try:
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), self._max_batch))]
                live = [pending for pending in batch if not pending.future.done()]
                if live:
                    await self._run(key, live)
        except BaseException as exc:
            # Cancelled at shutdown: nobody may wait forever for an outcome.
            for pending in queue:
                _settle(pending, RuntimeError("the service is stopping; try again"))
            queue.clear()
            if not isinstance(exc, Exception):
                raise
        finally:
            # No await between the queue found empty and this: a submit cannot slip between.
            del self._queues[key]
            del self._drainers[key]

    async def _run(self, key: Key, batch: list[_Pending[Item, Result]]) -> None:
        try:
            outcomes = await self._run_batch(key, [pending.submitted for pending in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            for pending in batch:  # alone, so that only the bad item fails
                await self._run(key, [pending])
            return
        except BaseException as exc:
            for pending in batch:
                _settle(pending, RuntimeError("the service is stopping; try again"))
            raise exc from None
        for pending, outcome in zip(batch, outcomes, strict=True):
            _settle(pending, outcome)


def _settle(pending: _Pending[Item, Result], outcome: Result | Exception) -> None:
    if pending.future.done():  # its caller went away
        return
    if isinstance(outcome, Exception):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(outcome)
