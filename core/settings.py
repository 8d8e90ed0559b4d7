"""Process settings, read from the environment (prefix ``QUANTPOLY_``) and validated at start."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.security import SecretBox

LIVE_TRADING_HOST = "api.alpaca.markets"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUANTPOLY_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "staging", "production"] = "development"
    var_dir: Path = Path("var")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Persistence: SQLite under var/ by default, postgresql+psycopg://... in production.
    database_url: str | None = None
    # Connections each process keeps open (PostgreSQL). One opened beyond them for a burst is closed once it
    # is back in the pool: about 7 ms of CPU, most of it the server's, for each burst. The API and a worker
    # at their maximum (pool plus overflow) must fit the server's max_connections (100 by default).
    database_pool_size: int = Field(default=20, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    temporal_tls_client_cert: Path | None = None
    temporal_tls_client_key: Path | None = None
    temporal_api_key: SecretStr | None = None
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue: str = "quantpoly-default"
    # Activities in flight per worker. Most wait on the database, Temporal or the process pool, and a workflow
    # task's activity is handed straight to its worker (eager dispatch) only while a slot is free: as many as
    # Temporal's SDK allows by default.
    worker_max_concurrent_activities: int = Field(default=100, ge=1)
    # Processes a worker gives to CPU-bound work (backtest engines), so that it never starves its event loop.
    worker_processes: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # A larger request body is refused with 413 before it is read whole.
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Proxies whose X-Forwarded-For is believed (the client address feeds rate limits and the audit trail).
    forwarded_allow_ips: str = "127.0.0.1"
    cors_origins: Annotated[list[str], NoDecode] = ["http://localhost:3000", "http://127.0.0.1:3000"]
    # Mail links: the front end's pages, and the API's own address for links the API answers itself.
    public_app_url: str = "http://localhost:3000"
    reset_password_path: str = "/auth/reset-password"
    sign_in_path: str = "/auth/login"
    public_api_url: str = "http://127.0.0.1:8000"
    cookie_secure: bool | None = None
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    cookie_domain: str | None = None

    # Accounts
    session_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    reset_token_ttl_seconds: int = Field(default=3600, ge=60)
    verification_token_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    require_email_verification: bool = True
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost: int = Field(default=65536, ge=1024)

    # Rate limits (persisted, so a restart does not reset them)
    login_max_failures: int = Field(default=5, ge=1)  # per account and client address
    login_max_failures_per_account: int = Field(default=50, ge=1)  # from all addresses together
    login_failure_window_seconds: int = Field(default=900, ge=1)
    reset_per_email_limit: int = Field(default=3, ge=1)
    reset_per_email_window_seconds: int = Field(default=3600, ge=1)
    reset_per_client_limit: int = Field(default=20, ge=1)
    reset_per_client_window_seconds: int = Field(default=3600, ge=1)

    # Market data
    market_data_provider: Literal["synthetic", "csv", "alpaca"] = "synthetic"
    market_data_dir: Path | None = None  # the csv provider's directory (default var/market-data)
    alpaca_api_key: SecretStr | None = None
    alpaca_secret_key: SecretStr | None = None
    alpaca_feed: Literal["iex", "sip", "delayed_sip", "otc"] = "iex"
    alpaca_data_url: str = "https://data.alpaca.markets"
    alpaca_trading_url: str = "https://paper-api.alpaca.markets"
    alpaca_timeout_seconds: float = Field(default=10.0, gt=0)
    alpaca_max_retries: int = Field(default=3, ge=0, le=10)
    synthetic_seed: int = 7
    # Broker accounts trade at Alpaca's paper trading API (never live trading: the host api.alpaca.markets is
    # refused). Their keys are sealed at rest with these
    # Fernet keys, comma-separated, the first sealing and all opening (core.security.SecretBox). Unset,
    # development and test keep a generated one in var/broker-credentials.key; staging and production refuse
    # broker accounts without them.
    broker_credentials_keys: SecretStr | None = None
    alpaca_paper_trading_url: str = "https://paper-api.alpaca.markets"
    market_sync_parallelism: int = Field(default=4, ge=1, le=32)
    # The most bars one request (history, sync, indicators) may cover, counted for its timeframe around the
    # clock (1Hour: 24 a day): bounds the work and memory of a single request.
    market_max_bars_per_request: int = Field(default=250_000, ge=1_000, le=5_000_000)
    # The symbol a sweep or an analysis runs on when neither the request nor the strategy's backtests name one.
    research_default_symbol: str = Field(default="AAPL", min_length=1, max_length=32)
    # How long POST /strategy-health waits for its report before it answers with the report still running.
    strategy_health_wait_seconds: float = Field(default=8.0, ge=0, le=60)
    quote_cache_ttl_seconds: float = Field(default=3.0, ge=0)
    quote_rate_limit: int = Field(default=20, ge=1)
    quote_rate_window_seconds: float = Field(default=10.0, gt=0)
    stream_push_interval_seconds: float = Field(default=2.0, gt=0)
    stream_max_connections_per_user: int = Field(default=3, ge=1)
    stream_max_subscriptions: int = Field(default=5, ge=1)
    stream_max_symbols_per_subscription: int = Field(default=20, ge=1)

    # Jobs
    job_reconcile_interval_seconds: int = Field(default=30, ge=1)
    job_heartbeat_timeout_seconds: int = Field(default=60, ge=1)  # a silent worker is given up after this
    # How long a job whose user's slots are taken waits in its worker for one (0: never). Within the claim
    # activity's own 30 s timeout, with a margin.
    job_wait_here_seconds: float = Field(default=10.0, ge=0, le=20)

    # Mail: "file" writes .eml files under var/mail, "smtp" delivers.
    mail_backend: Literal["file", "smtp"] = "file"
    mail_from: str = "QuantPoly <no-reply@quantpoly.local>"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value.removeprefix("sqlite:///")
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:///, postgresql:// or postgresql+psycopg://")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.cookie_samesite == "none" and self.cookie_secure is False:
            raise ValueError("QUANTPOLY_COOKIE_SAMESITE=none requires QUANTPOLY_COOKIE_SECURE")
        if self.market_data_provider == "alpaca" and not (self.alpaca_api_key and self.alpaca_secret_key):
            # Never a silent fallback to other data: without credentials nothing starts.
            raise ValueError(
                "ALPACA_CONFIG_MISSING: QUANTPOLY_ALPACA_API_KEY and QUANTPOLY_ALPACA_SECRET_KEY are required "
                "when QUANTPOLY_MARKET_DATA_PROVIDER=alpaca"
            )
        if (urlsplit(self.alpaca_paper_trading_url).hostname or "").rstrip(".").lower() == LIVE_TRADING_HOST:
            # Broker accounts are paper accounts: an order must never reach a live brokerage account.
            raise ValueError("QUANTPOLY_ALPACA_PAPER_TRADING_URL must be a paper trading endpoint, not live trading")
        if self.broker_credentials_keys is not None:
            try:
                SecretBox(self.broker_keys)
            except ValueError:
                raise ValueError(
                    "QUANTPOLY_BROKER_CREDENTIALS_KEYS must be Fernet keys (32 url-safe base64 bytes), comma-separated"
                ) from None
        if self.smtp_ssl and self.smtp_starttls:
            raise ValueError("QUANTPOLY_SMTP_SSL and QUANTPOLY_SMTP_STARTTLS exclude each other")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'quantpoly.db'}"

    @property
    def broker_keys(self) -> list[str]:
        """The configured keys that seal broker credentials (none: see ``broker_credentials_keys``)."""
        text = self.broker_credentials_keys.get_secret_value() if self.broker_credentials_keys else ""
        return [key.strip() for key in text.split(",") if key.strip()]

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.cookie_samesite == "none" or self.environment in ("staging", "production")


def describe_error(error: ValidationError) -> str:
    """One line naming every offending setting by its environment variable."""
    parts = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper()
        label = f"QUANTPOLY_{name}" if name else "settings"
        parts.append(f"{label}: {item['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings() -> Settings:
    """Settings or, for a wrong one, a single clear line on stderr and exit status 2."""
    try:
        return Settings()
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
        raise SystemExit(2) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
