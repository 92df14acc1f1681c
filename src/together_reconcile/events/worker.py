"""gunicorn's threaded worker, made to lose nothing when it stops and to give slow clients no
thread.

Three changes to `gunicorn.workers.gthread.ThreadWorker` (gunicorn 23):

- **Headers are read on the event loop.** gthread hands a connection to a thread as soon as
  its first byte arrives, and that thread then blocks, without any deadline, until the whole
  request head is in: a client sending one header line per second holds a thread for as long
  as it likes. Here the loop reads what has arrived without blocking and hands the connection
  to a thread only once the head is complete (`\\r\\n\\r\\n`), so slow clients hold a socket,
  not a thread. A head still incomplete `header_timeout` seconds after the connection opened
  (or after the first byte of a later request on a kept-alive connection) is closed. A small
  declared body (up to 64 KiB, no `Expect`, not chunked) is gathered the same way, and must be
  in within the body timeout after the head.
- **Bodies have a deadline.** The app arms a deadline for the whole body (`read_deadline`):
  when it passes, the loop shuts the socket's read side, so the blocked read returns at once
  (a client sending one byte every few seconds cannot hold a thread past it).
- **Stopping drains.** gthread leaves its loop on SIGTERM (and after `max_requests`) and then
  never reads the kept-alive connections again: a request already sent on one is lost when the
  process exits. Here the worker, once told to stop, stops accepting (closes its listening
  sockets after taking what is already queued), keeps serving every open connection — each
  answer then carries `Connection: close` — closes kept-alive connections that stay idle for
  a second, and exits when none is left or the graceful timeout is near.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import selectors
import signal
import socket
import threading
import time
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

HEADER_END = b"\r\n\r\n"
MAX_BUFFERED_HEAD = 64 * 1024  # beyond this the parser takes over (and refuses it)
MAX_BUFFERED_BODY = 64 * 1024  # the handler's own limit: larger bodies get their 413 at once
DEFAULT_HEADER_TIMEOUT_S = 5.0
DEFAULT_BODY_TIMEOUT_S = 5.0
DRAIN_IDLE_S = 1.0  # while draining, a kept-alive connection idle this long is closed
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,9})[ \t]*\r\n", re.IGNORECASE)
_EXPECT_OR_CHUNKED = re.compile(rb"\r\n(expect|transfer-encoding):", re.IGNORECASE)

_current = threading.local()


def current_connection() -> Any:
    """The connection the calling thread is answering (None outside a request)."""
    return getattr(_current, "conn", None)


class DrainingThreadWorker(ThreadWorker):  # type: ignore[misc]
    """See the module docstring. Set `header_timeout` through `HEADER_TIMEOUT_ENV`."""

    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s = DEFAULT_BODY_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heads: dict[Any, float] = {}  # connection -> head deadline (read on the loop)
        self._reads: dict[Any, float] = {}  # connection -> read deadline (read in a thread)
        self._draining = False
        self._poller_closed = False

    # -- accepting and reading heads on the loop ----------------------------------------------

    def accept(self, server: Any, listener: socket.socket) -> None:
        try:
            sock, client = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        conn = TConn(self.cfg, sock, client, server)
        conn.head = bytearray()
        conn.need = None
        self.nr_conns += 1
        with self._lock:
            self._heads[conn] = time.monotonic() + self.header_timeout_s
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
            )

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        with self._lock:
            if conn.initialized and conn not in self._heads:
                # a kept-alive connection starts its next request: the head clock starts now
                try:
                    self._keep.remove(conn)
                except ValueError:
                    return  # closed for idleness meanwhile
                conn.head = bytearray()
                self._heads[conn] = time.monotonic() + self.header_timeout_s
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if getattr(conn, "need", None):  # the body stopped short: the app answers 400
                self._hand_over(conn)
            else:
                self._drop(conn)
            return
        seen = len(conn.head)
        conn.head += data
        if getattr(conn, "need", None) is None:
            end = conn.head.find(HEADER_END, max(0, seen - 3))
            if end < 0 and len(conn.head) < MAX_BUFFERED_HEAD:
                return
            conn.need = self._request_size(conn.head, end)
            if conn.need > len(conn.head):  # the body too arrives here, with its own deadline
                with self._lock:
                    self._heads[conn] = time.monotonic() + self.body_timeout_s
        if len(conn.head) < conn.need:
            return
        self._hand_over(conn)

    def _hand_over(self, conn: Any, *, cut: bool = False) -> None:
        """Give the request to a thread; `cut`: its body is late, so the thread reads what
        came and then the end (the app answers 400 `incomplete_body`)."""
        conn.need = None
        with self._lock:
            self.poller.unregister(conn.sock)
            self._heads.pop(conn, None)
        if cut:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RD)
        self.enqueue_req(conn)

    @staticmethod
    def _request_size(head: bytearray, end: int) -> int:
        """How many bytes to gather on the loop before a thread takes the request: the head,
        plus a small declared body (not a chunked one, nor one awaiting `100 Continue`)."""
        if end < 0:
            return 0
        head_end = end + len(HEADER_END)
        fields = bytes(head[:head_end])
        if _EXPECT_OR_CHUNKED.search(fields):
            return 0
        lengths = _CONTENT_LENGTH.findall(fields)
        if len(lengths) != 1 or int(lengths[0]) > MAX_BUFFERED_BODY:
            return 0  # none, several, or too large: the parser and the app decide
        return head_end + int(lengths[0])

    def enqueue_req(self, conn: Any) -> None:
        conn.init()
        head = bytes(getattr(conn, "head", b""))
        conn.head = bytearray()
        if head:
            conn.parser.unreader.unread(head)
        with self._lock:  # the rest of the head and the body: bounded until the app says
            self._reads[conn] = time.monotonic() + self.header_timeout_s
        fs = self.tpool.submit(self.handle, conn)
        self._wrap_future(fs, conn)

    def _drop(self, conn: Any) -> None:
        with self._lock:
            self._heads.pop(conn, None)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    # -- read deadlines -----------------------------------------------------------------------

    def set_read_deadline(self, conn: Any, seconds: float | None) -> None:
        """Bound the reads of the request being answered on `conn` (None: no bound)."""
        with self._lock:
            if seconds is None:
                self._reads.pop(conn, None)
            else:
                self._reads[conn] = time.monotonic() + seconds

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            late_heads = [conn for conn, limit in self._heads.items() if limit <= now]
            late_reads = [conn for conn, limit in self._reads.items() if limit <= now]
            for conn in late_reads:
                self._reads.pop(conn, None)
        for conn in late_heads:
            if getattr(conn, "need", None):  # the head came, the body is late: answer 400
                self._hand_over(conn, cut=True)
            else:
                self._drop(conn)
        for conn in late_reads:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RD)  # the blocked read returns at once

    def handle(self, conn: Any) -> Any:
        _current.conn = conn
        try:
            return super().handle(conn)
        finally:
            _current.conn = None
            with self._lock:
                self._reads.pop(conn, None)

    # -- the loop, and draining ---------------------------------------------------------------

    def _poll_timeout(self) -> float:
        return 0.2 if (self._heads or self._reads or not self.alive) else 1.0

    def _turn(self) -> None:
        self.notify()
        if self.nr_conns < self.worker_connections or self._draining:
            for key, _ in self.poller.select(self._poll_timeout()):
                key.data(key.fileobj)
            result = futures.wait(self.futures, timeout=0, return_when=futures.FIRST_COMPLETED)
        else:
            result = futures.wait(self.futures, timeout=1.0, return_when=futures.FIRST_COMPLETED)
        for fut in result.done:
            self.futures.remove(fut)
        self.murder_keepalived()
        self._expire()

    def _woken(self, pipe: Any) -> None:
        with contextlib.suppress(OSError):
            while os.read(self.PIPE[0], 512):
                pass

    def run(self) -> None:
        # a signal (SIGTERM) writes to this pipe: wake the loop at once, not after its select
        self.poller.register(self.PIPE[0], selectors.EVENT_READ, self._woken)
        for sock in self.sockets:
            sock.setblocking(False)
            server = sock.getsockname()
            self.poller.register(sock, selectors.EVENT_READ, partial(self.accept, server))
        while self.alive:
            self._turn()
            if not self.is_parent_alive():
                break
        self._drain()

    def _drain(self) -> None:
        """Stop accepting; answer what was sent on every open connection; exit when none is
        left, or a second before the graceful timeout ends."""
        self._draining = True
        self.alive = False
        limit = time.monotonic() + max(0.5, self.cfg.graceful_timeout - 1.0)
        for sock in self.sockets:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(sock)
            server = sock.getsockname()
            while True:  # take what is already queued: it was sent to us
                before = self.nr_conns
                try:
                    self.accept(server, sock)
                except OSError:
                    break
                if self.nr_conns == before:
                    break
            sock.close()
        with self._lock:  # idle ones: no need to wait the whole keep-alive time any more
            for conn in self._keep:
                conn.timeout = min(conn.timeout, time.time() + DRAIN_IDLE_S)
        self.log.info("Draining: %s open connections", self.nr_conns)
        while (self.nr_conns > 0 or self.futures) and time.monotonic() < limit:
            self._turn()
        self.tpool.shutdown(False)
        with self._lock:
            self._poller_closed = True
            leftover = list(self._keep) + list(self._heads)
        for conn in leftover:
            conn.close()
        self.poller.close()
        futures.wait(self.futures, timeout=max(0.0, limit - time.monotonic()))
        # Exiting now: a repeated SIGTERM must not kill the process while Python shuts down
        # (it would be reported as "Worker was sent SIGTERM!").
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def finish_request(self, fs: Any) -> None:
        """As gthread's, except that an answer sent while still alive keeps its connection
        even if stopping began meanwhile: the client was told it may send again."""
        if fs.cancelled() or fs.exception() is not None:
            super().finish_request(fs)
            return
        keepalive, conn = fs.result()
        with self._lock:
            if keepalive and not self._poller_closed:
                conn.sock.setblocking(False)
                conn.set_timeout()
                if self._draining:
                    conn.timeout = min(conn.timeout, time.time() + DRAIN_IDLE_S)
                self._keep.append(conn)
                self.poller.register(
                    conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
                )
                return
        self.nr_conns -= 1
        conn.close()
