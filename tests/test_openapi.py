"""The OpenAPI document is the API's contract: every operation, fuzzed by schemathesis against the live app,
answers only statuses and bodies the document declares, and never a server error.

The app is the suite's stack (worker, Temporal, database) reached in-process through its ASGI transport.
Hypothesis draws the cases in a worker thread, while the requests run on the test's own event loop, where the
app's database engine and Temporal client live. The WebSocket ``/market/stream`` is no OpenAPI operation
(FastAPI leaves WebSocket routes out of the document), so it is not exercised here; tests/test_market.py covers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.conftest import Stack

PASSWORD = "Contract1234x"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
EXAMPLES = {"signed out": 5, "signed in": 12}
# Operations that end the caller's session or account: run last, so every other one runs signed in.
ENDS_SESSION = {("POST", "/auth/logout"), ("DELETE", "/users/me")}
# Operations whose success answer is not a JSON body by design.
WITHOUT_JSON_BODY = {
    ("GET", "/auth/me"): "410",  # removed: its only answer is the error envelope
    ("GET", "/auth/verify-email/confirm"): "303",  # the mailed link redirects to the front end
    ("GET", "/internal/metrics"): "200",  # Prometheus text
}
HTTPX_ARGUMENTS = {"method", "url", "params", "headers", "cookies", "json", "content", "data", "files"}
# Operations whose documented answer while a dependency is down is a 503: on a loaded machine Temporal's health
# RPC fails now and then, and /health says so. Its answers are still checked against the document.
MAY_REPORT_DOWN = {("GET", "/health")}


def _httpx_arguments(case: Any, headers: dict[str, str]) -> dict[str, Any]:
    sent = case.as_transport_kwargs(base_url="http://api.test", headers=headers)
    if isinstance(sent.get("data"), bytes | str):  # a raw body: httpx names it content
        sent["content"] = sent.pop("data")
    cookies = sent.pop("cookies", None)
    if cookies:  # generated cookies go in the request's own header, never into the client's jar
        sent["headers"] = {**sent.get("headers", {}), "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    return {name: value for name, value in sent.items() if name in HTTPX_ARGUMENTS}


def _sender(stack: Stack, loop: asyncio.AbstractEventLoop) -> Callable[[dict[str, Any]], httpx.Response]:
    """Send from the Hypothesis thread through the stack's client, on the test's loop."""

    def send(arguments: dict[str, Any]) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(stack.http.request(**arguments), loop).result()

    return send


def _fuzz(operation: Any, send: Callable, headers: dict[str, str], examples: int) -> None:
    checks = CHECKS
    if (operation.method.upper(), operation.path) in MAY_REPORT_DOWN:
        checks = [one for one in CHECKS if one is not not_a_server_error]

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        case.validate_response(send(_httpx_arguments(case, headers)), checks=checks, headers=headers)

    check()


def _operations(schema: Any) -> list[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    return sorted(operations, key=lambda op: (op.method.upper(), op.path) in ENDS_SESSION)


def _fuzz_all(schema: Any, send: Callable, headers: dict[str, str], examples: int) -> list[str]:
    failures = []
    for operation in _operations(schema):
        try:
            _fuzz(operation, send, headers, examples)
        except (Exception, BaseExceptionGroup) as failure:  # every operation runs; all are reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {failure}")
    return failures


async def test_every_operation_answers_as_documented(stack: Stack):
    document = (await stack.http.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    send = _sender(stack, asyncio.get_running_loop())
    _, _, signed_in = await stack.new_account(PASSWORD)
    stack.http.cookies.clear()  # signed out means signed out: not even the cookie the login left in the client
    # The suite's hooks treat every password and token sent as a secret that must never be logged; generated
    # "passwords" are ordinary words (column names among them), so the fuzzed requests go without the hooks.
    hooks, stack.http.event_hooks = stack.http.event_hooks, {"request": [], "response": []}
    failures = []
    try:
        for label, headers in (("signed out", {}), ("signed in", signed_in)):
            found = await asyncio.to_thread(_fuzz_all, schema, send, headers, EXAMPLES[label])
            failures += [f"[{label}] {failure}" for failure in found]
    finally:
        stack.http.event_hooks = hooks
    assert not failures, "\n\n".join(failures)


async def test_every_operation_documents_its_success_body(stack: Stack):
    document = (await stack.http.get("/openapi.json")).json()
    undocumented = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            special = WITHOUT_JSON_BODY.get((method.upper(), path))
            if special:
                assert special in responses, (method, path)
                continue
            success = [status for status in responses if status.startswith("2")]
            schemas = [responses[s].get("content", {}).get("application/json", {}).get("schema") for s in success]
            if not success or any(not schema for schema in schemas):
                undocumented.append(f"{method.upper()} {path}")
    assert not undocumented, undocumented


async def test_authenticated_operations_offer_bearer_and_cookie(stack: Stack):
    document = (await stack.http.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {**schemes["HTTPBearer"], "type": "http", "scheme": "bearer"}
    assert schemes["APIKeyCookie"] == {**schemes["APIKeyCookie"], "in": "cookie", "name": "session_token"}
    me = document["paths"]["/users/me"]["get"]
    assert me["security"] == [{"HTTPBearer": []}, {"APIKeyCookie": []}]
    assert "401" in me["responses"] and "security" not in document["paths"]["/health"]["get"]
