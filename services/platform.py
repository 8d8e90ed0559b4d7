"""What every use case needs, built once per process (API lifespan, worker, CLI command)."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.client import Client

from core.security import PasswordHasher
from core.settings import Settings
from db.engine import Database


@dataclass(frozen=True)
class ClientInfo:
    """Who is calling, for audit rows and per-address limits."""

    address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


CLI_CLIENT = ClientInfo(address="cli", user_agent="quantpoly-cli")


@dataclass
class Platform:
    settings: Settings
    db: Database
    temporal: Client
    passwords: PasswordHasher = field(init=False)

    def __post_init__(self) -> None:
        self.passwords = PasswordHasher(self.settings.argon2_time_cost, self.settings.argon2_memory_cost)
