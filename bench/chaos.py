"""Load with faults: `chaos_effects_lost` and `chaos_effects_doubled` (both must be 0).

`make chaos`'s run for CHAOS_BENCH_S seconds (120) on the bench's servers: customers issue
invoices, staff read under grants, accounts are terminated, while a service or PostgreSQL is
killed with SIGKILL every few seconds. The baseline is the number of effects checked (invoices
emailed, reads recorded, accounts purged), so the ratio is the share lost or doubled. An email
counts once per Message-ID; `chaos_messages_redelivered` counts the same message sent again.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid

from devstack.chaos import Chaos
from devstack.stack import Stack

Result = tuple[str, float, str, str, float]


async def bench_chaos(stack: Stack) -> list[Result]:
    """Start the four services, run the chaos, stop them."""
    stack.topic_prefix = f"bench{uuid.uuid4().hex[:6]}."
    seconds = float(os.environ.get("CHAOS_BENCH_S", "120"))
    await asyncio.to_thread(stack.start_services)
    try:
        seed = random.randrange(1 << 30)  # a fresh run each time
        findings = await Chaos(stack, seconds=seconds, seed=seed, log=_note).run()
    finally:
        stack.stop_services()
    _note(findings.summary())
    checked = max(findings.checked, 1)
    return [
        ("chaos_effects_lost", findings.lost, "effects", "chaos_effects_checked", checked),
        ("chaos_effects_doubled", findings.doubled, "effects", "chaos_effects_checked", checked),
        # The same message (same Message-ID) sent again after a kill between the SMTP server's
        # acceptance and the commit that records it: SMTP has no idempotency key.
        (
            "chaos_messages_redelivered",
            findings.redelivered,
            "messages",
            "chaos_effects_checked",
            checked,
        ),
    ]


def _note(text: str) -> None:
    print(f"# chaos bench: {text}", file=sys.stderr, flush=True)
