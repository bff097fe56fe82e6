"""Termination: the owner ends the contract; the saga exports, delivers, purges (TERMINATION)."""

from __future__ import annotations

from datetime import UTC, datetime

from billing.accounts.domain import AccountStatus
from billing.accounts.models import Account
from billing.accounts.service import account_owner, get_account
from billing.auth.models import Principal
from billing.auth.second_factor import IdentityCheck
from billing.errors import ConflictError, PermissionDeniedError
from shared.contracts import AccountTerminated
from shared.unit_of_work import UnitsOfWork


class TerminationService:
    """Ends an account's contract and announces it."""

    def __init__(self, *, units: UnitsOfWork, identity: IdentityCheck) -> None:
        self.units = units
        self.identity = identity

    async def terminate(
        self, *, principal: Principal, password: str, code: str | None = None
    ) -> Account:
        """End the contract, confirmed by the owner's password, and emit `account.terminated`
        in the same transaction; the account is read-only from then on."""
        account_id = principal.require_user()
        assert principal.user_id is not None
        await self.identity.confirm(user_id=principal.user_id, password=password, code=code)
        async with self.units() as work:
            # Locked: two termination requests at once make one saga, not two.
            account = await get_account(work.session, account_id, for_update=True)
            assert account is not None
            if account.status is AccountStatus.TERMINATED:
                raise ConflictError("the account is already terminated")
            owner = await account_owner(work.session, account_id)
            if owner.id != principal.user_id:
                raise PermissionDeniedError("only the owner terminates")
            account.status = AccountStatus.TERMINATED
            account.terminated_at = datetime.now(UTC)
            work.session.add(account)
            work.emit(
                AccountTerminated(
                    account_id=account.id,
                    account_name=account.name,
                    owner_email=owner.email,
                    terminated_at=account.terminated_at,
                    plan=account.plan,
                ),
            )
        return account
