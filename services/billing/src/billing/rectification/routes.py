"""Routes of the record of corrections."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from billing.auth.policy import Administrator
from billing.dependencies import MAX_OFFSET, ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED
from billing.rectification.models import ChangePublic

router = APIRouter(tags=["accounts"], responses={**ANY_ROUTE, **AUTHENTICATED})


@router.get("/account/changes", response_model=list[ChangePublic])
async def list_changes(
    principal: Administrator,
    services: ServicesDep,
    subject_id: Annotated[UUID | None, Query(description="Only changes of this.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[ChangePublic]:
    """Who corrected which details of the company, its users and customers, and when."""
    changes = await services.changes.list(
        principal=principal, subject_id=subject_id, limit=limit, offset=offset
    )
    return [ChangePublic.model_validate(change) for change in changes]
