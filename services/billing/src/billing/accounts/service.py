"""Accounts: opening one with its owner, reading it."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.domain import Role
from billing.accounts.mail import MAIL_SETTINGS, mail_settings_changed
from billing.accounts.models import Account, AccountCreate, AccountDetailsChange, AppUser
from billing.auth.models import ApiKey, Principal
from billing.auth.passwords import hash_password
from billing.auth.service import hash_api_key, new_api_key
from billing.rectification.models import ChangeSubject
from billing.rectification.service import Notice, rectify
from shared.contracts import AccountPlanChanged
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork


async def get_account(
    session: AsyncSession, account_id: UUID, *, for_update: bool = False
) -> Account | None:
    """An account by id, locked for the transaction if asked."""
    return await session.get(Account, account_id, with_for_update=for_update)


async def account_owner(session: AsyncSession, account_id: UUID) -> AppUser:
    """The account's owner."""
    result = await session.exec(
        select(AppUser).where(AppUser.account_id == account_id, AppUser.role == Role.OWNER)
    )
    return result.one()


class AccountService:
    """Opening and reading accounts."""

    def __init__(self, *, sessions: SessionFactory, units: UnitsOfWork) -> None:
        self.sessions = sessions
        self.units = units

    async def open(self, *, request: AccountCreate) -> tuple[Account, AppUser, str]:
        """Create an account, its owner and the owner's API key."""
        api_key = new_api_key()
        password = request.owner.password
        password_hash = None if password is None else await hash_password(password)
        async with self.units() as work:
            account = Account(name=request.name, plan=request.plan)
            owner = AppUser(
                account_id=account.id,
                name=request.owner.name,
                email=str(request.owner.email),
                role=Role.OWNER,
                password_hash=password_hash,
            )
            work.session.add(account)
            await work.session.flush()
            work.session.add(owner)
            await work.session.flush()
            work.session.add(
                ApiKey(key_hash=hash_api_key(api_key), account_id=account.id, user_id=owner.id)
            )
            work.emit(mail_settings_changed(account))
            # Retention keeps the account's data for the plan's times (PLAN-RETENTION).
            work.emit(
                AccountPlanChanged(
                    account_id=account.id, plan=account.plan, changed_at=datetime.now(UTC)
                )
            )
        return account, owner, api_key

    async def get(self, *, principal: Principal) -> Account:
        """The caller's account."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            account = await get_account(session, account_id)
        assert account is not None
        return account

    async def change_details(
        self, *, principal: Principal, change: AccountDetailsChange
    ) -> Account:
        """Correct the company's details; the owner is told which changed (RECTIFY)."""
        account_id = principal.require_user()
        async with self.units() as work:
            # The lock issuing takes: an invoice is numbered with the details before or after.
            account = await get_account(work.session, account_id, for_update=True)
            assert account is not None
            owner = await account_owner(work.session, account_id)
            changed = await rectify(
                work,
                principal=principal,
                subject=ChangeSubject.ACCOUNT,
                row=account,
                patch=change,
                notice=Notice(name=owner.name, email=owner.email),
            )
            if MAIL_SETTINGS.intersection(changed):
                work.emit(mail_settings_changed(account))
        return account
