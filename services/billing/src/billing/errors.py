"""What billing refuses, by kind; the API turns each into a problem detail."""

from __future__ import annotations


class BillingError(Exception):
    """A request billing refuses."""

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


class ThrottledError(BillingError):
    """Too many attempts; the caller may try again after `retry_after_s` seconds."""

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class BadSignatureError(BillingError):
    """A webhook that cannot be shown to come from the gateway."""


class GatewayUnavailableError(BillingError):
    """The payment gateway refused or could not be reached; nothing was changed."""


class PaymentsOffError(BillingError):
    """No payment gateway is configured on this server: the server's state refuses it."""
