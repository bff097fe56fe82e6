"""Every email's words: Jinja2 templates (HTML autoescaped, plain text) in the account's language,
money and dates formatted by Babel in its locale and time zone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    pass_eval_context,
    select_autoescape,
)
from jinja2.nodes import EvalContext
from markupsafe import Markup

from notifications.translations import CATALOG
from shared.contracts import MAIL_LANGUAGES, MailPresentation
from shared.links import user_text_html

TEMPLATES = Path(__file__).parent / "templates"

# Each template's subject: a message of the catalog like the bodies.
SUBJECTS = {
    "invoice": "Invoice %(number)s from %(seller)s",
    "credit-note": "Credit note %(number)s from %(seller)s",
    "statement": "Statement from %(seller)s, %(start)s to %(end)s",
    "payment-reminder": "Reminder: invoice %(number)s from %(seller)s",
    "payment-receipt": "Payment received for invoice %(number)s",
    "account-export": "Your Quittance data export for %(account)s",
    "purge-certificate": "Certificate of deletion for %(account)s",
    "invitation": "%(inviter)s invited you to %(account)s on Quittance",
    "new-device": "New sign-in to your Quittance account",
    "details-changed": "Quittance: %(what)s changed",
}
# Words the code, not a template, puts into a message.
PHRASES = (
    "Total",
    "Total credited",
    "the company's details",
    "your user details",
    "Invoice",
    "Credit note",
    "Void",
    "Payment",
    "Refund",
)
STATEMENT_ENTRY_KINDS = {
    "invoice": "Invoice",
    "credit_note": "Credit note",
    "void": "Void",
    "payment": "Payment",
    "refund": "Refund",
}


@dataclass(frozen=True)
class RenderedEmail:
    """A message's subject and its two bodies."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Formats:
    """Numbers, money and dates as the account's locale writes them, in its time zone."""

    locale: Locale
    zone: ZoneInfo

    def money(self, amount: Decimal, currency: str, *, exact: bool = False) -> str:
        """An amount in the currency's minor units (JPY 0, EUR 2, BHD 3); `exact` keeps more
        digits where a unit price has them."""
        return format_currency(amount, currency, locale=self.locale, decimal_quantization=not exact)

    def number(self, value: Decimal | int) -> str:
        """A quantity, without trailing zeros."""
        value = value.normalize() if isinstance(value, Decimal) else value
        return format_decimal(value, locale=self.locale, decimal_quantization=False)

    def percent(self, value: Decimal) -> str:
        """A rate given in percent (19.6 -> 19.6 %)."""
        return format_percent(value / 100, locale=self.locale, decimal_quantization=False)

    def date(self, value: date) -> str:
        """A calendar date, spelled out."""
        return format_date(value, format="long", locale=self.locale)

    def datetime(self, value: datetime) -> str:
        """An instant in the account's time zone, with the zone named."""
        return format_datetime(value, format="long", tzinfo=self.zone, locale=self.locale)


def resolve_locale(tag: str) -> tuple[str, Locale]:
    """The language the catalog writes in and the Babel locale for a BCP 47 tag; English when
    the language is not one mail is written in (an old account's setting)."""
    language = tag.split("-", 1)[0].lower()
    if language not in MAIL_LANGUAGES:
        return "en", Locale("en")
    try:
        return language, Locale.parse(tag.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return language, Locale(language)


def resolve_zone(name: str) -> ZoneInfo:
    """The account's time zone; UTC if the name is unknown here."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def translate(language: str, message: str) -> str:
    """A message in the language; the English text when it has no translation."""
    return CATALOG.get(language, {}).get(message, message)


def translate_plural(language: str, singular: str, plural: str, count: int) -> str:
    """A message with a count in the language (every mail language has two forms)."""
    return translate(language, singular if count == 1 else plural)


@pass_eval_context
def _user_text(context: EvalContext, value: str | None) -> str:
    """User-written text: in HTML escaped with its links made safe (LINKS); in text as is."""
    if context.autoescape:
        return Markup(user_text_html(value or ""))  # noqa: S704 - user_text_html escapes
    return value or ""


@cache
def _environment(language: str) -> Environment:
    """The templates in one language: HTML ones autoescaped, plain-text ones not."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    environment.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: translate(language, message),
        lambda singular, plural, n: translate_plural(language, singular, plural, n),
        newstyle=True,
    )
    environment.filters["user_text"] = _user_text
    return environment


class Renderer:
    """Renders a kind of message for an account; one per process, safe to share."""

    def render(
        self,
        template: str,
        presentation: MailPresentation,
        *,
        account_name: str,
        subject: Mapping[str, str],
        context: Mapping[str, Any],
    ) -> RenderedEmail:
        """The subject and both bodies of one message."""
        language, locale = resolve_locale(presentation.locale)
        formats = Formats(locale=locale, zone=resolve_zone(presentation.time_zone))
        title = translate(language, SUBJECTS[template]) % dict(subject)
        logo = (
            presentation.logo_url if (presentation.logo_url or "").startswith("https://") else None
        )
        values = {
            **context,
            "fmt": formats,
            "language": language,
            "account_name": account_name,
            "logo_url": logo,
            "subject": title,
            "entry_kinds": {
                kind: translate(language, word) for kind, word in STATEMENT_ENTRY_KINDS.items()
            },
        }
        environment = _environment(language)
        text = environment.get_template(f"{template}.txt.j2").render(values)
        html = environment.get_template(f"{template}.html.j2").render(values)
        return RenderedEmail(subject=title, text=_tidy(text), html=html)

    def phrase(self, presentation: MailPresentation, message: str) -> str:
        """One of the code's phrases in the account's language."""
        return translate(resolve_locale(presentation.locale)[0], message)

    def formats(self, presentation: MailPresentation) -> Formats:
        """The account's formats, for subjects."""
        return Formats(
            locale=resolve_locale(presentation.locale)[1],
            zone=resolve_zone(presentation.time_zone),
        )


def _tidy(text: str) -> str:
    """Plain text without runs of blank lines the templates' conditionals leave."""
    lines: list[str] = []
    for line in text.strip().splitlines():
        if line.strip() or (lines and lines[-1].strip()):
            lines.append(line.rstrip())
    return "\n".join(lines) + "\n"
