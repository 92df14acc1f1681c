"""JSON logs: every line one JSON object with `ts` (UTC, milliseconds), `level`, `pid`, and the
`request_id` of the request being answered when there is one. No customer data: an email
appears only as a keyed hash (`email_hash`), keyed from `TOGETHER_SECRET_KEYS` so the same
customer has the same hash across restarts and replicas, and nobody without the key can test
an address against it.

`json_line(fields)` builds the handler's own structured messages; `JsonFormatter` formats every
record (ours, gunicorn's, the libraries') the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

HANDLER_LOGGER = "together_reconcile.events.app"
EMAIL_HASH_KEY_LABEL = b"together-reconcile log email hash v1"

_request = threading.local()


def email_hash(key: bytes, email: str) -> str:
    """A keyed HMAC of the lower-cased email: follows one customer across log lines, restarts
    and replicas without the logs holding the address. Never raises: a lone surrogate (JSON
    allows `"\\ud800"`) is hashed through `surrogatepass` instead of failing the request."""
    data = email.strip().lower().encode("utf-8", "surrogatepass")
    digest = hmac.new(key, data, hashlib.sha256).hexdigest()
    return "hmac:" + digest[:16]


def utc_stamp(seconds: float | None = None) -> str:
    """`2026-05-09T14:47:12.123Z`."""
    moment = time.time() if seconds is None else seconds
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    return f"{whole}.{int(moment * 1000) % 1000:03d}Z"


class JsonLine:
    """A log message that is a JSON object: `fields`, serialised only when a handler asks
    (`str()`, one compact JSON line with a UTC timestamp first); `JsonFormatter` merges the
    fields into its own line instead."""

    __slots__ = ("fields", "stamp")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.stamp = time.time()

    def __str__(self) -> str:
        return json.dumps(
            {"ts": utc_stamp(self.stamp), **self.fields}, separators=(",", ":"), default=str
        )


def json_line(fields: dict[str, Any]) -> JsonLine:
    """`fields` as a log message: one JSON line (see `JsonLine`)."""
    return JsonLine(fields)


def set_request_id(request_id: str | None) -> None:
    """The request this thread is answering now: every line it logs carries its id."""
    _request.id = request_id


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, pid, logger, request_id, then the message's own
    fields (a `JsonLine`) or `message`, and `traceback` when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": utc_stamp(record.created),
            "level": record.levelname.lower(),
            "pid": record.process or os.getpid(),
            "logger": record.name,
        }
        request_id = getattr(_request, "id", None)
        if request_id:
            fields["request_id"] = request_id
        message = record.msg
        if isinstance(message, JsonLine) and not record.args:
            fields.update({k: v for k, v in message.fields.items() if k != "ts"})
        else:
            fields["message"] = record.getMessage()
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        return json.dumps(fields, separators=(",", ":"), default=str)


def _json_handler(stream: TextIO | None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._together_json = True  # type: ignore[attr-defined]
    return handler


def configure_json_logging(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send `together_reconcile.*` records, and any other library's (root logger, warnings), to
    `stream` (stderr) as JSON lines."""
    package_logger = logging.getLogger("together_reconcile")
    if not any(getattr(h, "_together_json", False) for h in package_logger.handlers):
        package_logger.addHandler(_json_handler(stream))
        package_logger.setLevel(level)
        package_logger.propagate = False
    root = logging.getLogger()
    if not any(getattr(h, "_together_json", False) for h in root.handlers):
        root.addHandler(_json_handler(stream))
        if root.level > logging.WARNING or root.level == logging.NOTSET:
            root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
