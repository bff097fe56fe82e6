"""Routes of the email delivery log."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from billing.auth.policy import AnyUser
from billing.deliveries.models import EmailDeliveryPublic, EmailOutcome
from billing.dependencies import MAX_OFFSET, ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED

router = APIRouter(tags=["email deliveries"], responses={**ANY_ROUTE, **AUTHENTICATED})


@router.get("/email-deliveries", response_model=list[EmailDeliveryPublic])
async def list_email_deliveries(
    principal: AnyUser,
    services: ServicesDep,
    status: Annotated[EmailOutcome | None, Query(description="Only this status.")] = None,
    document_id: Annotated[
        UUID | None, Query(description="Only mail about this invoice, credit note or payment.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[EmailDeliveryPublic]:
    """The account's email delivery log, newest first: each invoice, reminder, receipt and
    notice the customers and users were sent, whether it was accepted by the mail server,
    deferred (tried again later), bounced (mail to that address then stops until it is
    corrected), or held back. Contents are not kept once sent."""
    deliveries = await services.deliveries.list(
        principal=principal, status=status, document_id=document_id, limit=limit, offset=offset
    )
    return [EmailDeliveryPublic.model_validate(delivery) for delivery in deliveries]
