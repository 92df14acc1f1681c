"""A GitHub REST API stand-in on a loopback port: workflow dispatches and pull-request comments.

Just the calls the support loop makes, answered the way api.github.com does:

- `POST /repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches` (the handler after a
  late connect): 204, recorded in `dispatches`; 401 without the expected Bearer token, 422
  for a body without `ref`.
- `GET /repos/{owner}/{repo}/commits/{sha}/pulls` (the apply workflow: which pull request
  brought a commit): the pull requests registered with `add_pull(sha, number)`.
- `GET /repos/{owner}/{repo}/issues/{n}/comments` (paged: `per_page`, `page`),
  `POST /repos/{owner}/{repo}/issues/{n}/comments` and
  `PATCH /repos/{owner}/{repo}/issues/comments/{id}`: comments kept in `comments`, written as
  `github-actions[bot]`.

Faults for tests: `dispatch_mode` = "ok" | "error" (500) | "hang" (answers after `hang_s`).
Every request is kept in `requests` with its headers, so tests can check what was sent (the
stand-in itself prints nothing: tokens never reach a log).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BOT = {"login": "github-actions[bot]", "type": "Bot"}
_DISPATCH = re.compile(r"^/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)/dispatches$")
_PULLS = re.compile(r"^/repos/([^/]+/[^/]+)/commits/([^/]+)/pulls$")
_ISSUE_COMMENTS = re.compile(r"^/repos/([^/]+/[^/]+)/issues/(\d+)/comments$")
_COMMENT = re.compile(r"^/repos/([^/]+/[^/]+)/issues/comments/(\d+)$")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class GitHubStandIn:
    """The stand-in's state; `start()` serves it on 127.0.0.1 (a free port by default)."""

    token: str
    repository: str = "together/accounts"
    dispatch_mode: str = "ok"
    hang_s: float = 10.0
    dispatches: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> comment
    pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sha -> pulls
    requests: list[Recorded] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _next_id: int = 1000

    # -- setup and reading ---------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_pull(self, sha: str, number: int, *, merged: bool = True) -> None:
        entry = {
            "number": number,
            "state": "closed" if merged else "open",
            "merged_at": "2026-01-01T00:00:00Z" if merged else None,
            "base": {"ref": "main"},
        }
        self.pulls.setdefault(sha, []).append(entry)

    def comments_on(self, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self.comments.values() if c["issue"] == number]

    def add_comment(self, number: int, body: str, user: dict[str, Any] | None = None) -> int:
        with self._lock:
            return self._create_comment(number, body, user or BOT)

    # -- serving -------------------------------------------------------------------------

    def start(self, port: int = 0) -> GitHubStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self, status: int, payload: Any = None) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if payload is not None:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with stand_in._lock:
                    stand_in.requests.append(Recorded(self.command, parts.path, headers, body))
                if headers.get("authorization") != f"Bearer {stand_in.token}":
                    self._answer(
                        401,
                        {
                            "message": "Bad credentials",
                            "documentation_url": "https://docs.github.com/rest",
                        },
                    )
                    return
                status, payload = stand_in._route(
                    self.command, parts.path, parse_qs(parts.query), body
                )
                self._answer(status, payload)

            do_GET = do_POST = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, name="github-stand-in", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GitHubStandIn:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- routes --------------------------------------------------------------------------

    def _create_comment(self, number: int, body: str, user: dict[str, Any]) -> int:
        self._next_id += 1
        self.comments[self._next_id] = {
            "id": self._next_id,
            "issue": number,
            "body": body,
            "user": dict(user),
        }
        return self._next_id

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        not_found = (404, {"message": "Not Found"})
        if (match := _DISPATCH.match(path)) and method == "POST":
            if match.group(1) != self.repository:
                return not_found
            if self.dispatch_mode == "error":
                return 500, {"message": "Server Error"}
            if self.dispatch_mode == "hang":
                time.sleep(self.hang_s)
            if not isinstance(body, dict) or not isinstance(body.get("ref"), str):
                return 422, {"message": "Invalid request: ref is required"}
            with self._lock:
                self.dispatches.append({"workflow": match.group(2), **body})
            return 204, None
        if (match := _PULLS.match(path)) and method == "GET":
            return 200, self.pulls.get(match.group(2), [])
        if (match := _ISSUE_COMMENTS.match(path)) and match.group(1) == self.repository:
            number = int(match.group(2))
            if method == "GET":
                per_page = int((query.get("per_page") or ["30"])[0])
                page = int((query.get("page") or ["1"])[0])
                listed = [
                    {k: v for k, v in c.items() if k != "issue"} for c in self.comments_on(number)
                ]
                return 200, listed[(page - 1) * per_page : page * per_page]
            if method == "POST" and isinstance(body, dict) and isinstance(body.get("body"), str):
                with self._lock:
                    made = self._create_comment(number, body["body"], BOT)
                    return 201, {k: v for k, v in self.comments[made].items() if k != "issue"}
        if (match := _COMMENT.match(path)) and method == "PATCH" and isinstance(body, dict):
            with self._lock:
                comment = self.comments.get(int(match.group(2)))
                if comment is None:
                    return not_found
                comment["body"] = str(body.get("body"))
                return 200, {k: v for k, v in comment.items() if k != "issue"}
        return not_found
