"""Request and response bodies: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import EmailStr, Field

from services.views import Schema, UserOut


class Credentials(Schema):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(Schema):
    token: str
    expires_at: datetime
    user: UserOut


class EmailIn(Schema):
    email: EmailStr


class TokenIn(Schema):
    token: str = Field(min_length=1, max_length=512)


class ResetConfirmIn(Schema):
    token: str = Field(min_length=1, max_length=512)
    new_password: str = Field(min_length=1, max_length=1024)


class UpdateMeIn(Schema):
    email: EmailStr | None = None
    display_name: str | None = Field(default=None, max_length=120)


class ChangePasswordIn(Schema):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)
    revoke_all_sessions: bool = True


class RevokedOut(Schema):
    revoked_sessions: int


class AdminCreateUserIn(Schema):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)
    display_name: str | None = Field(default=None, max_length=120)
    role: str = "user"
    level: int = 1
    is_active: bool = True
    email_verified: bool = True


class AdminUpdateUserIn(Schema):
    email: EmailStr | None = None
    display_name: str | None = Field(default=None, max_length=120)
    role: str | None = None
    level: int | None = None
    is_active: bool | None = None
    email_verified: bool | None = None


class AdminDeletedOut(Schema):
    user_id: str
    revoked_sessions: int


class HealthOut(Schema):
    status: str
    checks: dict[str, str]


PreferencesDocument = dict[str, Any]


class JobSubmitIn(Schema):
    task_type: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str = Field(min_length=1, max_length=128)
