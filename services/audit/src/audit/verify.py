"""`python -m audit.verify [account id]`: check the chains against the signed checkpoints, with
audit's own settings (`AUDIT_*`); prints what was checked and the first problem, exits 1 on one."""

from __future__ import annotations

import asyncio
import json
import sys
from uuid import UUID

from audit.api import verification_body
from audit.main import create_service
from audit.settings import AuditSettings
from shared.db import create_engine, create_session_factory


async def _main(account_id: UUID | None) -> int:
    settings = AuditSettings()
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        service = create_service(settings, sessions=create_session_factory(engine))
        result = await service.verify(account_id)
    finally:
        await engine.dispose()
    print(json.dumps(verification_body(result), indent=2))
    return 0 if result.finding is None else 1


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if len(arguments) > 1:
        sys.exit("usage: python -m audit.verify [account id]")
    sys.exit(asyncio.run(_main(UUID(arguments[0]) if arguments else None)))
