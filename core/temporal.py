"""The one way every process (API, worker, CLI, tests) connects to Temporal."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from core.settings import Settings

# Registered in temporal-dev.yaml; every job workflow carries kind and user so the Web UI can filter by them,
# and a backtest's also its strategy.
KIND = SearchAttributeKey.for_keyword("QuantpolyKind")
USER_ID = SearchAttributeKey.for_keyword("QuantpolyUserId")
STRATEGY_ID = SearchAttributeKey.for_keyword("QuantpolyStrategyId")
SEARCH_ATTRIBUTES = (KIND, USER_ID, STRATEGY_ID)


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
        data_converter=pydantic_data_converter,
        tls=_tls(settings),
        api_key=api_key,
        lazy=lazy,
    )
