"""The payment gateway the settings name, or None when payments are off."""

from __future__ import annotations

from billing.payments.gateway import PaymentGateway
from billing.payments.sandbox import SandboxGateway
from billing.payments.stripe_gateway import StripeGateway
from billing.settings import PaymentSettings


def create_gateway(settings: PaymentSettings) -> PaymentGateway | None:
    """An adapter for the configured gateway; refuses to start one without its secrets."""
    if settings.gateway == "none":
        return None
    api_key = settings.api_key.get_secret_value()
    webhook_secret = settings.webhook_secret.get_secret_value()
    if not api_key or not webhook_secret:
        raise ValueError(f"the {settings.gateway} gateway needs its API key and webhook secret")
    if settings.gateway == "sandbox":
        return SandboxGateway(
            base_url=settings.sandbox_url,
            api_key=api_key,
            # Comma-separated: the old and new secrets both verify while the old is rotated out.
            webhook_secrets=[s.strip() for s in webhook_secret.split(",") if s.strip()],
            tolerance_s=settings.webhook_tolerance_s,
            timeout_s=settings.timeout_s,
        )
    if settings.return_url is None:
        raise ValueError("the stripe gateway needs a return URL for the payer's browser")
    return StripeGateway(
        api_key=api_key,
        webhook_secret=webhook_secret,
        return_url=settings.return_url,
        api_base=settings.stripe_api_base,
        tolerance_s=settings.webhook_tolerance_s,
        timeout_s=settings.timeout_s,
    )
