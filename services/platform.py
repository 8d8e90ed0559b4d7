"""What every use case needs, built once per process (API lifespan, worker, CLI command)."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.client import Client

from core.cache import SlidingWindowLimiter, TtlCache
from core.security import PasswordHasher
from core.settings import Settings
from db.engine import Database
from integrations.market_data import MarketDataProvider, Quote, provider_from_settings


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
    market: MarketDataProvider = field(init=False)
    quote_cache: TtlCache[Quote] = field(init=False)
    quote_limiter: SlidingWindowLimiter = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.passwords = PasswordHasher(s.argon2_time_cost, s.argon2_memory_cost)
        self.market = provider_from_settings(s)
        self.quote_cache = TtlCache(s.quote_cache_ttl_seconds)
        self.quote_limiter = SlidingWindowLimiter(s.quote_rate_limit, s.quote_rate_window_seconds)
