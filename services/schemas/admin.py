"""Administration: accounts managed by an administrator, and the auth audit trail."""

from __future__ import annotations

from datetime import datetime

from pydantic import EmailStr, Field

from services.schemas.base import Schema


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


class AuditEventOut(Schema):
    id: str
    event: str
    outcome: str
    user_id: str | None
    email_digest: str | None
    actor_id: str | None
    client_address: str | None
    user_agent: str | None
    request_id: str | None
    created_at: datetime
