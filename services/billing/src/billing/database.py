"""Billing's table base: one metadata for all its domains' tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, func
from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class BillingTable(SQLModel, registry=registry()):
    """Base of billing's tables; its metadata is billing's alone."""


def created_at_column() -> Column[datetime]:
    """A `created_at` the database fills in."""
    return Column(DateTime(timezone=True), nullable=False, server_default=func.now())
