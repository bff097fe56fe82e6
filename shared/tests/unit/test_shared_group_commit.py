"""Group commit: what queues while a batch runs goes together; one bad item fails alone."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence

import pytest

from shared.group_commit import GroupCommit, Submitted

request_name: contextvars.ContextVar[str] = contextvars.ContextVar("request_name", default="")


class Recorder:
    """A batch runner that records its batches; items named "bad" break a batch, "refused"
    are refused alone; it holds the first batch until released, so others can queue."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.contexts: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, key: str, batch: Sequence[Submitted[str]]) -> list[str | Exception]:
        self.batches.append([s.item for s in batch])
        self.contexts.extend(s.context.run(request_name.get) for s in batch)
        await self.release.wait()
        if "bad" in [s.item for s in batch]:
            raise ValueError("a bad item breaks its batch")
        return [
            ValueError(f"{s.item} refused") if s.item == "refused" else f"{key}:{s.item}"
            for s in batch
        ]


async def _let_tasks_run() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _submit(commit: GroupCommit[str, str, str], key: str, item: str) -> str:
    request_name.set(f"request {item}")
    return await commit.submit(key, item)


async def test_a_lone_item_runs_at_once_and_what_queues_meanwhile_runs_as_one_batch() -> None:
    runner = Recorder()
    commit: GroupCommit[str, str, str] = GroupCommit(runner)
    first = asyncio.create_task(_submit(commit, "acct", "a"))
    await _let_tasks_run()
    assert runner.batches == [["a"]], "nothing waits for a batch to fill"
    rest = [asyncio.create_task(_submit(commit, "acct", item)) for item in "bcd"]
    await _let_tasks_run()
    runner.release.set()
    assert await asyncio.gather(first, *rest) == ["acct:a", "acct:b", "acct:c", "acct:d"]
    assert runner.batches == [["a"], ["b", "c", "d"]]
    assert runner.contexts == ["request a", "request b", "request c", "request d"]


async def test_keys_do_not_wait_for_each_other() -> None:
    runner = Recorder()
    commit: GroupCommit[str, str, str] = GroupCommit(runner)
    tasks = [asyncio.create_task(_submit(commit, key, "x")) for key in ("one", "two")]
    await _let_tasks_run()
    assert runner.batches == [["x"], ["x"]], "each key has its own batch in flight"
    runner.release.set()
    assert await asyncio.gather(*tasks) == ["one:x", "two:x"]


async def test_a_failing_batch_is_retried_item_by_item_so_only_the_bad_item_fails() -> None:
    runner = Recorder()
    runner.release.set()
    commit: GroupCommit[str, str, str] = GroupCommit(runner)
    results = await asyncio.gather(
        *(_submit(commit, "acct", item) for item in ("a", "bad", "b")), return_exceptions=True
    )
    assert results[0] == "acct:a"
    assert results[2] == "acct:b"
    assert isinstance(results[1], ValueError)
    assert runner.batches == [["a", "bad", "b"], ["a"], ["bad"], ["b"]]


async def test_an_item_refused_alone_does_not_fail_its_batch() -> None:
    runner = Recorder()
    runner.release.set()
    commit: GroupCommit[str, str, str] = GroupCommit(runner)
    results = await asyncio.gather(
        *(_submit(commit, "acct", item) for item in ("a", "refused", "b")),
        return_exceptions=True,
    )
    assert results[0] == "acct:a"
    assert results[2] == "acct:b"
    assert isinstance(results[1], ValueError)
    assert runner.batches == [["a", "refused", "b"]], "refused in the batch, not retried"


async def test_an_item_whose_caller_left_before_its_batch_started_is_skipped() -> None:
    runner = Recorder()
    commit: GroupCommit[str, str, str] = GroupCommit(runner)
    first = asyncio.create_task(_submit(commit, "acct", "a"))
    await _let_tasks_run()
    gone = asyncio.create_task(_submit(commit, "acct", "gone"))
    stays = asyncio.create_task(_submit(commit, "acct", "stays"))
    await _let_tasks_run()
    gone.cancel()
    runner.release.set()
    assert await first == "acct:a"
    assert await stays == "acct:stays"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert runner.batches == [["a"], ["stays"]]


async def test_a_batch_larger_than_the_limit_is_split() -> None:
    runner = Recorder()
    commit: GroupCommit[str, str, str] = GroupCommit(runner, max_batch=2)
    first = asyncio.create_task(_submit(commit, "acct", "a"))
    await _let_tasks_run()
    rest = [asyncio.create_task(_submit(commit, "acct", item)) for item in "bcde"]
    await _let_tasks_run()
    runner.release.set()
    await asyncio.gather(first, *rest)
    assert runner.batches == [["a"], ["b", "c"], ["d", "e"]]
