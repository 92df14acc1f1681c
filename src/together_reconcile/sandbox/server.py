"""The sandbox's WSGI app (routing, latency, faults, request log) and its threaded HTTP/1.1
keep-alive server."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from together_reconcile.sandbox import control, gorgias, shopify
from together_reconcile.sandbox.control import SandboxController
from together_reconcile.sandbox.http import (
    DropConnection,
    Request,
    Response,
    html_response,
    json_response,
    reason,
)
from together_reconcile.sandbox.state import Fault, SandboxState

StartResponse = Callable[..., Any]
Handler = Callable[[SandboxState, Request, str, str], Response]
HANDLERS: dict[str, Handler] = {"gorgias": gorgias.handle, "shopify": shopify.handle}


def _fault_response(target: str, fault: Fault, state: SandboxState, account: str) -> Response:
    if fault.kind == "throttled":
        with state.lock:
            return shopify.throttled_response(state.stores.get(account))
    phrase = reason(fault.status)
    if target == "shopify":
        return json_response(fault.status, {"errors": phrase})
    headers = {"Retry-After": "1"} if fault.status in (429, 503) else {}
    if fault.status in (502, 503, 504):
        page = (
            f"<html><head><title>{fault.status} {phrase}</title></head><body>{phrase}</body></html>"
        )
        response = html_response(fault.status, page)
        response.headers.update(headers)
        return response
    return gorgias.error(fault.status, f"{phrase}.", None, headers)


class SandboxApp:
    """The WSGI application: `/gorgias/...`, `/shopify/...`, `/_control/...`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        response = self.answer(Request.from_environ(environ))
        start_response(response.wsgi_status(), response.wsgi_headers())
        return [response.body]

    def answer(self, request: Request) -> Response:
        """The answer to one request; raises `DropConnection` for an injected "drop" fault."""
        if request.too_large:
            return json_response(413, {"error": {"msg": "Payload too large."}})
        return self.dispatch(request)

    def dispatch(self, request: Request) -> Response:
        parts = request.path.split("/", 3)  # "", first, second, rest
        first = parts[1] if len(parts) > 1 else ""
        if first == "_control" and len(parts) == 3:
            return control.handle(self.state, request, parts[2])
        if first in HANDLERS and len(parts) >= 3 and parts[2]:
            rest = parts[3] if len(parts) > 3 else ""
            return self.serve(first, parts[2].lower(), rest, request)
        return json_response(
            404, {"error": {"msg": "Not found: use /gorgias/, /shopify/ or /_control/"}}
        )

    def serve(self, target: str, account: str, rest: str, request: Request) -> Response:
        state = self.state
        with state.lock:
            knobs = state.knobs
            latency = knobs.gorgias_latency_s if target == "gorgias" else knobs.shopify_latency_s
        if latency:
            time.sleep(latency)
        fault = state.take_fault(target, request.method, request.path, account)
        status = 0
        try:
            if fault is not None and fault.kind == "drop":
                raise DropConnection
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.delay_s)
            if fault is not None and fault.kind in ("status", "throttled"):
                response = _fault_response(target, fault, state, account)
            else:
                response = self._answer(target, account, rest, request)
                if fault is not None and fault.kind == "write_then_fail":
                    response = _fault_response(target, fault, state, account)
            status = response.status
            return response
        finally:
            state.record(
                target, request.method, request.path, request.query_string, account, status
            )

    def _answer(self, target: str, account: str, rest: str, request: Request) -> Response:
        try:
            return HANDLERS[target](self.state, request, account, rest)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            return json_response(500, {"error": {"msg": f"Sandbox bug: {type(exc).__name__}"}})


IDLE_TIMEOUT_S = 30.0  # longer than clients keep idle connections (httpx: 5 s), so no race


class _KeepAliveRequestHandler(WSGIRequestHandler):
    """HTTP/1.1 with keep-alive: many requests per connection, each answered with an exact
    Content-Length; never logs; a "drop" fault resets the connection without any answer."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    server: _ThreadingWSGIServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and not self.server.stopping:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return  # the error answer is sent (with Connection: close)
            self._answer()
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def _answer(self) -> None:
        environ = self.get_environ()
        environ["wsgi.input"] = self.rfile
        request = Request.from_environ(environ)
        if request.too_large or "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # The body was not read: what follows on the socket is not a next request.
            self.close_connection = True
        app: SandboxApp = self.server.get_app()  # type: ignore[assignment]
        try:
            response = app.answer(request)
        except DropConnection:
            # Reset instead of a clean close: the client gets no answer at all.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        self.wfile.write(self._head(response) + response.body)

    def _head(self, response: Response) -> bytes:
        lines = [f"HTTP/1.1 {response.wsgi_status()}"]
        lines.extend(f"{name}: {value}" for name, value in response.wsgi_headers())
        lines.append(f"Date: {self.date_time_string()}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stopping = False
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        # Skip HTTPServer's reverse DNS lookup of the host name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def track(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(connection)

    def close_connections(self) -> None:
        """Stopping: end kept-alive connections too, so clients see the sandbox is gone."""
        self.stopping = True
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class RunningSandbox:
    """A sandbox served on a loopback port in a background thread; a context manager."""

    def __init__(self, server: _ThreadingWSGIServer, state: SandboxState) -> None:
        self._server = server
        self.state = state
        host, port = server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        host_text = f"[{host}]" if ":" in host else host
        self.url = f"http://{host_text}:{port}"
        self.port = int(port)
        self.gorgias_url_template = self.url + "/gorgias/{account}"
        self.shopify_url_template = self.url + "/shopify/{store}"
        self.control = SandboxController(self.url)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"sandbox:{port}",
        )
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self.control.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_sandbox(host: str = "127.0.0.1", port: int = 0) -> RunningSandbox:
    """Serve a fresh, empty sandbox on host:port (0 = any free port) and return it."""
    state = SandboxState()
    server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
    server = server_class((host, port), _KeepAliveRequestHandler)
    server.set_app(SandboxApp(state))
    return RunningSandbox(server, state)
