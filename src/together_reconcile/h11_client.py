"""A small HTTP/1.1 client on h11 and sockets: what the Gorgias REST client sends through.

Why not httpx here: on `plan`'s 2,000 list requests, httpx on httpcore spends about 1.6 ms of
CPU per request on this project's machines, h11 on a plain socket about 0.4 ms
(`benchmarks/plan_scale.py` prints the figure). h11 is the HTTP/1.1 state machine httpx
itself runs on; this module only adds the socket plumbing around it:

* one keep-alive connection pool per thread and origin (a thread sends one request at a
  time), checked before reuse (a connection the server closed is dropped, not written to);
* TLS with one SSL context for every pool (certifi's CAs, or ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR`` as httpx reads them);
* connect, read and write timeouts;
* failures raised as `TransportError`, named as httpx names them (``ConnectError``,
  ``ReadTimeout``, ...), with whether the request may have reached the server.

Not supported, because the Gorgias REST API needs none of it: proxies (the Gorgias client
sends through httpx when one is set), HTTP/2, compressed answers, redirects, cookies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

import h11

DEFAULT_PORTS: Final = {"http": 80, "https": 443}
READ_SIZE: Final = 65_536
KEEPALIVE_EXPIRY_S: Final = 5.0


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed to connect (TLS handshake included), to send, and between bytes read."""

    connect: float = 5.0
    read: float = 15.0
    write: float = 15.0


class TransportError(Exception):
    """No answer. `name` is httpx's name for the same failure; `sent` is False only when the
    request certainly did not reach the server; `unsendable` when retrying cannot help."""

    def __init__(self, name: str, detail: str, *, sent: bool, unsendable: bool = False) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.sent = sent
        self.unsendable = unsendable


class Headers:
    """An answer's headers, looked up without regard to case (repeated ones joined by ", ")."""

    def __init__(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        values: dict[str, str] = {}
        for raw_name, raw_value in pairs:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            values[name] = f"{values[name]}, {value}" if name in values else value
        self._values = values

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer (the names are httpx's, so callers read both alike)."""

    status_code: int
    reason_phrase: str
    headers: Headers
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body as JSON; `ValueError` when it is not JSON."""
        return json.loads(self.content)


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"


def _split(url: str) -> tuple[_Origin, str]:
    """``https://h:1/p?q`` → (origin, ``/p?q``); each distinct origin is parsed once."""
    scheme, separator, rest = url.partition("://")
    cut = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if 0 <= found < cut:
            cut = found
    origin = _origin(f"{scheme}{separator}{rest[:cut]}")
    target = rest[cut:].partition("#")[0]
    return origin, target if target.startswith("/") else f"/{target}"


@functools.lru_cache(maxsize=256)
def _origin(url: str) -> _Origin:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise TransportError(
            "UnsupportedProtocol", str(error), sent=False, unsendable=True
        ) from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise TransportError(
            "UnsupportedProtocol",
            "the URL must start with http:// or https:// and name a host",
            sent=False,
            unsendable=True,
        )
    return _Origin(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])


def default_ssl_context() -> ssl.SSLContext:
    """Verify with ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set (as httpx does), else
    certifi's CA bundle."""
    cafile = os.environ.get("SSL_CERT_FILE")
    capath = os.environ.get("SSL_CERT_DIR")
    if cafile and os.path.isfile(cafile):
        return ssl.create_default_context(cafile=cafile)
    if capath and os.path.isdir(capath):
        return ssl.create_default_context(capath=capath)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _request_bytes(
    connection: h11.Connection,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
) -> bytes:
    """The whole request as bytes; a header h11 refuses (a line break, say) is never sent."""
    try:
        data = connection.send(h11.Request(method=method, target=target, headers=headers)) or b""
        if body:
            data += connection.send(h11.Data(data=body)) or b""
        return data + (connection.send(h11.EndOfMessage()) or b"")
    except h11.LocalProtocolError:
        # Not h11's message: it quotes the refused header value, which may be a token.
        raise TransportError(
            "LocalProtocolError",
            "a header value h11 refuses (a line break or another control character)",
            sent=False,
            unsendable=True,
        ) from None


class _AnswerReader:
    """Collects one answer from an h11 connection, whichever way its bytes arrive."""

    def __init__(self, connection: h11.Connection) -> None:
        self.connection = connection
        self._head: h11.Response | None = None
        self._chunks: list[bytes] = []

    def answer(self) -> Answer | None:
        """Take the events h11 has: the whole answer, or None when it needs more bytes."""
        while True:
            try:
                event = self.connection.next_event()
            except h11.RemoteProtocolError as error:
                raise TransportError("RemoteProtocolError", str(error), sent=True) from None
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                self._head = event
            elif isinstance(event, h11.Data):
                self._chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                head = self._head
                assert head is not None  # h11 gives the head before the end of the message
                return Answer(
                    head.status_code,
                    head.reason.decode("latin-1"),
                    Headers(head.headers.raw_items()),
                    b"".join(self._chunks),
                )
            elif isinstance(event, h11.ConnectionClosed):
                raise TransportError(
                    "RemoteProtocolError", "the server closed the connection", sent=True
                )

    def reusable(self) -> bool:
        """After the answer: ready for the next request on the same connection (if so, the
        connection is reset for it)."""
        connection = self.connection
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
            return True
        return False


class _Connection:
    """One socket and its h11 state: one request at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = time.monotonic()

    def usable(self, now: float, expiry: float) -> bool:
        """Still worth reusing: not idle too long, and nothing to read (a readable idle
        connection was closed by the server, or holds bytes nobody asked for)."""
        unasked, _ = self.h11.trailing_data  # came with the last answer, read already
        if now - self.idle_since > expiry or unasked:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def exchange(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeouts: Timeouts,
    ) -> tuple[Answer, bool]:
        """Send one request, read its whole answer; (answer, whether to keep the connection)."""
        data = _request_bytes(self.h11, method, target, headers, body)
        self.sock.settimeout(timeouts.write)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise TransportError("WriteTimeout", "sending timed out", sent=True) from None
        except OSError as error:
            raise TransportError("WriteError", type(error).__name__, sent=True) from None
        self.sock.settimeout(timeouts.read)
        reader = _AnswerReader(self.h11)
        while (answer := reader.answer()) is None:
            try:
                self.h11.receive_data(self.sock.recv(READ_SIZE))
            except TimeoutError:
                raise TransportError("ReadTimeout", "no answer in time", sent=True) from None
            except OSError as error:
                raise TransportError("ReadError", type(error).__name__, sent=True) from None
        reusable = reader.reusable()
        if reusable:
            self.idle_since = time.monotonic()
        return answer, reusable

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


_Pool = dict[_Origin, list[_Connection]]


class _Pooled(Protocol):
    """What a kept-alive connection of either client offers its pool."""

    def usable(self, now: float, expiry: float) -> bool: ...
    def close(self) -> None: ...


C = TypeVar("C", bound=_Pooled)


class _Settings:
    """What both clients are made with: headers sent with every request, timeouts, how long an
    idle connection is kept, and the SSL context (certifi's CAs when none is given)."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts = Timeouts(),
        keepalive_expiry: float = KEEPALIVE_EXPIRY_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._headers = list((headers or {}).items())
        self.timeouts = timeouts
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._ssl_context_made = threading.Lock()
        self._start()

    def _start(self) -> None:
        """Set up the (empty) pools."""

    def _tls(self) -> ssl.SSLContext:
        """The SSL context of every connection, made on the first https one."""
        with self._ssl_context_made:
            if self._ssl_context is None:
                self._ssl_context = default_ssl_context()
            return self._ssl_context

    def _idle_usable(self, idle: list[C] | None) -> C | None:
        """The most recent idle connection still worth reusing; those that are not are closed."""
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.usable(now, self._expiry):
                return connection
            connection.close()
        return None

    def _prepare(
        self, url: str, headers: Iterable[tuple[str, str]], content: bytes | None
    ) -> tuple[_Origin, str, list[tuple[str, str]]]:
        """(origin, request target, every header to send)."""
        origin, target = _split(url)
        sent = [("Host", origin.host_header), *self._headers, *headers]
        if content:
            sent.append(("Content-Length", str(len(content))))
        return origin, target, sent


class H11Client(_Settings):
    """Thread-safe: each thread keeps its own idle connections per origin. `close` closes
    every thread's; a dead thread's are closed when the next thread starts its pool."""

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[threading.Thread, _Pool] = {}
        self._local = threading.local()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        content: bytes | None = None,
    ) -> Answer:
        """Send `method url` with the client's headers, then `headers`; raise
        `TransportError` when no answer came."""
        origin, target, sent_headers = self._prepare(url, headers, content)
        connection = self._checkout(origin)
        try:
            answer, reusable = connection.exchange(
                method, target, sent_headers, content, self.timeouts
            )
        except BaseException:
            connection.close()
            raise
        if reusable:
            self._pool().setdefault(origin, []).append(connection)
        else:
            connection.close()
        return answer

    def _pool(self) -> _Pool:
        pool: _Pool | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
            with self._lock:
                dead = [thread for thread in self._pools if not thread.is_alive()]
                finished = [self._pools.pop(thread) for thread in dead]
                self._pools[threading.current_thread()] = pool
            for old in finished:
                _close_pool(old)
        return pool

    def _checkout(self, origin: _Origin) -> _Connection:
        kept = self._idle_usable(self._pool().get(origin))
        return kept if kept is not None else _Connection(self._connect(origin))

    def _connect(self, origin: _Origin) -> socket.socket:
        timeout = self.timeouts.connect
        try:
            sock = socket.create_connection((origin.host, origin.port), timeout=timeout)
        except TimeoutError:
            raise TransportError("ConnectTimeout", "connecting timed out", sent=False) from None
        except OSError as error:
            raise TransportError("ConnectError", type(error).__name__, sent=False) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if origin.scheme == "http":
            return sock
        try:
            return self._tls().wrap_socket(sock, server_hostname=origin.host)
        except TimeoutError:
            sock.close()
            raise TransportError(
                "ConnectTimeout", "the TLS handshake timed out", sent=False
            ) from None
        except OSError as error:  # ssl.SSLError included: a certificate refused, say
            sock.close()
            raise TransportError("ConnectError", type(error).__name__, sent=False) from None

    def idle_connections(self) -> int:
        """Kept-alive connections of the calling thread (for tests and diagnostics)."""
        return sum(len(idle) for idle in self._pool().values())

    def close(self) -> None:
        """Close every thread's kept-alive connections."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            _close_pool(pool)
        self._local = threading.local()


def _close_pool(pool: _Pool) -> None:
    for idle in pool.values():
        for connection in idle:
            connection.close()
    pool.clear()


class _AsyncConnection(asyncio.Protocol):
    """One connection on the event loop and its h11 state: one request at a time.

    A protocol, not streams: the bytes go to h11 as they arrive and complete the awaited
    answer, with one timer per request for the read timeout (`asyncio.timeout` around each
    stream read cost a timer and a context per read)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = time.monotonic()
        self.transport: asyncio.Transport | None = None
        self.closed = loop.create_future()  # done when the connection is lost
        self._reader: _AnswerReader | None = None
        self._answer: asyncio.Future[Answer] | None = None
        self._last_bytes = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._eof = False
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._last_bytes = self.loop.time()
        self.h11.receive_data(data)
        self._advance()

    def eof_received(self) -> bool:
        self._end_of_bytes()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(ConnectionResetError())
        answer = self._answer
        if exc is not None and answer is not None and not answer.done():
            answer.set_exception(TransportError("ReadError", type(exc).__name__, sent=True))
        self._end_of_bytes()

    def pause_writing(self) -> None:
        self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- the request

    def _end_of_bytes(self) -> None:
        if not self._eof:
            self._eof = True
            self.h11.receive_data(b"")
            self._advance()

    def _advance(self) -> None:
        """Complete the awaited answer if h11 now has all of it (or a broken one)."""
        answer = self._answer
        if answer is None or answer.done() or self._reader is None:
            return
        try:
            complete = self._reader.answer()
        except TransportError as error:
            answer.set_exception(error)
            return
        if complete is not None:
            answer.set_result(complete)

    def _read_deadline(self, read_timeout: float) -> None:
        answer = self._answer
        if answer is None or answer.done():
            return
        due = self._last_bytes + read_timeout
        if self.loop.time() < due:  # bytes came meanwhile: wait from the last of them
            self._timer = self.loop.call_at(due, self._read_deadline, read_timeout)
            return
        answer.set_exception(TransportError("ReadTimeout", "no answer in time", sent=True))

    def usable(self, now: float, expiry: float) -> bool:
        """Not idle too long, not closed by the server, nothing unasked for arrived."""
        unasked, _ = self.h11.trailing_data
        return (
            not self._eof
            and not self.closed.done()
            and self.transport is not None
            and not self.transport.is_closing()
            and not unasked
            and now - self.idle_since <= expiry
        )

    async def exchange(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeouts: Timeouts,
    ) -> tuple[Answer, bool]:
        transport = self.transport
        assert transport is not None
        loop = self.loop
        data = _request_bytes(self.h11, method, target, headers, body)
        self._reader = _AnswerReader(self.h11)
        self._answer = answer = loop.create_future()
        transport.write(data)
        if self._writable is not None:  # the kernel's buffer is full: wait until it drains
            try:
                async with asyncio.timeout(timeouts.write):
                    await self._writable
            except TimeoutError:
                raise TransportError("WriteTimeout", "sending timed out", sent=True) from None
            except OSError as error:
                raise TransportError("WriteError", type(error).__name__, sent=True) from None
        self._last_bytes = loop.time()
        self._timer = loop.call_at(
            self._last_bytes + timeouts.read, self._read_deadline, timeouts.read
        )
        self._advance()  # the whole answer may be here already
        try:
            got = await answer
        finally:
            self._timer.cancel()
            self._answer = None
        reusable = self._reader.reusable()
        if reusable:
            self.idle_since = time.monotonic()
        return got, reusable

    def close(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # RuntimeError: the loop is closed
                self.transport.close()


class AsyncH11Client(_Settings):
    """`H11Client` for one asyncio event loop: many requests in flight at once, each on its
    own connection, idle connections kept per origin. Use on the loop it was first used on;
    `aclose` when done."""

    def _start(self) -> None:
        self._idle: dict[_Origin, list[_AsyncConnection]] = {}

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        content: bytes | None = None,
    ) -> Answer:
        """As `H11Client.request`, awaited."""
        origin, target, sent_headers = self._prepare(url, headers, content)
        connection = await self._checkout(origin)
        try:
            answer, reusable = await connection.exchange(
                method, target, sent_headers, content, self.timeouts
            )
        except BaseException:
            connection.close()
            raise
        if reusable:
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.close()
        return answer

    async def _checkout(self, origin: _Origin) -> _AsyncConnection:
        kept = self._idle_usable(self._idle.get(origin))
        if kept is not None:
            return kept
        tls = self._tls() if origin.scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeouts.connect):
                _, connection = await loop.create_connection(
                    lambda: _AsyncConnection(loop),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError:
            raise TransportError("ConnectTimeout", "connecting timed out", sent=False) from None
        except OSError as error:  # ssl.SSLError included
            raise TransportError("ConnectError", type(error).__name__, sent=False) from None
        return connection  # TCP_NODELAY: asyncio sets it on every TCP transport

    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    async def aclose(self) -> None:
        """Close every idle connection."""
        pools = self._idle
        idle = [connection for pool in pools.values() for connection in pool]
        pools.clear()
        for connection in idle:
            connection.close()
        for connection in idle:
            with contextlib.suppress(OSError, RuntimeError):
                await connection.closed
