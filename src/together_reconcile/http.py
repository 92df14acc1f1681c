"""HTTP plumbing shared by the Gorgias and Shopify clients: keep-alive pools per thread, and an
httpx client without a cookie jar.

Why a pool per thread: httpcore looks at every pooled connection (a poll() each) on every
request, so many threads on one pool of many kept-alive connections spend milliseconds of CPU
per request. A thread sends one request at a time, so a few connections per thread are enough,
and one SSL context serves every pool (building one costs tens of ms of CPU).
"""

from __future__ import annotations

import threading
from typing import Final

import httpx

# Connections kept per thread: a thread sends one request at a time, mostly to one host.
THREAD_POOL_CONNECTIONS: Final = 4


class PerThreadTransport(httpx.BaseTransport):
    """A transport to share between clients and threads; each thread gets its own small pool.

    A dead thread's pool is closed when the next pool is made. Clients closing it leave the
    pools open (`close` is a no-op); `close_pools` closes them all.
    """

    def __init__(
        self,
        *,
        connections: int = THREAD_POOL_CONNECTIONS,
        keepalive_expiry: float | None = 5.0,
    ) -> None:
        self._ssl_context = httpx.create_ssl_context()
        self._limits = httpx.Limits(
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=keepalive_expiry,
        )
        self._lock = threading.Lock()
        self._pools: dict[threading.Thread, httpx.HTTPTransport] = {}
        self._local = threading.local()

    def _pool(self) -> httpx.HTTPTransport:
        pool: httpx.HTTPTransport | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = httpx.HTTPTransport(verify=self._ssl_context, limits=self._limits)
            with self._lock:
                dead = [thread for thread in self._pools if not thread.is_alive()]
                finished = [self._pools.pop(thread) for thread in dead]
                self._pools[threading.current_thread()] = pool
            for old in finished:
                old.close()
            self._local.pool = pool
        return pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._pool().handle_request(request)

    def close(self) -> None:
        """Clients close their transport when done; the pools outlive them."""

    def close_pools(self) -> None:
        """Close every thread's pool (their kept-alive connections)."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: the APIs need no cookie, and reading every answer's
    Set-Cookie into a jar costs CPU on every request."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return

    def set_cookie_header(self, request: httpx.Request) -> None:
        return


_NO_COOKIES: Final = _NoCookies()


class CookielessClient(httpx.Client):
    """An httpx client that neither stores nor sends cookies."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        return
