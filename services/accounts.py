"""Small account helpers shared by the auth, reset and user use cases."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from core.security import normalize_email
from db.models import User
from services.platform import Platform


def weak_password() -> InvalidInput:
    # Generic on purpose: the policy is not disclosed to whoever probes it.
    return InvalidInput("password does not meet the password policy", code="WEAK_PASSWORD")


async def find_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == normalize_email(email)))


async def hash_password(platform: Platform, password: str) -> str:
    return await asyncio.to_thread(platform.passwords.hash, password)


async def verify_password(platform: Platform, password: str, hashed: str | None) -> bool:
    return await asyncio.to_thread(platform.passwords.verify, password, hashed)
