"""The sandbox's WSGI app (routing, latency, faults, request log) and its threaded server."""

from __future__ import annotations

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
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

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
        request = Request.from_environ(environ)
        if request.too_large:
            response = json_response(413, {"error": {"msg": "Payload too large."}})
        else:
            response = self.dispatch(request)
        start_response(response.wsgi_status(), response.wsgi_headers())
        return [response.body]

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


class _SandboxServerHandler(ServerHandler):
    dropped = False

    def handle_error(self) -> None:
        if isinstance(sys.exc_info()[1], DropConnection):
            self.dropped = True
            return
        super().handle_error()


class _QuietRequestHandler(WSGIRequestHandler):
    """Serves one request per connection, never logs, and can drop the connection."""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def handle(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _SandboxServerHandler(
            self.rfile,
            self.wfile,  # type: ignore[arg-type]
            sys.stderr,
            self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]
        if handler.dropped:
            # Reset instead of a clean close: the client gets no answer at all.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512
    allow_reuse_address = True

    def server_bind(self) -> None:
        # Skip HTTPServer's reverse DNS lookup of the host name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()


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
    server = server_class((host, port), _QuietRequestHandler)
    server.set_app(SandboxApp(state))
    return RunningSandbox(server, state)
