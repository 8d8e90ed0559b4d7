"""Users: an account as its owner and administrators see it, and the owner's changes to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import EmailStr, Field

from services.schemas.base import Schema

# The preferences document (domain/preferences.py) is open by design: versions migrate, the front end adds
# paths, and the stored document is returned as stored, so it is typed as the JSON object it is.
PreferencesDocument = dict[str, Any]


class UserOut(Schema):
    id: str
    email: str
    display_name: str | None
    is_active: bool
    email_verified: bool
    role: str
    level: int
    created_at: datetime | None = None


class UpdateMeIn(Schema):
    email: EmailStr | None = None
    display_name: str | None = Field(default=None, max_length=120)


class ChangePasswordIn(Schema):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)
    revoke_all_sessions: bool = True


class RevokedOut(Schema):
    revoked_sessions: int
