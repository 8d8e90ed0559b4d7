"""Strategy health: what the front end posts for a report, and the report as it reads it (its fields merged
flat into the report's status)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field, StrictFloat, StrictInt

from services.schemas.base import Schema

ParameterValue = int | float
# Numbers as JSON sends them: a string or a boolean is not a parameter value.
ParameterIn = StrictInt | StrictFloat
HealthStatus = Literal["pending", "running", "completed", "failed"]


class HealthIn(Schema):
    """``POST /strategy-health``. The template and the parameters are checked by the service, which names what
    is wrong (422 ``UNSUPPORTED_TEMPLATE``, ``INVALID_CONFIGURATION``); ``prices`` is accepted here only to be
    refused with a reason, since a report runs on stored bars."""

    template: str = Field(min_length=1, max_length=64)
    parameters: dict[str, ParameterIn] = Field(default_factory=dict, max_length=16)
    symbol: str | None = Field(default=None, max_length=32)  # blank or omitted: the platform's default
    start_date: date | None = None
    end_date: date | None = None
    initial_capital: float = 100_000.0
    commission_rate: float = 0.0
    strategy_id: str | None = Field(default=None, min_length=1, max_length=80)
    timeframe: str = Field(default="1Day", min_length=1, max_length=8)
    prices: list[float] | None = Field(default=None, max_length=100_000)


class VariationOut(Schema):
    perturbation: str  # "-50%" … "+50%"
    value: ParameterValue
    return_rate: float  # in sample
    change_percent: float  # against the baseline's return, in percent of it


class SensitivityOut(Schema):
    rating: Literal["HIGH", "LOW"]
    original_value: ParameterValue
    variations: list[VariationOut]


class HealthConfigOut(Schema):
    """What the report ran on: the template and parameters, the backtest config, and its two periods."""

    template: str
    parameters: dict[str, ParameterValue]
    symbol: str
    timeframe: str
    start_date: date
    end_date: date
    initial_capital: float
    commission_rate: float
    in_sample_start: date
    in_sample_end: date
    out_sample_start: date
    out_sample_end: date


class HealthReportOut(Schema):
    """A report: its status, and when ``completed`` every report field (numbers, so that the front end can
    format them); when ``failed``, ``error``."""

    report_id: str
    user_id: str
    strategy_id: str | None
    status: HealthStatus
    created_at: datetime
    completed_at: datetime | None
    config: HealthConfigOut
    overall_score: float | None = None
    overfit_risk: Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"] | None = None
    in_sample_return: float | None = None
    out_sample_return: float | None = None
    return_ratio: float | None = None
    param_sensitivity: dict[str, SensitivityOut] | None = None
    trade_count: int | None = None
    max_drawdown: float | None = None
    sharpe_ratio: float | None = None
    warnings: list[str] | None = None
    error: str | None = None
