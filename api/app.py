"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from temporalio.client import Client

from api import errors
from api.middleware import BodyLimitMiddleware, Metrics, RequestContextMiddleware
from api.routes import admin, auth, backtests, jobs, market, market_stream, strategies, users
from api.routes import platform as platform_routes
from api.routes import portfolios as portfolio_routes
from api.routes import research as research_routes
from api.routes import strategy_health as strategy_health_routes
from api.routes import trading as trading_routes
from core.runtime import frozen_startup_heap
from core.settings import Settings, get_settings
from core.temporal import connect_temporal
from db.engine import Database
from services.market_stream import StreamHub
from services.platform import Platform


def create_app(settings: Settings | None = None, *, temporal: Client | None = None) -> FastAPI:
    """The API. ``temporal`` lets a test hand in its own client; otherwise the lifespan connects one."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.from_settings(settings)
        # Lazy: the API starts (and /health reports 503) even while Temporal is still coming up.
        client = temporal or await connect_temporal(settings, lazy=True)
        app.state.platform = Platform(settings=settings, db=db, temporal=client)
        try:
            with frozen_startup_heap():
                yield
        finally:
            await db.dispose()

    app = FastAPI(title="QuantPoly", version="0.1.0", lifespan=lifespan)
    app.state.metrics = Metrics()
    app.state.stream_hub = StreamHub()
    errors.install(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "Retry-After"],
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    for router in (
        platform_routes.router,
        auth.router,
        users.router,
        admin.router,
        jobs.router,
        market_stream.router,
        market.router,
        strategies.router,
        backtests.router,
        research_routes.router,
        portfolio_routes.router,
        strategy_health_routes.router,
        trading_routes.router,
    ):
        errors.document_common_errors(router)
        app.include_router(router)
    return app
