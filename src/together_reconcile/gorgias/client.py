"""Typed client for one Gorgias account: paging, rate limits, retries, typed errors.

Behaviour on each failure mode (the reconciler relies on it):

* **Paging.** Lists ask for ``limit=100`` and follow ``meta.next_cursor`` (sent back as
  ``cursor=``) until it is null. A cursor seen twice is an error, not an endless loop.
  Listing N objects costs ``ceil(N / page_size)`` requests (at least one).
* **429.** Safe to retry for every method, POST included (the server refused the request):
  wait ``Retry-After`` seconds (1 when absent or not a number, at most 60), shared by every
  client of the same account, then retry, within ``max_retry_time``.
* **Call-limit header.** ``X-Gorgias-Account-Api-Call-Limit: used/limit`` at 80 % or more makes
  the next request of that account wait 0.2 s, growing linearly to 1 s at 100 %.
* **GET / PUT / DELETE** are retried on connection errors, timeouts and 5xx with jittered
  exponential backoff (full jitter, base 0.5 s, cap 8 s), at most ``max_retries`` retries and
  ``max_retry_time`` seconds in all; then :class:`GorgiasUnavailable`. A DELETE answering 404
  on a retry counts as done (an earlier attempt deleted it).
* **POST** is retried only when nothing reached the server (connect error / connect or pool
  timeout). If the request may have reached the server (connection dropped after sending, read
  or write timeout, 5xx, a 2xx whose body is unreadable) it raises
  :class:`CreateOutcomeUnknown`: the create may have happened, so the caller re-lists and
  adopts the object instead of creating it twice.
* **401** → :class:`CredentialsRejected`, **404** → :class:`NotFound`, any other 4xx →
  :class:`GorgiasError`, none retried.

No message, log line or ``repr`` contains the token, the API key or an Authorization header.
Time comes only from the injected ``clock`` and ``sleep``, so tests measure waits without
sleeping.

Requests go through `together_reconcile.h11_client` (h11 on sockets: a quarter of httpx's CPU
per request), or through httpx when given an httpx client or transport (tests' mock
transports, recorded cassettes) or when a proxy is set in the environment.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeGuard, TypeVar
from urllib.parse import urlencode

from together_reconcile import __version__
from together_reconcile.h11_client import H11Client, Headers, Timeouts, TransportError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("together_reconcile.gorgias.client")

DEFAULT_BASE_URL_TEMPLATE: Final = "https://{account}.gorgias.com"
BASE_URL_ENV: Final = "TOGETHER_GORGIAS_URL"
PAGE_LIMIT: Final = 100
INTEGRATIONS_PATH: Final = "/api/integrations"
WIDGETS_PATH: Final = "/api/widgets"
MAX_PAGES: Final = 10_000
DEFAULT_TIMEOUT: Final = Timeouts(connect=5.0, read=15.0, write=15.0)
BACKOFF_BASE_S: Final = 0.5
BACKOFF_CAP_S: Final = 8.0
RETRY_AFTER_DEFAULT_S: Final = 1.0
RETRY_AFTER_CAP_S: Final = 60.0
MAX_RATE_LIMITED_ATTEMPTS: Final = 20
SLOWDOWN_FROM: Final = 0.8
SLOWDOWN_MIN_S: Final = 0.2
SLOWDOWN_MAX_S: Final = 1.0
CALL_LIMIT_HEADER: Final = "X-Gorgias-Account-Api-Call-Limit"
USER_AGENT: Final = f"together-reconcile/{__version__}"
DEFAULT_HEADERS: Final = {"User-Agent": USER_AGENT, "Accept": "application/json"}
PROXY_ENV: Final = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")

JSON = dict[str, Any]


def _fingerprint(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:8]


# --------------------------------------------------------------------------- auth


class BearerAuth:
    """``Authorization: Bearer <OAuth access token>``. The repr shows a fingerprint only."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the Gorgias access token is empty")
        self._token = token
        self.authorization = f"Bearer {token}"  # the Authorization header's value

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._token,)

    def __repr__(self) -> str:
        return f"BearerAuth(token={_fingerprint(self._token)})"


class BasicAuth:
    """HTTP Basic with the user's email and a REST API key (private apps)."""

    def __init__(self, email: str, api_key: str) -> None:
        if not email or not api_key:
            raise ValueError("Gorgias Basic auth needs both the user's email and the API key")
        self._email = email
        self._api_key = api_key
        pair = base64.b64encode(f"{email}:{api_key}".encode()).decode("ascii")
        self._header = self.authorization = f"Basic {pair}"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._api_key, self._header, self._header.removeprefix("Basic "))

    def __repr__(self) -> str:
        return (
            f"BasicAuth(email={_fingerprint(self._email)}, api_key={_fingerprint(self._api_key)})"
        )


# --------------------------------------------------------------------------- errors


def _header_values(body: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The HTTP integration header values in a request body (the event token among them)."""
    http = body.get("http") if isinstance(body, Mapping) else None
    headers = http.get("headers") if isinstance(http, Mapping) else None
    if not isinstance(headers, Mapping):
        return ()
    return tuple(value for value in headers.values() if isinstance(value, str) and value)


def _redact_error(error: GorgiasError, secrets: tuple[str, ...]) -> None:
    """Replace each of `secrets` in the error's message by its fingerprint; drop `data` that
    holds one."""
    shown = [secret for secret in secrets if secret in error.message]
    for secret in shown:
        error.message = error.message.replace(secret, _fingerprint(secret))
    if shown:
        error.args = (error._describe(),)
    if error.data is not None:
        text = json.dumps(error.data, default=str)
        if any(secret in text for secret in secrets):
            error.data = None


class GorgiasError(Exception):
    """Gorgias refused or failed a request. Never carries a secret."""

    def __init__(
        self,
        status: int | None,
        message: str,
        method: str,
        path: str,
        account: str = "",
        data: Any = None,
    ) -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        self.account = account
        self.data = data
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"{self.method} {self.path}" + (f" on {self.account}" if self.account else "")
        if self.status is None:
            return f"Gorgias did not answer {where}: {self.message}"
        return f"Gorgias answered {self.status} for {where}: {self.message}"


class CredentialsRejected(GorgiasError):
    """401: the token or API key is missing, invalid or expired."""


class NotFound(GorgiasError):
    """404: the object (or the account's subdomain) does not exist."""


class GorgiasUnavailable(GorgiasError):
    """Connection errors, timeouts or 5xx after the retries were exhausted."""


class RateLimited(GorgiasUnavailable):
    """Still answered 429 when the retry time budget ran out."""


class CreateOutcomeUnknown(GorgiasError):
    """A POST whose answer was lost: the object may exist. Re-list and adopt; never re-POST."""


# --------------------------------------------------------------------------- rate limiting


class AccountRateLimiter:
    """Shared, thread-safe pacing state of one Gorgias account.

    Holds the earliest time (on the clients' monotonic clock) at which the next request may go.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = float("-inf")

    def wait_time(self, now: float) -> float:
        with self._lock:
            return max(0.0, self._not_before - now)

    def pause_until(self, when: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, when)

    def note_call_limit(self, used: int, limit: int, now: float) -> float:
        """Record a call-limit reading; return the pause it imposes (0 below 80 %)."""
        pause = slowdown_for(used, limit)
        if pause > 0:
            self.pause_until(now + pause)
        return pause


def slowdown_for(used: int, limit: int) -> float:
    """Pause before the next request: 0 below 80 % use, 0.2 s at 80 % → 1 s at 100 %."""
    if limit <= 0:
        return 0.0
    ratio = used / limit
    if ratio < SLOWDOWN_FROM:
        return 0.0
    span = (min(ratio, 1.0) - SLOWDOWN_FROM) / (1.0 - SLOWDOWN_FROM)
    return SLOWDOWN_MIN_S + span * (SLOWDOWN_MAX_S - SLOWDOWN_MIN_S)


_limiters: dict[str, AccountRateLimiter] = {}
_limiters_lock = threading.Lock()


def rate_limiter_for(account_domain: str) -> AccountRateLimiter:
    """The process-wide limiter of an account, shared by all its clients."""
    key = account_domain.lower()
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = AccountRateLimiter()
        return limiter


def parse_call_limit(value: str | None) -> tuple[int, int] | None:
    """``"10/80"`` → ``(10, 80)``; anything else → None."""
    if not value:
        return None
    used, sep, limit = value.partition("/")
    if not sep:
        return None
    try:
        return int(used.strip()), int(limit.strip())
    except ValueError:
        return None


def parse_retry_after(value: str | None) -> float:
    """Seconds to wait after a 429: the header's number, default 1 s, capped at 60 s."""
    if value is None:
        return RETRY_AFTER_DEFAULT_S
    try:
        seconds = float(value.strip())
    except ValueError:
        return RETRY_AFTER_DEFAULT_S
    if seconds != seconds or seconds < 0:  # NaN or negative
        return RETRY_AFTER_DEFAULT_S
    return min(seconds, RETRY_AFTER_CAP_S)


# --------------------------------------------------------------------------- client


class Answer(Protocol):
    """What both senders answer (an `h11_client.Answer` or an `Answer`)."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def headers(self) -> Headers | httpx.Headers: ...
    @property
    def content(self) -> bytes: ...
    @property
    def is_success(self) -> bool: ...
    def json(self) -> Any: ...


class Sender(Protocol):
    """Sends one request; raises `TransportError` when no answer came."""

    def request(
        self, method: str, url: str, *, headers: list[tuple[str, str]], content: bytes | None
    ) -> Answer: ...

    def close(self) -> None: ...


def new_http_client(
    transport: httpx.BaseTransport | None = None, timeout: Timeouts = DEFAULT_TIMEOUT
) -> httpx.Client:
    """An httpx client account clients can send through (`GorgiasClient(http=...)`): no auth
    of its own (each `GorgiasClient` sends its account's auth with each request), so one can
    serve many accounts."""
    import httpx

    from together_reconcile.http import CookielessClient

    return CookielessClient(
        transport=transport,
        timeout=httpx.Timeout(
            connect=timeout.connect, read=timeout.read, write=timeout.write, pool=timeout.connect
        ),
        headers=DEFAULT_HEADERS,
        follow_redirects=False,
    )


class ThroughHttpx:
    """A `Sender` on an httpx client, its failures raised as `TransportError`."""

    def __init__(self, client: httpx.Client) -> None:
        import httpx

        self.client = client
        self._failure = httpx.RequestError
        # Nothing reached the server: retrying is safe even for a POST.
        self._not_sent = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
        # The request cannot be sent at all (a bad base URL): retrying cannot help.
        self._unsendable = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)

    def request(
        self, method: str, url: str, *, headers: list[tuple[str, str]], content: bytes | None
    ) -> Answer:
        try:
            return self.client.request(method, url, headers=headers, content=content)
        except self._failure as error:
            raise TransportError(
                type(error).__name__,
                "no answer",
                sent=not isinstance(error, self._not_sent),
                unsendable=isinstance(error, self._unsendable),
            ) from None

    @property
    def is_closed(self) -> bool:
        return self.client.is_closed

    def close(self) -> None:
        self.client.close()


def proxy_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """A proxy is set in the environment: only httpx knows how to use one."""
    return any(environ.get(name) or environ.get(name.lower()) for name in PROXY_ENV)


def new_sender(timeout: Timeouts = DEFAULT_TIMEOUT) -> Sender:
    """What account clients send through by default: h11 on sockets, or httpx behind a proxy.
    Thread-safe, and shared by many account clients (each request carries its own auth)."""
    if proxy_configured():
        return ThroughHttpx(new_http_client(timeout=timeout))
    return H11Client(headers=DEFAULT_HEADERS, timeouts=timeout)


def widgets_query(integration_id: int | None) -> dict[str, str]:
    """The query listing the widgets bound to one integration (all of them for None)."""
    return {} if integration_id is None else {"integration_id": str(int(integration_id))}


def _is_httpx_client(http: object) -> TypeGuard[httpx.Client]:
    """Without importing httpx: an httpx client is only there when httpx was loaded."""
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(http, httpx.Client)


def _json_body(body: Mapping[str, Any]) -> bytes:
    """The request body as httpx's ``json=`` encodes it."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class _Call:
    """An HTTP request to send (a step of `GorgiasClient._send_steps`)."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    content: bytes | None


@dataclass(frozen=True)
class _Pause:
    """Seconds to wait before the next step."""

    seconds: float


T = TypeVar("T")
# A request's logic: yields calls and pauses, is sent each call's answer, returns a T.
Steps = Generator[_Call | _Pause, Any, T]


class AsyncSender(Protocol):
    """An asyncio sender (`h11_client.AsyncH11Client`)."""

    async def request(
        self, method: str, url: str, *, headers: list[tuple[str, str]], content: bytes | None
    ) -> Answer: ...


@dataclass(frozen=True)
class _Failure:
    """One attempt failed in a retryable way."""

    status: int | None
    reason: str
    maybe_applied: bool  # the server may have acted on the request


class GorgiasClient:
    """Client for one Gorgias account (``acme.gorgias.com``). Use as a context manager.

    ``http``: a `Sender` (`new_sender`) or an httpx client (`new_http_client`) to send
    through, shared with other account clients (closing this one leaves it open); by default
    the client makes its own. ``transport``: an httpx transport to send through instead.
    """

    def __init__(
        self,
        account_domain: str,
        auth: BearerAuth | BasicAuth,
        *,
        base_url_template: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: Timeouts = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        max_retry_time: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        rate_limiter: AccountRateLimiter | None = None,
        http: Sender | httpx.Client | None = None,
    ) -> None:
        if http is not None and transport is not None:
            raise ValueError("pass either an http client or a transport, not both")
        self.account = account_domain.strip().lower()
        subdomain = self.account.split(".", 1)[0]
        if not subdomain or not subdomain.replace("-", "").isalnum():
            raise ValueError(
                f"not a Gorgias account domain: {account_domain!r} (expected acme.gorgias.com)"
            )
        self.subdomain = subdomain
        template = base_url_template or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL_TEMPLATE
        if "{account}" not in template:
            raise ValueError(
                f"{BASE_URL_ENV} must contain {{account}} (the subdomain), e.g. "
                f"{DEFAULT_BASE_URL_TEMPLATE}"
            )
        if not template.startswith(("http://", "https://")):
            raise ValueError(
                f"{BASE_URL_ENV} must start with http:// or https://, e.g. "
                f"{DEFAULT_BASE_URL_TEMPLATE}"
            )
        self.base_url = template.replace("{account}", subdomain).rstrip("/")
        self._auth = auth
        self._secrets = tuple(s for s in auth.secrets if s)
        self._max_retries = max_retries
        self._max_retry_time = max_retry_time
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._limiter = rate_limiter or rate_limiter_for(self.account)
        self.request_count = 0
        self._owns_http = http is None
        self._http: Sender
        if http is None:
            has_transport = transport is not None
            self._http = (
                ThroughHttpx(new_http_client(transport, timeout))
                if has_transport
                else new_sender(timeout)
            )
        elif _is_httpx_client(http):
            self._http = ThroughHttpx(http)
        else:
            self._http = http

    def __repr__(self) -> str:
        return f"GorgiasClient({self.account!r}, base_url={self.base_url!r})"

    def __enter__(self) -> GorgiasClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # ---------------------------------------------------------------- integrations

    def list_integrations(self) -> list[JSON]:
        return self._list(INTEGRATIONS_PATH, {})

    def get_integration(self, integration_id: int) -> JSON:
        return self._object("GET", f"/api/integrations/{int(integration_id)}")

    def create_integration(self, body: Mapping[str, Any]) -> JSON:
        return self._object("POST", "/api/integrations", body)

    def update_integration(self, integration_id: int, body: Mapping[str, Any]) -> JSON:
        return self._object("PUT", f"/api/integrations/{int(integration_id)}", body)

    def delete_integration(self, integration_id: int) -> None:
        self._delete(f"/api/integrations/{int(integration_id)}")

    # ---------------------------------------------------------------- widgets

    def list_widgets(self, integration_id: int | None = None) -> list[JSON]:
        return self._list(WIDGETS_PATH, widgets_query(integration_id))

    def get_widget(self, widget_id: int) -> JSON:
        return self._object("GET", f"/api/widgets/{int(widget_id)}")

    def create_widget(self, body: Mapping[str, Any]) -> JSON:
        return self._object("POST", "/api/widgets", body)

    def update_widget(self, widget_id: int, body: Mapping[str, Any]) -> JSON:
        return self._object("PUT", f"/api/widgets/{int(widget_id)}", body)

    def delete_widget(self, widget_id: int) -> None:
        self._delete(f"/api/widgets/{int(widget_id)}")

    # ---------------------------------------------------------------- plumbing

    def _list(self, path: str, params: Mapping[str, str]) -> list[JSON]:
        return self._drive(self._list_steps(path, params))

    async def list_async(
        self, sender: AsyncSender, path: str, params: Mapping[str, str]
    ) -> list[JSON]:
        """`path`'s whole list (as `list_integrations` / `list_widgets`), sent through an
        asyncio `sender` (`h11_client.AsyncH11Client`): the same paging, pacing and retries;
        the waits are `asyncio.sleep`, not the client's `sleep`."""
        steps = self._list_steps(path, params)
        try:
            step = next(steps)
            while True:
                if isinstance(step, _Pause):
                    await asyncio.sleep(step.seconds)
                    step = steps.send(None)
                    continue
                try:
                    answer = await sender.request(
                        step.method, step.url, headers=step.headers, content=step.content
                    )
                except TransportError as error:
                    step = steps.throw(error)
                else:
                    step = steps.send(answer)
        except StopIteration as done:
            items: list[JSON] = done.value
            return items

    def _drive(self, steps: Steps[T]) -> T:
        """Run `steps` (a request's logic) with this client's sender and `sleep`."""
        try:
            step = next(steps)
            while True:
                if isinstance(step, _Pause):
                    self._sleep(step.seconds)
                    step = steps.send(None)
                    continue
                try:
                    answer = self._http.request(
                        step.method, step.url, headers=step.headers, content=step.content
                    )
                except TransportError as error:
                    step = steps.throw(error)
                else:
                    step = steps.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result

    def _list_steps(self, path: str, params: Mapping[str, str]) -> Steps[list[JSON]]:
        items: list[JSON] = []
        seen: set[str] = set()
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            query = {**params, "limit": str(PAGE_LIMIT)}
            if cursor is not None:
                query["cursor"] = cursor
            page = self._json((yield from self._send_steps("GET", path, params=query)), "GET", path)
            data = page.get("data")
            meta = page.get("meta")
            if not isinstance(data, list) or not isinstance(meta, dict):
                raise self._error(
                    GorgiasError, 200, "the list answer has no data list or meta", "GET", path
                )
            items.extend(item for item in data if isinstance(item, dict))
            next_cursor = meta.get("next_cursor")
            if next_cursor is None:
                return items
            if not isinstance(next_cursor, str) or not next_cursor:
                raise self._error(
                    GorgiasError, 200, "meta.next_cursor is not a string", "GET", path
                )
            if next_cursor in seen:
                raise self._error(
                    GorgiasError,
                    200,
                    f"Gorgias sent the same next_cursor twice after {len(items)} objects; "
                    "stopped paging instead of looping",
                    "GET",
                    path,
                )
            seen.add(next_cursor)
            cursor = next_cursor
        raise self._error(GorgiasError, 200, f"more than {MAX_PAGES} pages", "GET", path)

    def _object(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> JSON:
        try:
            return self._object_answer(method, path, body)
        except GorgiasError as exc:
            # Gorgias may echo what we sent (e.g. the X-Together-Token header value).
            _redact_error(exc, _header_values(body))
            raise

    def _object_answer(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> JSON:
        response = self._send(method, path, body=body)
        try:
            return self._json(response, method, path)
        except GorgiasError as exc:
            if method == "POST":
                raise self._error(
                    CreateOutcomeUnknown,
                    response.status_code,
                    f"the create answered {response.status_code} but its body is unreadable "
                    f"({exc.message}); it may exist: list and adopt it",
                    method,
                    path,
                ) from None
            raise

    def _delete(self, path: str) -> None:
        self._send("DELETE", path)

    def _json(self, response: Answer, method: str, path: str) -> JSON:
        try:
            value = response.json()
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise self._error(
                GorgiasError, response.status_code, "the answer is not a JSON object", method, path
            )
        return value

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Answer:
        return self._drive(self._send_steps(method, path, params=params, body=body))

    def _send_steps(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Steps[Answer]:
        """One logical request, with pacing, 429 handling and retries. Returns a 2xx answer.

        The logic without the I/O: it yields each HTTP call to make (and receives its answer,
        or has the `TransportError` thrown in) and each pause to take; `_drive` and
        `list_async` carry them out."""
        # The query in the URL string: httpx encodes `params=` the same way (urlencode) but
        # parses the URL a second time to merge them.
        url = f"{self.base_url}{path}?{urlencode(params)}" if params else f"{self.base_url}{path}"
        headers = [("Authorization", self._auth.authorization)]
        content = None
        if body is not None:
            content = _json_body(body)
            headers.append(("Content-Type", "application/json"))
        started = self._clock()
        attempt = retries = rate_limited = 0
        maybe_applied = False  # an earlier attempt may have reached the server
        while True:
            wait = self._limiter.wait_time(self._clock())
            if wait > 0:  # the account's rate limit (Retry-After, call-limit slowdown)
                log.debug("%s %s: pausing %.2fs for the account's rate limit", method, path, wait)
                yield _Pause(wait)
            attempt += 1
            self.request_count += 1
            try:
                response: Answer = yield _Call(method, url, headers, content)
            except TransportError as exc:
                log.debug("%s %s attempt %d: %s", method, path, attempt, exc.name)
                failure = self._transport_failure(exc, method, path)
            else:
                status = response.status_code
                log.debug("%s %s attempt %d: %d", method, path, attempt, status)
                self._note_call_limit(response)
                if response.is_success:
                    return response
                if status == 429:
                    rate_limited += 1
                    self._wait_rate_limited(response, method, path, started, rate_limited)
                    continue
                if status == 404 and method == "DELETE" and maybe_applied:
                    log.debug("DELETE %s: 404 on a retry, an earlier attempt deleted it", path)
                    return response
                failure = self._status_failure(response, method, path)
            maybe_applied = maybe_applied or failure.maybe_applied
            retries += 1
            delay = self._backoff(retries)
            elapsed = self._clock() - started
            if retries > self._max_retries or elapsed + delay > self._max_retry_time:
                raise self._error(
                    GorgiasUnavailable,
                    failure.status,
                    f"no usable answer after {attempt} attempts in {elapsed:.1f}s "
                    f"(last: {failure.reason})",
                    method,
                    path,
                )
            log.debug("%s %s: retry %d in %.2fs", method, path, retries, delay)
            yield _Pause(delay)

    def _transport_failure(self, exc: TransportError, method: str, path: str) -> _Failure:
        """A retryable failure, or raise: unsendable → GorgiasError, POST sent → unknown."""
        reason = exc.name
        if exc.unsendable:
            check = (
                "check the account's stored Gorgias token or API key: a header value holds a "
                "line break or another control character"
                if reason == "LocalProtocolError"
                else f"check {BASE_URL_ENV}"
            )
            raise self._error(
                GorgiasError,
                None,
                f"the request could not be sent ({reason}); {check}",
                method,
                path,
            ) from None
        sent = exc.sent
        if method == "POST" and sent:
            raise self._error(
                CreateOutcomeUnknown,
                None,
                f"{reason} after the create was sent; it may exist: list and adopt it",
                method,
                path,
            ) from None
        return _Failure(None, reason, maybe_applied=sent)

    def _status_failure(self, response: Answer, method: str, path: str) -> _Failure:
        """A retryable 5xx, or raise: POST 5xx → unknown outcome, other statuses → typed error."""
        status = response.status_code
        if status < 500:
            raise self._status_error(response, method, path)
        message = self._error_message(response)[0]
        if method == "POST":
            raise self._error(
                CreateOutcomeUnknown,
                status,
                f"{message}; the create may have happened: list and adopt it",
                method,
                path,
            )
        return _Failure(status, message, maybe_applied=True)

    def _backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(retry-1))]."""
        ceiling: float = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** (retry - 1))
        return float(self._rng()) * ceiling

    def _wait_rate_limited(
        self, response: Answer, method: str, path: str, started: float, count: int
    ) -> None:
        wait = parse_retry_after(response.headers.get("Retry-After"))
        now = self._clock()
        self._limiter.pause_until(now + wait)  # every client of the account honours it
        if count >= MAX_RATE_LIMITED_ATTEMPTS or (now - started) + wait > self._max_retry_time:
            raise self._error(
                RateLimited,
                429,
                f"still rate limited after {count} attempts in {now - started:.1f}s",
                method,
                path,
            )
        log.debug("%s %s: 429, waiting %.2fs (Retry-After)", method, path, wait)

    def _note_call_limit(self, response: Answer) -> None:
        reading = parse_call_limit(response.headers.get(CALL_LIMIT_HEADER))
        if reading is not None:
            self._limiter.note_call_limit(*reading, now=self._clock())

    def _error_message(self, response: Answer) -> tuple[str, Any]:
        """Gorgias's ``error.msg`` (and ``error.data``), or a description of the body."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and isinstance(error.get("msg"), str) and error["msg"]:
                return error["msg"], error.get("data")
            if isinstance(error, str) and error:
                return error, None
        reason = response.reason_phrase or "error"
        kind = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip()
        if body is None and response.content:
            return f"{reason} (the answer is not JSON: {kind or 'no content type'})", None
        return reason, None

    def _status_error(self, response: Answer, method: str, path: str) -> GorgiasError:
        status = response.status_code
        message, data = self._error_message(response)
        if status == 401:
            return self._error(
                CredentialsRejected,
                status,
                f"credentials rejected for {self.account}",
                method,
                path,
            )
        if status == 404:
            return self._error(NotFound, status, message, method, path)
        if isinstance(data, dict) and data:
            message = f"{message} (fields: {', '.join(sorted(str(k) for k in data))})"
        return self._error(GorgiasError, status, message, method, path, data=data)

    def _error(
        self,
        kind: type[GorgiasError],
        status: int | None,
        message: str,
        method: str,
        path: str,
        data: Any = None,
    ) -> GorgiasError:
        return kind(status, self._redact(message), method, path, self.account, data=data)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _fingerprint(secret))
        return text
