"""JSON request logs: one line per request, no customer data (the email only as a salted hash)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
import time
from typing import Any, TextIO

HANDLER_LOGGER = "together_reconcile.events.app"


def email_hash(salt: bytes, email: str) -> str:
    """A salted HMAC of the lower-cased email: lets one follow a customer across log lines
    without the logs holding the address."""
    digest = hmac.new(salt, email.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()
    return "hmac:" + digest[:16]


def json_line(fields: dict[str, Any]) -> str:
    """`fields` as one compact JSON line, with a UTC timestamp first."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps({"ts": stamp, **fields}, separators=(",", ":"), default=str)


def configure_json_logging(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send `together_reconcile.*` records to `stream` (stderr) as their bare message.

    The handler's messages are already JSON lines; other modules' messages go out as they are.
    """
    package_logger = logging.getLogger("together_reconcile")
    if any(getattr(h, "_together_json", False) for h in package_logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._together_json = True  # type: ignore[attr-defined]
    package_logger.addHandler(handler)
    package_logger.setLevel(level)
    package_logger.propagate = False
