"""Strategies: templates, a user's strategies and what is asked of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from services.schemas.base import Schema

StrategyStatus = Literal["draft", "active", "inactive", "archived"]
# A template's parameter values: whole numbers for int parameters, decimals for float ones.
ParameterValues = dict[str, int | float]
ParameterType = Literal["int", "float"]


class ParameterBounds(Schema):
    """What the front end's forms build an input from."""

    type: ParameterType
    min: int | float
    max: int | float


class ParameterSpec(ParameterBounds):
    default: int | float
    description: str


class TemplateOut(Schema):
    id: str
    template_id: str
    name: str
    description: str
    required_parameters: dict[str, ParameterBounds]
    parameters: dict[str, ParameterSpec]
    defaults: ParameterValues
    # Cross-parameter rules, e.g. "shortWindow < longWindow".
    constraints: list[str]


class StrategyOut(Schema):
    id: str
    user_id: str
    name: str
    template: str
    parameters: ParameterValues
    status: StrategyStatus
    created_at: datetime
    updated_at: datetime


class StrategyDeletedOut(Schema):
    strategy_id: str


class ExecutionCheckOut(Schema):
    valid: bool
    errors: list[str]
    # The parameters as they would run (defaults filled in); null when they would not.
    parameters: ParameterValues | None
    template: str


class StrategyIn(Schema):
    name: str = Field(min_length=1, max_length=120)
    template: str = Field(min_length=1, max_length=32)
    # Checked against the template by the service, which names each problem (422 STRATEGY_INVALID_PARAMETERS).
    parameters: dict[str, Any] = Field(default_factory=dict)


class FromTemplateIn(Schema):
    name: str = Field(min_length=1, max_length=120)
    template_id: str = Field(min_length=1, max_length=32)
    parameters: dict[str, Any] = Field(default_factory=dict)


class StrategyUpdateIn(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    parameters: dict[str, Any] | None = None


class ValidateIn(Schema):
    parameters: dict[str, Any] | None = None
