"""WS /market/stream and GET /market/stream/status (reference §2.9, with a real periodic push)."""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import Request, WebSocket, WebSocketDisconnect

from api.deps import SESSION_COOKIE, CurrentUser
from api.envelope import Envelope, ok
from api.routing import api_router
from core.errors import AppError
from services import sessions
from services.market_stream import QuoteStream, StreamHub, stream_error
from services.schemas.market import StreamLimits, StreamStatusOut

router = api_router(prefix="/market/stream", tags=["market"])
log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED, CLOSE_CONNECTION_LIMIT = 4401, 4408


def _token(websocket: WebSocket) -> str | None:
    scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return websocket.cookies.get(SESSION_COOKIE)


@router.get("/status", response_model=Envelope[StreamStatusOut])
async def stream_status(request: Request, _user: CurrentUser):
    settings = request.app.state.platform.settings
    limits = StreamLimits(
        connections_per_user=settings.stream_max_connections_per_user,
        subscriptions_per_connection=settings.stream_max_subscriptions,
        symbols_per_subscription=settings.stream_max_symbols_per_subscription,
    )
    return ok(
        StreamStatusOut(
            healthy=True,
            status="ok",
            mode="periodic_push",
            push_interval_seconds=settings.stream_push_interval_seconds,
            limits=limits,
            **request.app.state.stream_hub.status(),
        )
    )


@router.websocket("")
async def quote_stream(websocket: WebSocket) -> None:
    platform = websocket.app.state.platform
    hub: StreamHub = websocket.app.state.stream_hub
    await websocket.accept()
    try:
        user, _ = await sessions.authenticate(platform, _token(websocket))
    except AppError as error:
        await websocket.send_json(stream_error(error.code, error.message))
        await websocket.close(code=CLOSE_UNAUTHORIZED)
        return
    limit = platform.settings.stream_max_connections_per_user
    if not hub.open(user.id, limit):
        await websocket.send_json(stream_error("STREAM_CONNECTION_LIMIT_EXCEEDED", f"at most {limit} connections"))
        await websocket.close(code=CLOSE_CONNECTION_LIMIT)
        return
    stream = QuoteStream(platform, websocket.send_json)
    pusher = asyncio.create_task(stream.run_pushes())
    try:
        await websocket.send_json({"type": "stream.ready", "payload": stream.status()})
        while True:
            raw = await websocket.receive_text()
            try:
                action = json.loads(raw)
            except json.JSONDecodeError:
                await websocket.send_json(stream_error("STREAM_INVALID_SUBSCRIPTION", "messages must be JSON objects"))
                continue
            if not isinstance(action, dict):
                await websocket.send_json(stream_error("STREAM_INVALID_SUBSCRIPTION", "messages must be JSON objects"))
                continue
            await stream.handle(action)
    except WebSocketDisconnect:
        pass
    finally:
        pusher.cancel()
        hub.close(user.id)
