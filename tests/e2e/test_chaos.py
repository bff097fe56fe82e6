"""The short version of `make chaos`: 35 s of load while every service and PostgreSQL are
killed with SIGKILL and started again; nothing lost (emails, payments from the gateway's
webhooks, receipts, audit entries, purges), nothing doubled, the trail verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.chaos import run_chaos

pytestmark = pytest.mark.e2e
SECONDS = 35  # `make chaos` runs for minutes; `make test` keeps to its 15
SEED = 20261124  # a fixed seed: the same kills in the same order, run after run


@pytest.mark.timeout(600)
@pytest.mark.clause("TERMINATION", "STAFF-ACCESS", "USE", "NO-PAN")
async def test_kill_9_of_every_service_and_postgres_under_load_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    findings = await run_chaos(SECONDS, SEED, tmp_path, log=print)
    print(findings.summary())
    assert sum(findings.kills.values()) >= 4, findings.kills
    assert findings.invoices > 0, findings.summary()
    assert findings.payments > 0, findings.summary()
    assert findings.reads > 0, findings.summary()
    assert findings.terminations > 0, findings.summary()
    assert findings.passed, findings.summary()


@pytest.mark.system  # eight service processes under load on two cores: in `make test-system`
@pytest.mark.timeout(900)
@pytest.mark.clause("TERMINATION", "STAFF-ACCESS", "USE", "NO-PAN")
async def test_two_instances_of_every_service_under_kill_9_of_anything_lose_and_double_nothing(
    tmp_path: Path,
) -> None:
    """Scale-out under faults: every service runs as two instances in one consumer group
    (they share the partitions, the relays, the sweeps); a kill takes one instance or the
    whole service, PostgreSQL, or the broker (durable: its topics in an S3 store, as a Kafka
    cluster's are on disk). Nothing is lost or doubled."""
    findings = await run_chaos(
        SECONDS * 2, SEED, tmp_path, log=print, workers=2, durable_broker=True
    )
    print(findings.summary())
    assert any("one instance" in victim for victim in findings.kills), findings.kills
    assert findings.kills["kafka"] > 0, findings.kills
    assert findings.invoices > 0, findings.summary()
    assert findings.payments > 0, findings.summary()
    assert findings.reads > 0, findings.summary()
    assert findings.terminations > 0, findings.summary()
    assert findings.passed, findings.summary()
