"""Auth: registration, verification, sign-in and password recovery."""

from __future__ import annotations

from datetime import datetime

from pydantic import EmailStr, Field, model_validator

from services.schemas.base import Schema
from services.schemas.users import UserOut


class Credentials(Schema):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(Schema):
    token: str
    expires_at: datetime
    user: UserOut


class EmailIn(Schema):
    email: EmailStr


class ResetConfirmIn(Schema):
    token: str = Field(min_length=1, max_length=512)
    new_password: str = Field(min_length=1, max_length=1024)


class VerifyEmailIn(Schema):
    """A mailed token verifies; an email alone (what the reference front end's page posts) only asks for a
    new link, since anyone could name an address they do not own."""

    token: str | None = Field(default=None, min_length=1, max_length=512)
    email: EmailStr | None = None

    @model_validator(mode="after")
    def _token_or_email(self) -> VerifyEmailIn:
        if self.token is None and self.email is None:
            raise ValueError("token or email is required")
        return self
