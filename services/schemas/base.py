"""The base of every request and response model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Schema(BaseModel):
    # NaN and infinities (which pydantic takes from strings such as "NaN") are refused: no column keeps them.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, from_attributes=True, allow_inf_nan=False
    )
