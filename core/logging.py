"""Logging for every process: a request id on each line and redaction of secrets, whichever logger writes.

The redaction runs as a filter on the root handlers, after the record's arguments are merged into its
message, so a secret passed as ``%s`` argument is caught as surely as one in the format string.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

MASK = "***"
_SECRET_KEYS = (
    r"password|passwd|new_?password|current_?password|newPassword|currentPassword|secret|secret_key|"
    r"api[_-]?key|api[_-]?secret|token|session_token|resetToken|access_token|refresh_token|"
    r"authorization|cookie|set-cookie|x-api-key|apca-api-key-id|apca-api-secret-key"
)
_PATTERNS = [
    # Authorization schemes anywhere in a line.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 " + MASK),
    # JSON or Python-literal pairs: "password": "x"  /  'token': 'x'
    (re.compile(rf"""(?i)(["']?(?:{_SECRET_KEYS})["']?\s*[:=]\s*)(["'])(?:(?!\2).)*\2"""), rf"\1\2{MASK}\2"),
    # key=value and key: value in text, query strings and headers.
    (re.compile(rf"(?i)\b((?:{_SECRET_KEYS})\s*[=:]\s*)(?![\"'])[^\s&,;\"'}}\]]+"), rf"\1{MASK}"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.request_id = request_id_var.get()
        return True


FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure_logging(level: str = "INFO", stream=None) -> None:
    """Install one redacting handler on the root logger; every library logger propagates to it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_quantpoly", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._quantpoly = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    # Library loggers that install their own handlers would bypass the filter: route them to the root.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "temporalio"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
