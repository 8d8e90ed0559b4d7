"""Secrets and digests: opaque tokens, their SHA-256 digests, password hashing (argon2id via passlib), and
secrets sealed at rest (Fernet)."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
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


class SecretUnreadable(Exception):
    """A sealed secret that none of the server's keys opens (a key removed, or the value altered)."""


class SecretBox:
    """Secrets kept at rest, such as a broker account's keys: Fernet (AES-128-CBC with HMAC-SHA256) under the
    server's keys. The first key seals; every key opens, so a key is rotated by putting the new one first."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def __repr__(self) -> str:
        return "SecretBox(***)"

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("the sealed secret cannot be opened with the server's keys") from None


def new_box_key() -> str:
    return Fernet.generate_key().decode()


def box_key_file(path: Path) -> str:
    """The key kept in ``path``, created (readable by its owner only) by whichever process comes first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the process that created it may still be writing it
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty") from None
    key = new_box_key()
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key
