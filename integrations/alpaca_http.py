"""What every alpaca-py client of ours shares: credentials kept out of reprs and messages, a timeout and bounded
retries on every request, and one mapping of failures to ``UpstreamError`` codes.

alpaca-py has no timeout setting and its built-in retry waits a fixed 3 s on 429/504 only. So each client's
``requests`` session gets a transport adapter (:class:`BoundedAdapter`) that gives every request the configured
timeout and retries 429, 5xx and refused/reset connections with exponential backoff (honouring Retry-After,
capped), and the built-in retry loop is switched off. Timeouts are not retried: a hung upstream would otherwise
hold the caller for (retries + 1) x timeout.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from alpaca.common.exceptions import APIError
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from core.errors import UpstreamError

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Shapes a broken upstream answer can raise while alpaca-py or we read it (JSONDecodeError is a ValueError).
MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, ValidationError)


@dataclass(frozen=True)
class Credentials:
    key: str = field(repr=False)
    secret: str = field(repr=False)

    def scrub(self, text: str) -> str:
        for value in (self.key, self.secret):
            if value:
                text = text.replace(value, "***")
        return text


@dataclass(frozen=True)
class Limits:
    """How long one request may take and how often a failed one is tried again."""

    timeout_seconds: float
    max_retries: int
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 8.0


class BoundedAdapter(HTTPAdapter):
    """A default timeout for every request and retries with backoff on 429, 5xx and connection failures."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self._limits = limits

    def _delay(self, attempt: int, retry_after: str | None = None) -> float:
        delay = self._limits.backoff_seconds * (2**attempt)
        delay = delay / 2 + random.random() * delay / 2  # jitter: concurrent callers do not retry in step
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass  # an HTTP date: the exponential delay stands
        return min(delay, self._limits.backoff_max_seconds)

    def send(self, request, stream=False, timeout=None, **kwargs):  # type: ignore[override]
        if timeout is None:
            timeout = (self._limits.timeout_seconds, self._limits.timeout_seconds)  # connect, read (between bytes)
        path = urlsplit(request.url).path  # never the query or the headers in a log line
        retries = self._limits.max_retries
        attempt = 0
        while True:
            try:
                response = super().send(request, stream=stream, timeout=timeout, **kwargs)
            except requests.ConnectionError as error:
                if isinstance(error, requests.Timeout) or attempt >= retries:
                    raise
                delay, reason = self._delay(attempt), "could not be reached"
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= retries:
                    return response
                delay = self._delay(attempt, response.headers.get("Retry-After"))
                reason = f"answered HTTP {response.status_code}"
                response.close()
            attempt += 1
            logger.warning(
                "alpaca %s %s %s; retry %d of %d in %.2f s", request.method, path, reason, attempt, retries, delay
            )
            time.sleep(delay)


def bound(client: Any, limits: Limits) -> None:
    """The client's requests get ``limits`` (see above) instead of alpaca-py's own retry loop."""
    session = getattr(client, "_session", None)
    if not isinstance(session, requests.Session) or not isinstance(getattr(client, "_retry", None), int):
        # Without these, requests would have no timeout at all: refuse rather than hang silently.
        raise RuntimeError("this alpaca-py version has no RESTClient._session/_retry; the Alpaca clients need them")
    client._retry = 0  # alpaca-py's own loop (fixed 3 s wait, 429/504 only) is off; the adapter retries
    adapter = BoundedAdapter(limits)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def upstream_message(error: APIError) -> str:
    """Alpaca's ``{"code", "message"}`` body, or nothing: a proxy's HTML page is not worth repeating."""
    try:
        message = error.message
    except Exception:  # not JSON, or no message in it
        return ""
    return str(message)[:200] if message else ""


def upstream_error(error: Exception, where: str, credentials: Credentials, limits: Limits) -> UpstreamError:
    """A failed call as an ``UpstreamError`` with a stable code; its message never carries the credentials."""

    def make(code: str, text: str) -> UpstreamError:
        return UpstreamError(code, credentials.scrub(f"{where}: {text}"))

    if isinstance(error, APIError):
        status = error.status_code or 0
        detail = upstream_message(error)
        said = f" ({detail})" if detail else ""
        if status in (401, 403):
            return make("UPSTREAM_AUTH_FAILED", f"the credentials were refused (HTTP {status}){said}")
        if status == 429:
            return make("UPSTREAM_RATE_LIMITED", f"rate limited (HTTP 429) after {limits.max_retries} retries")
        if status in RETRY_STATUSES:
            return make("UPSTREAM_UNAVAILABLE", f"HTTP {status} after {limits.max_retries} retries{said}")
        return make("UPSTREAM_UNAVAILABLE", f"unexpected HTTP {status}{said}")
    if isinstance(error, requests.Timeout) or (
        isinstance(error, requests.ConnectionError) and any(isinstance(a, ReadTimeoutError) for a in error.args)
    ):
        # A read timeout while the body streams surfaces from requests as a ConnectionError.
        return make("UPSTREAM_TIMEOUT", f"no answer within {limits.timeout_seconds:g} s")
    if isinstance(error, requests.ConnectionError):
        return make("UPSTREAM_UNAVAILABLE", f"connection failed after {limits.max_retries} retries")
    if isinstance(error, requests.RequestException) and not isinstance(error, ValueError):
        return make("UPSTREAM_UNAVAILABLE", f"request failed ({type(error).__name__})")
    return make("UPSTREAM_UNAVAILABLE", f"malformed response ({type(error).__name__})")
