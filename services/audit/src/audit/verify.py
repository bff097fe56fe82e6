"""`python -m audit.verify [--account ID] [--first N] [--last N]`: check the chains (or one
account's, or the global sequences N to N) against the signed checkpoints, with audit's own
settings (`AUDIT_*`); prints what was checked and the first problem, exits 1 on one."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from uuid import UUID

from audit.api import verification_body
from audit.main import create_service
from audit.settings import AuditSettings
from shared.db import create_engine, create_session_factory


async def _main(account_id: UUID | None, first: int, last: int | None) -> int:
    settings = AuditSettings()
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        service = create_service(settings, sessions=create_session_factory(engine))
        result = await service.verify(account_id, first=first, last=last)
    finally:
        await engine.dispose()
    print(json.dumps(verification_body(result), indent=2))
    return 0 if result.finding is None else 1


def _sequence(text: str) -> int:
    """A global sequence: a whole number from 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("a global sequence runs from 1")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m audit.verify", description=__doc__)
    parser.add_argument("--account", type=UUID, help="only this account's chain")
    parser.add_argument("--first", type=_sequence, default=1, help="from this global sequence")
    parser.add_argument("--last", type=_sequence, help="up to this global sequence")
    arguments = parser.parse_args()
    if arguments.last is not None and arguments.last < arguments.first:
        parser.error("--last must not come before --first")
    sys.exit(asyncio.run(_main(arguments.account, arguments.first, arguments.last)))
