"""Billing's use cases: each state change and the events it emits commit in one transaction."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from uuid import UUID, uuid4

from billing.domain import (
    AccountStatus,
    InvoiceStateError,
    InvoiceStatus,
    Role,
    ensure_issuable,
    format_invoice_number,
    invoice_total,
    line_amount,
)
from billing.models import (
    AccessGrant,
    AccessGrantCreate,
    Account,
    AccountCreate,
    ApiKey,
    AppUser,
    Customer,
    CustomerCreate,
    Invoice,
    InvoiceCreate,
    InvoiceLine,
    StaffCreate,
    StaffMember,
)
from billing.repository import BillingRepository
from shared.contracts import (
    AccessActor,
    AccessPurpose,
    AccountTerminated,
    DataAccessed,
    InvoiceIssued,
    IssuedInvoiceCustomer,
)
from shared.contracts import InvoiceLine as IssuedLine
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork

API_KEY_PREFIX = "qk_"


class BillingError(Exception):
    """A request billing refuses; the API turns it into a problem detail."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotAuthenticatedError(BillingError):
    """No valid credential."""


class PermissionDeniedError(BillingError):
    """The caller may not do this."""


class NotFoundError(BillingError):
    """Nothing of that id in the caller's account."""


class InvalidReferenceError(BillingError):
    """A field names something that does not exist in the caller's account."""


class ConflictError(BillingError):
    """The resource's state does not allow the change."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user of an account, or a staff member."""

    kind: Literal["user", "staff"]
    name: str
    account_id: UUID | None = None
    user_id: UUID | None = None
    role: Role | None = None
    staff_id: UUID | None = None

    def require_user(self, *roles: Role) -> UUID:
        """The caller's account id, if the caller is a user with one of the roles."""
        if self.kind != "user" or self.account_id is None:
            raise PermissionDeniedError("only users of an account may do this")
        if roles and self.role not in roles:
            raise PermissionDeniedError(f"needs the role {' or '.join(roles)}")
        return self.account_id


@dataclass(frozen=True)
class InvoiceWithLines:
    """An invoice (draft or issued) with its lines."""

    invoice: Invoice
    lines: list[InvoiceLine]


def _now() -> datetime:
    return datetime.now(UTC)


def _hash_key(api_key: str) -> str:
    # API keys carry 256 random bits, so a fast hash is enough (passwords will get Argon2id).
    return hashlib.sha256(api_key.encode()).hexdigest()


def _new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class BillingService:
    """The billing use cases."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        units: UnitsOfWork,
        max_grant_hours: int = 72,
    ) -> None:
        self.sessions = sessions
        self.units = units
        self.max_grant_hours = max_grant_hours

    # ------------------------------------------------------------ accounts and credentials

    async def open_account(self, *, request: AccountCreate) -> tuple[Account, AppUser, str]:
        """Create an account, its owner and the owner's API key."""
        api_key = _new_api_key()
        async with self.units() as work:
            repo = BillingRepository(work.session)
            account = Account(name=request.name, plan=request.plan)
            owner = AppUser(
                account_id=account.id,
                name=request.owner.name,
                email=str(request.owner.email),
                role=Role.OWNER,
            )
            repo.add(account)
            await repo.flush()
            repo.add(owner)
            await repo.flush()
            repo.add(ApiKey(key_hash=_hash_key(api_key), account_id=account.id, user_id=owner.id))
        return account, owner, api_key

    async def register_staff(self, *, request: StaffCreate) -> tuple[StaffMember, str]:
        """Register a named staff member and give them an API key."""
        api_key = _new_api_key()
        async with self.units() as work:
            repo = BillingRepository(work.session)
            if await repo.find_staff_by_email(str(request.email)) is not None:
                raise ConflictError("a staff member with this email exists", field="email")
            staff = StaffMember(name=request.name, email=str(request.email))
            repo.add(staff)
            await repo.flush()
            repo.add(ApiKey(key_hash=_hash_key(api_key), staff_id=staff.id))
        return staff, api_key

    async def authenticate(self, *, api_key: str) -> Principal:
        """Resolve a bearer API key to its user or staff member."""
        async with self.sessions() as session:
            credential = await BillingRepository(session).find_credential(_hash_key(api_key))
        if credential is None:
            raise NotAuthenticatedError("unknown or revoked API key")
        _, user, account, staff = credential
        if staff is not None:
            return Principal(kind="staff", name=staff.name, staff_id=staff.id)
        assert user is not None
        assert account is not None
        if account.status is not AccountStatus.ACTIVE:
            raise PermissionDeniedError("the account is terminated")
        return Principal(
            kind="user", name=user.name, account_id=account.id, user_id=user.id, role=user.role
        )

    async def get_account(self, *, principal: Principal) -> Account:
        """The caller's account."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            account = await BillingRepository(session).get_account(account_id)
        assert account is not None
        return account

    async def terminate_account(self, *, principal: Principal) -> Account:
        """End the contract: the termination saga exports, delivers, then purges (TERMINATION)."""
        account_id = principal.require_user(Role.OWNER)
        async with self.units() as work:
            repo = BillingRepository(work.session)
            # Locked: two termination requests at once make one saga, not two.
            account = await repo.get_account(account_id, for_update=True)
            assert account is not None
            if account.status is AccountStatus.TERMINATED:
                raise ConflictError("the account is already terminated")
            owner = await repo.account_owner(account_id)
            account.status = AccountStatus.TERMINATED
            account.terminated_at = _now()
            repo.add(account)
            work.emit(
                AccountTerminated(
                    account_id=account.id,
                    account_name=account.name,
                    owner_email=owner.email,
                    terminated_at=account.terminated_at,
                ),
            )
        return account

    # ------------------------------------------------------------ customers and invoices

    async def create_customer(self, *, principal: Principal, request: CustomerCreate) -> Customer:
        """Add a customer to the caller's account."""
        account_id = principal.require_user()
        customer = Customer(
            account_id=account_id,
            name=request.name,
            email=str(request.email),
            address=request.address,
        )
        async with self.units() as work:
            BillingRepository(work.session).add(customer)
        return customer

    async def list_customers(
        self, *, principal: Principal, limit: int, offset: int
    ) -> list[Customer]:
        """The caller's customers."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            return await BillingRepository(session).list_customers(
                account_id, limit=limit, offset=offset
            )

    async def get_customer(self, *, principal: Principal, customer_id: UUID) -> Customer:
        """One of the caller's customers."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            customer = await BillingRepository(session).get_customer(account_id, customer_id)
        if customer is None:
            raise NotFoundError("no such customer in this account")
        return customer

    async def draft_invoice(
        self, *, principal: Principal, request: InvoiceCreate
    ) -> InvoiceWithLines:
        """Create a draft invoice for one of the caller's customers."""
        account_id = principal.require_user()
        invoice_id = uuid4()
        lines = [
            InvoiceLine(
                invoice_id=invoice_id,
                account_id=account_id,
                position=index,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line_amount(line.quantity, line.unit_price, request.currency),
            )
            for index, line in enumerate(request.lines, start=1)
        ]
        invoice = Invoice(
            id=invoice_id,
            account_id=account_id,
            customer_id=request.customer_id,
            currency=request.currency,
            due_date=request.due_date,
            total=invoice_total([line.amount for line in lines]),
        )
        async with self.units() as work:
            repo = BillingRepository(work.session)
            if await repo.get_customer(account_id, request.customer_id) is None:
                raise InvalidReferenceError("no such customer in this account", field="customer_id")
            repo.add(invoice, *lines)  # the unit of work inserts them in foreign-key order
        return InvoiceWithLines(invoice, lines)

    async def get_invoice(self, *, principal: Principal, invoice_id: UUID) -> InvoiceWithLines:
        """One of the caller's invoices with its lines."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            repo = BillingRepository(session)
            invoice = await repo.get_invoice(account_id, invoice_id)
            if invoice is None:
                raise NotFoundError("no such invoice in this account")
            return InvoiceWithLines(invoice, await repo.invoice_lines(invoice_id))

    async def issue_invoice(self, *, principal: Principal, invoice_id: UUID) -> InvoiceWithLines:
        """Number a draft, fix its issue date, and emit `invoice.issued` with it."""
        account_id = principal.require_user()
        async with self.units() as work:
            repo = BillingRepository(work.session)
            found = await repo.invoice_for_issue(account_id, invoice_id)
            if found is None:
                raise NotFoundError("no such invoice in this account")
            invoice, account, customer = found
            try:
                ensure_issuable(invoice.status)
            except InvoiceStateError as exc:
                raise ConflictError(str(exc), field="status") from exc
            lines = await repo.invoice_lines(invoice.id)
            # The numbering lock is taken last: from here to commit, only writes remain.
            invoice.number = format_invoice_number(await repo.take_invoice_number(account_id))
            invoice.status = InvoiceStatus.ISSUED
            invoice.issue_date = date.today()
            invoice.issued_at = _now()
            repo.add(invoice)
            work.emit(
                InvoiceIssued(
                    account_id=account_id,
                    invoice_id=invoice.id,
                    number=invoice.number,
                    seller_name=account.name,
                    customer=IssuedInvoiceCustomer(
                        customer_id=customer.id, name=customer.name, email=customer.email
                    ),
                    currency=invoice.currency,
                    lines=[
                        IssuedLine(
                            description=line.description,
                            quantity=line.quantity,
                            unit_price=line.unit_price,
                            amount=line.amount,
                        )
                        for line in lines
                    ],
                    total=invoice.total,
                    issue_date=invoice.issue_date,
                    due_date=invoice.due_date,
                ),
            )
        return InvoiceWithLines(invoice, lines)

    # ------------------------------------------------------------ staff access

    async def open_access_grant(
        self, *, principal: Principal, request: AccessGrantCreate
    ) -> AccessGrant:
        """Let a named staff member read the account for a purpose (STAFF-ACCESS, SUPPORT-DATA)."""
        account_id = principal.require_user(Role.OWNER, Role.ADMIN)
        assert principal.user_id is not None
        now = _now()
        if request.expires_at <= now:
            raise InvalidReferenceError("must be in the future", field="expires_at")
        if request.expires_at > now + timedelta(hours=self.max_grant_hours):
            raise InvalidReferenceError(
                f"at most {self.max_grant_hours} hours ahead", field="expires_at"
            )
        async with self.units() as work:
            repo = BillingRepository(work.session)
            if await repo.get_staff(request.staff_id) is None:
                raise InvalidReferenceError("no such staff member", field="staff_id")
            grant = AccessGrant(
                account_id=account_id,
                staff_id=request.staff_id,
                purpose=request.purpose,
                reason=request.reason,
                granted_by_user_id=principal.user_id,
                expires_at=request.expires_at,
            )
            repo.add(grant)
        return grant

    async def read_customer_as_staff(
        self, *, principal: Principal, account_id: UUID, customer_id: UUID, purpose: AccessPurpose
    ) -> Customer:
        """A staff read under a grant; the access is recorded before the data is returned."""
        if principal.kind != "staff" or principal.staff_id is None:
            raise PermissionDeniedError("only staff members read through this route")
        now = _now()
        async with self.units() as work:
            repo = BillingRepository(work.session)
            grant = await repo.active_grant(
                account_id=account_id, staff_id=principal.staff_id, purpose=purpose, at=now
            )
            if grant is None:
                raise PermissionDeniedError(
                    "no active access grant for this staff member, account and purpose"
                )
            account = await repo.get_account(account_id)
            if account is None or account.status is not AccountStatus.ACTIVE:
                # A terminated account is being exported and purged: nobody reads it any more.
                raise PermissionDeniedError("the account is terminated")
            customer = await repo.get_customer(account_id, customer_id)
            if customer is None:
                raise NotFoundError("no such customer in this account")
            work.emit(
                DataAccessed(
                    account_id=account_id,
                    access_id=uuid4(),
                    actor=AccessActor.STAFF,
                    actor_id=str(principal.staff_id),
                    actor_name=principal.name,
                    purpose=purpose,
                    reason=grant.reason,
                    grant_id=grant.id,
                    resource_type="customer",
                    resource_id=str(customer_id),
                    accessed_at=now,
                ),
            )
        return customer
