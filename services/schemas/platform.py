"""The platform itself: health."""

from __future__ import annotations

from typing import Literal

from services.schemas.base import Schema

CheckState = Literal["ok", "down"]


class HealthOut(Schema):
    status: Literal["ok"]
    # One entry per dependency probed (database, temporal).
    checks: dict[str, CheckState]
