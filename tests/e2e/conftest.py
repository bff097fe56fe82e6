"""The four services as separate OS processes on the test session's real servers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devstack.stack import Stack


@pytest.fixture(scope="module")
def system(infrastructure: Stack) -> Iterator[Stack]:
    """Migrate and start billing, notifications, retention and audit; stop them afterwards."""
    infrastructure.topic_prefix = f"e2e{uuid.uuid4().hex[:8]}."
    try:
        infrastructure.start_services()
        yield infrastructure
    finally:
        infrastructure.stop_services()
