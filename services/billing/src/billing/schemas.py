"""The base of billing's API schemas."""

from __future__ import annotations

import pydantic
from pydantic import ConfigDict


class Schema(pydantic.BaseModel):
    """An API schema: unknown fields refused, readable from table rows."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)
