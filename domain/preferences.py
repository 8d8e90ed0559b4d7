"""User preferences (reference §2.2): schema, defaults, deep-merge patches and version migration."""

from __future__ import annotations

import math
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator
from pydantic.alias_generators import to_camel

CURRENT_VERSION: Final = 1
ADVANCED_LEVEL = 2


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False)


def unstorable_path(value: Any, path: str = "") -> str | None:
    """Where ``value`` holds something a stored JSON document cannot keep, else None: a number that is not
    finite (JSON has no spelling for it, and PostgreSQL refuses it), an integer beyond 64 bits (JSON columns
    are read back with orjson, which would turn it into a float; no browser keeps it exact either) or text
    that is not valid UTF-8 (a lone surrogate). Dict keys count as text too. The whole document is walked,
    ``advanced`` included."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "."
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return path or "."
    if isinstance(value, str) and not _is_utf8(value):
        return path or "."
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not _is_utf8(key):
                return path or "."  # the key itself cannot be part of a readable path
            where = f"{path}.{key}" if path else str(key)
            if (found := unstorable_path(item, where)) is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := unstorable_path(item, f"{path}[{index}]")) is not None:
                return found
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Theme(_Model):
    primary_color: str = "#1677ff"
    mode: Literal["light", "dark", "system"] = "system"

    @model_validator(mode="before")
    @classmethod
    def _legacy_dark_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and "darkMode" in data:
            data = dict(data)
            dark = data.pop("darkMode")
            if "mode" not in data and isinstance(dark, bool):
                data["mode"] = "dark" if dark else "light"
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dark_mode(self) -> bool:
        return self.mode == "dark"


class AccountPrefs(_Model):
    default_trading_account_id: str | None = None
    risk_tolerance: Literal["conservative", "moderate", "aggressive"] = "moderate"
    default_currency: str = "USD"
    auto_select_account: bool = True


class EmailNotifications(_Model):
    enabled: bool = True
    trading_alerts: bool = True
    risk_alerts: bool = True
    system_updates: bool = True
    market_summary: bool = False


class BrowserNotifications(_Model):
    enabled: bool = True
    permission: Literal["default", "granted", "denied"] = "default"
    trading_signals: bool = True
    risk_warnings: bool = True


class AlertThresholds(_Model):
    profit_threshold: float = Field(default=10, ge=0)
    loss_threshold: float = Field(default=5, ge=0)
    risk_level: Literal["low", "medium", "high"] = "medium"


class Notifications(_Model):
    email: EmailNotifications = EmailNotifications()
    browser: BrowserNotifications = BrowserNotifications()
    alert_thresholds: AlertThresholds = AlertThresholds()


class ChartPreferences(_Model):
    default_chart_type: Literal["line", "candlestick", "area", "bar"] = "line"
    show_volume: bool = True
    show_indicators: bool = True
    auto_scale: bool = True


class TablePreferences(_Model):
    page_size: int = Field(default=20, ge=1, le=200)
    compact_rows: bool = False
    show_decimals: int = Field(default=2, ge=0, le=8)


class DataPrefs(_Model):
    default_time_range: str = "1M"
    refresh_interval: str = "5s"
    chart_preferences: ChartPreferences = ChartPreferences()
    table_preferences: TablePreferences = TablePreferences()


class Preferences(_Model):
    version: Literal[1] = CURRENT_VERSION  # migrate() brings older documents here; nothing else may change it
    theme: Theme = Theme()
    account: AccountPrefs = AccountPrefs()
    notifications: Notifications = Notifications()
    data: DataPrefs = DataPrefs()
    advanced: dict[str, Any] = Field(default_factory=lambda: {"betaFeatures": False})
    last_updated: str | None = None
    sync_enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        where = unstorable_path(data)
        if where is not None:
            # The path names a place, never the value (which may not even be printable).
            raise ValueError(f"{where}: not a finite number within 64 bits or valid text")
        return data

    def to_document(self) -> dict[str, Any]:
        """The stored and returned form: camelCase, without computed fields."""
        document = self.model_dump(by_alias=True, mode="json")
        document["theme"].pop("darkMode", None)
        return document


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "advanced":
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_patch(document: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``changes`` into ``document``. A legacy ``theme.darkMode`` without ``theme.mode`` sets the mode,
    so the stored mode must not shadow it."""
    theme = changes.get("theme")
    if (
        isinstance(theme, dict)
        and "darkMode" in theme
        and "mode" not in theme
        and isinstance(document.get("theme"), dict)
    ):
        document = {**document, "theme": {k: v for k, v in document["theme"].items() if k != "mode"}}
    return deep_merge(document, changes)


def migrate(document: dict[str, Any]) -> dict[str, Any]:
    """Bring an exported document of any earlier version to CURRENT_VERSION."""
    document = dict(document)
    version = document.get("version", 0)
    if not isinstance(version, int) or version > CURRENT_VERSION:
        raise ValueError(f"unsupported preferences version {version!r}")
    if version < 1:
        # Version 0 kept darkMode at the top level and had no data section.
        theme = dict(document.get("theme") or {})
        if "darkMode" in document:
            theme.setdefault("darkMode", document.pop("darkMode"))
        document["theme"] = theme
    document["version"] = CURRENT_VERSION
    return document


def visible_to(document: dict[str, Any], level: int) -> dict[str, Any]:
    """What a user of ``level`` may see: ``advanced`` is for level 2 and up."""
    shown = Preferences.model_validate(document).model_dump(by_alias=True, mode="json")
    if level < ADVANCED_LEVEL:
        shown.pop("advanced", None)
    return shown
