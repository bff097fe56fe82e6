"""Describing a failure without the values it carried: logs, dead-letter headers, health
reports and stored diagnostics are read by people who must not see personal data."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# Our own errors, and pydantic's per-field messages, name paths, sizes and kinds, never values.
_OWN_MODULES = ("shared.", "pydantic")


def _location(error: Any) -> str:
    """Where a validation error is; an unknown field is not named: its name is input."""
    parts = [str(part) for part in error["loc"]]
    if error["type"] == "extra_forbidden" and parts:
        parts[-1] = "<unknown field>"
    return ".".join(parts)


def describe(exc: BaseException) -> str:
    """The kind of error and its codes (SQLSTATE, SMTP or HTTP status), not its free text."""
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{_location(e)}: {e['msg']}" for e in exc.errors())
        return f"ValidationError: {problems}"[:2000]
    name = type(exc).__name__
    if type(exc).__module__.startswith(_OWN_MODULES):
        return f"{name}: {exc}"[:2000]
    original = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    codes = [
        f"{label} {value}"
        for label, value in (
            ("SQLSTATE", getattr(original, "sqlstate", None)),
            ("SMTP", getattr(exc, "code", None) if "smtp" in type(exc).__module__ else None),
            ("HTTP", getattr(getattr(exc, "response", None), "status_code", None)),
        )
        if value is not None
    ]
    if original is not exc:
        name = f"{name} ({type(original).__name__})"
    return f"{name}" + (f" [{', '.join(codes)}]" if codes else "")
