"""Shared helpers for the handler tests: account folders, settings, calling a WSGI app."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from together_reconcile.events.app import HandlerApp

SHOPIFY_TOKEN = "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"


def write_accounts(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "acme.yaml").write_text(
        "shopify_store: acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"
    )
    (folder / "beta.yaml").write_text(
        "shopify_store: beta.myshopify.com\ngorgias_account: beta.gorgias.com\nlookback_days: 30\n"
    )
    (folder / "gone.yaml").write_text(
        "shopify_store: gone.myshopify.com\ngorgias_account: gone.gorgias.com\nenabled: false\n"
    )
    return folder


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        document = self.json
        return document["error"]["code"] if "error" in document else None


class CountingInput(io.BytesIO):
    """A request body that records how much the app read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def call(
    app: HandlerApp,
    method: str = "POST",
    path: str = "/gorgias/events",
    body: bytes | Any = b"",
    *,
    token: str | None = None,
    content_type: str | None = "application/json",
    content_length: str | None = None,
    chunked: bool = False,
    extra: dict[str, Any] | None = None,
) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stream = CountingInput(raw)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.input": stream,
        "wsgi.url_scheme": "http",
    }
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    if chunked:
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = content_length if content_length is not None else str(len(raw))
    if token is not None:
        environ["HTTP_X_TOGETHER_TOKEN"] = token
    environ.update(extra or {})
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(headers)

    chunks = app(environ, start_response)
    answer = Answer(seen["status"], seen["headers"], b"".join(chunks))
    answer.headers["_bytes_read"] = str(stream.bytes_read)
    answer.headers["_close"] = str(bool(environ.get("together.close_connection")))
    return answer
