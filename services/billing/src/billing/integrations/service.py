"""Integrations: enable with scopes, list, revoke at once; record every read as a data access."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

from sqlalchemy import func, update
from sqlmodel import col, select

from billing.auth.models import ApiKey, Principal
from billing.auth.service import hash_api_key, new_api_key
from billing.errors import ConflictError, NotFoundError
from billing.integrations.models import (
    MAX_INTEGRATIONS_PER_ACCOUNT,
    Integration,
    IntegrationCreate,
)
from shared.contracts import AccessActor, AccessOutcome, AccessPurpose, DataAccessed
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork


class IntegrationService:
    """An account's integrations."""

    def __init__(self, *, sessions: SessionFactory, units: UnitsOfWork) -> None:
        self.sessions = sessions
        self.units = units

    async def enable(
        self, *, principal: Principal, request: IntegrationCreate
    ) -> tuple[Integration, str]:
        """The integration and its API key (shown once), limited to its scopes."""
        account_id = principal.require_user()
        secret = new_api_key()
        async with self.units() as work:
            live = await work.session.exec(
                select(func.count())
                .select_from(Integration)
                .where(Integration.account_id == account_id, col(Integration.revoked_at).is_(None))
            )
            if live.one() >= MAX_INTEGRATIONS_PER_ACCOUNT:
                raise ConflictError(
                    f"an account has at most {MAX_INTEGRATIONS_PER_ACCOUNT} integrations",
                    field="name",
                )
            integration = Integration(
                id=uuid4(),
                account_id=account_id,
                name=request.name,
                scopes=sorted({scope.value for scope in request.scopes}),
                enabled_by_user_id=principal.user_id,
            )
            work.session.add(integration)
            await work.session.flush()  # the integration before the key that names it
            work.session.add(
                ApiKey(
                    key_hash=hash_api_key(secret),
                    name=f"integration: {request.name}",
                    scopes=integration.scopes,
                    account_id=account_id,
                    user_id=principal.user_id,
                    integration_id=integration.id,
                )
            )
        return integration, secret

    async def list(self, *, principal: Principal) -> Sequence[Integration]:
        """The account's integrations, revoked ones too, newest first."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            found = await session.exec(
                select(Integration)
                .where(Integration.account_id == account_id)
                .order_by(col(Integration.created_at).desc(), col(Integration.id))
            )
            return found.all()

    async def revoke(self, *, principal: Principal, integration_id: UUID) -> Integration:
        """Shut the third party out at once: its key stops working with this commit."""
        account_id = principal.require_user()
        async with self.units() as work:
            found = await work.session.exec(
                select(Integration)
                .where(Integration.account_id == account_id, Integration.id == integration_id)
                .with_for_update()
            )
            integration: Integration | None = found.first()
            if integration is None:
                raise NotFoundError("no such integration in this account")
            if integration.revoked_at is None:
                now = datetime.now(UTC)
                integration.revoked_at = now
                work.session.add(integration)
                await work.session.exec(
                    update(ApiKey)
                    .where(
                        col(ApiKey.integration_id) == integration.id,
                        col(ApiKey.revoked_at).is_(None),
                    )
                    .values(revoked_at=now)
                )
        return integration

    async def record_read(
        self,
        *,
        principal: Principal,
        resource_type: str,
        resource_id: str,
        refusal: str | None,
    ) -> None:
        """`data.accessed` for one read by an integration (INTEGRATIONS), refused ones too,
        written before the read answers."""
        assert principal.integration_id is not None
        assert principal.account_id is not None
        async with self.units() as work:
            work.emit(
                DataAccessed(
                    account_id=principal.account_id,
                    access_id=uuid4(),
                    actor=AccessActor.INTEGRATION,
                    actor_id=str(principal.integration_id),
                    actor_name=principal.name,
                    purpose=AccessPurpose.INTEGRATION,
                    reason=refusal or "read through the integration the account enabled",
                    grant_id=principal.integration_id,
                    outcome=AccessOutcome.REFUSED if refusal else AccessOutcome.GRANTED,
                    resource_type=resource_type,
                    resource_id=resource_id,
                    accessed_at=datetime.now(UTC),
                )
            )
