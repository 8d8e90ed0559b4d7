"""The one way every process (API, worker, CLI, tests) connects to Temporal."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.service import TLSConfig

from core.settings import Settings

# Registered in temporal-dev.yaml; every job workflow carries kind and user so the Web UI can filter by them,
# and a backtest's also its strategy.
KIND = SearchAttributeKey.for_keyword("QuantpolyKind")
USER_ID = SearchAttributeKey.for_keyword("QuantpolyUserId")
STRATEGY_ID = SearchAttributeKey.for_keyword("QuantpolyStrategyId")
SEARCH_ATTRIBUTES = (KIND, USER_ID, STRATEGY_ID)


@functools.lru_cache(maxsize=256)
def _type_adapter(type_hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_hint)


class _PydanticJSON(PydanticJSONPlainPayloadConverter):
    """temporalio's pydantic JSON converter, with its type adapters kept once per process. The stock one
    keeps them per instance, and the workflow sandbox makes an instance for every workflow run, so each run
    built the pydantic schemas of its input and its activities' results again."""

    def __init__(self) -> None:
        super().__init__()
        self._type_adapter = _type_adapter


class PayloadConverter(CompositePayloadConverter):
    def __init__(self) -> None:
        json = _PydanticJSON()
        converters = DefaultPayloadConverter.default_encoding_payload_converters
        super().__init__(*(json if isinstance(c, JSONPlainPayloadConverter) else c for c in converters))


# Pydantic models, dataclasses and the standard library's types, as JSON: on every client (API, CLI, worker,
# tests, benchmarks).
DATA_CONVERTER = DataConverter(payload_converter_class=PayloadConverter)


def _tls(settings: Settings) -> TLSConfig | bool:
    if settings.temporal_tls_client_cert and settings.temporal_tls_client_key:
        return TLSConfig(
            client_cert=settings.temporal_tls_client_cert.read_bytes(),
            client_private_key=settings.temporal_tls_client_key.read_bytes(),
        )
    return settings.temporal_tls or settings.temporal_api_key is not None


async def connect_temporal(settings: Settings, *, lazy: bool = False) -> Client:
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
        tls=_tls(settings),
        api_key=api_key,
        lazy=lazy,
    )
