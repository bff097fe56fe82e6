"""the outbox keeps published events for a replay window, parks the unpublishable

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 08:30:00
"""

from collections.abc import Sequence

from shared.migrations import downgrade_delivery_for_replay, upgrade_delivery_for_replay

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    upgrade_delivery_for_replay()


def downgrade() -> None:
    downgrade_delivery_for_replay()
