"""The four services as separate OS processes on the test session's real servers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from devstack.stack import Stack
from retention.domain import PLANS

# Retention's standard plan keeps a terminated account for this many seconds, not 14 days: a
# saga stays in flight long enough to be watched (the dashboard's test), then purges, so no
# export outlives the tests. The other plans keep their terms.
STANDARD_GRACE_S = 45


@pytest.fixture(scope="package")
def system(infrastructure: Stack) -> Iterator[Stack]:
    """Migrate and start billing, notifications, retention and audit once for the end-to-end
    tests (starting them takes a while); stop them afterwards."""
    plans = {
        name: {
            "grace_period": (
                STANDARD_GRACE_S if name == "standard" else terms.grace_period.total_seconds()
            ),
            "kept": {str(c): p.total_seconds() for c, p in terms.kept.items()},
        }
        for name, terms in PLANS.items()
    }
    infrastructure.topic_prefix = f"e2e{uuid.uuid4().hex[:8]}."
    infrastructure.service_overrides = {"retention": {"RETENTION_PLANS": json.dumps(plans)}}
    try:
        infrastructure.start_services()
        yield infrastructure
    finally:
        infrastructure.stop_services()
        infrastructure.service_overrides = {}
