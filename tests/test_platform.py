"""The API foundation: envelope for every answer, request ids, health, metrics, CORS."""

from __future__ import annotations

import httpx

from api.app import create_app
from core.settings import Settings
from tests.conftest import LOG_FILE


async def test_health_reports_database_and_temporal(stack):
    response = await stack.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "ok",
        "data": {"status": "ok", "checks": {"database": "ok", "temporal": "ok"}},
    }


async def test_health_names_what_is_down(database_url, tmp_path):
    # A Temporal address where nothing listens: the API still starts and says what is missing.
    settings = Settings(database_url=database_url, temporal_address="127.0.0.1:1", var_dir=tmp_path)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            response = await http.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert "temporal" in body["error"]["message"] and "database" not in body["error"]["message"]


async def test_unknown_route_wrong_method_and_validation_use_the_envelope(stack):
    missing = await stack.http.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "error": {"code": "NOT_FOUND", "message": "Not Found"}}
    wrong = await stack.http.delete("/health")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    invalid = await stack.http.post("/auth/login", json={"email": "not-an-email"})
    assert invalid.status_code == 422
    error = invalid.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert {f["field"] for f in error["details"]} == {"email", "password"}


async def test_unexpected_errors_hide_internals(database_url, dev_server, smtp_server, tmp_path):
    from tests.conftest import make_settings

    settings = make_settings(database_url, dev_server.client, smtp_server[0].port, tmp_path)
    app = create_app(settings, temporal=dev_server.client)

    @app.get("/explode")
    async def explode():
        raise RuntimeError("secret internals: /etc/shadow")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/explode", headers={"X-Request-ID": "boom-42"})
    assert response.status_code == 500
    assert response.json() == {
        "success": False,
        "error": {"code": "INTERNAL_ERROR", "message": "internal server error"},
    }
    assert response.headers["x-request-id"] == "boom-42"
    assert "[boom-42] unhandled error" in LOG_FILE.read_text()


async def test_request_id_is_generated_or_echoed(stack):
    generated = await stack.http.get("/health")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await stack.http.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    unsafe = await stack.http.get("/health", headers={"X-Request-ID": "bad id\nwith newline"})
    assert unsafe.headers["x-request-id"] != "bad id\nwith newline"


async def test_metrics_in_prometheus_text(stack):
    await stack.http.get("/health")
    await stack.http.get("/nowhere")
    response = await stack.http.get("/internal/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'quantpoly_http_requests_total{method="GET",route="/health",status="200"}' in response.text
    assert 'route="unmatched",status="404"' in response.text
    assert "quantpoly_http_request_duration_seconds_bucket" in response.text


async def test_cors_allows_the_front_end_origin_with_credentials(stack):
    response = await stack.http.options(
        "/auth/login",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert response.headers["access-control-allow-credentials"] == "true"
    foreign = await stack.http.options(
        "/auth/login", headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in foreign.headers
