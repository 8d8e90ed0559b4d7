"""Secrets and digests: opaque tokens, their SHA-256 digests, and password hashing (argon2id via passlib)."""

from __future__ import annotations

import hashlib
import secrets

from passlib.context import CryptContext

TOKEN_BYTES = 32  # 256 bits


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


def email_digest(email: str) -> str:
    return digest(normalize_email(email))


class PasswordHasher:
    def __init__(self, time_cost: int, memory_cost: int) -> None:
        self._context = CryptContext(
            schemes=["argon2"],
            argon2__type="ID",
            argon2__rounds=time_cost,
            argon2__memory_cost=memory_cost,
        )
        # Verified against when an account does not exist, so that both answers take as long.
        self._decoy = self._context.hash(new_token())

    def hash(self, password: str) -> str:
        return self._context.hash(password)

    def verify(self, password: str, hashed: str | None) -> bool:
        if hashed is None:
            self._context.verify(password, self._decoy)
            return False
        return self._context.verify(password, hashed)
