"""The WSGI application Gorgias calls: parse → authenticate → look up account → Shopify → answer.

Routes: `POST /gorgias/events`, `GET /healthz`, `GET /readyz`, and the OAuth pages
`GET /oauth/gorgias/install` and `GET /oauth/gorgias/callback` (HTML, see `oauth`). Event checks
run in the order the SPEC fixes (405, 415, 413, 400, 401, 404, then Shopify) and every JSON error
body is `{"error": {"code", "message"}}`. Nothing about the customer is stored; the one JSON log
line per request holds the email only as a salted hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from together_reconcile.config import (
    GORGIAS_ACCOUNT_RE,
    Account,
    ConfigError,
    load_accounts,
)
from together_reconcile.events.answer import EventAnswer, empty_answer
from together_reconcile.events.logs import (
    EMAIL_HASH_KEY_LABEL,
    HANDLER_LOGGER,
    email_hash,
    json_line,
    set_request_id,
)
from together_reconcile.events.shopify import ShopifyClient, ShopifyError, ShopifySettings
from together_reconcile.gorgias.oauth import (
    OAUTH_PATHS,
    OAuthRoutes,
    OAuthSettings,
    client_address,
    unexpected_error_page,
)
from together_reconcile.secrets import Keyring
from together_reconcile.store import Store, StoreError
from together_reconcile.store.engine import handler_limits
from together_reconcile.verification import is_verification

log = logging.getLogger(HANDLER_LOGGER)

EVENTS_PATH = "/gorgias/events"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
MAX_BODY_BYTES = 64 * 1024
MAX_EMAIL_CHARS = 320
SHOPIFY_BUDGET_S = 5.0
ANSWER_BUDGET_S = 5.8  # from the body read to the answer: every answer within 6 s
BODY_TIMEOUT_S = 5.0
CREDENTIAL_TTL_S = 10.0
STALE_CREDENTIAL_S = 600.0  # a token read this recently is used while the store fails
STORE_TIMEOUT_S = 0.8  # an event waits this long for the store, at most
READY_STORE_TIMEOUT_S = 1.0  # /readyz: 503 when the store does not answer within this
STORE_RETRY_S = 1.0  # after a store failure, events use cached tokens without asking again
STORE_POOL_SIZE = 4  # PostgreSQL connections per worker (and threads that talk to the store)
PREFETCH_INTERVAL_S = 60.0  # every worker re-reads every configured account's token this often
PREFETCH_TIMEOUT_S = 5.0
CONFIG_CHECK_INTERVAL_S = 1.0
DEFAULT_STATE_URL = "sqlite:///.together/state.db"
CLOSE_CONNECTION_KEY = "together.close_connection"
READ_DEADLINE_KEY = "together.read_deadline"  # serve: bounds the whole body read, see `serve`
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

StartResponse = Callable[..., Any]
WSGIApplication = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class OrdersLookup(Protocol):
    def final_sale_orders(
        self, store_domain: str, access_token: str, email: str, cutoff: datetime, *, deadline: float
    ) -> list[Any]: ...


def plain_number(text: str, *, point: bool = False) -> bool:
    """ASCII digits (with `point`: at most one "."), what int() / float() then surely read.
    str.isdigit alone also takes "²" or "٣", which int() refuses: a 500 or a crash at start."""
    digits = text.replace(".", "", 1) if point else text
    return text.isascii() and digits.isdigit()


@dataclass(frozen=True)
class Settings:
    """Everything the handler needs; `from_env` reads the SPEC's environment variables."""

    accounts_dir: Path
    state_url: str = field(repr=False)  # may carry a database password
    keyring: Keyring
    shopify: ShopifySettings = field(default_factory=ShopifySettings)
    shopify_budget_s: float = SHOPIFY_BUDGET_S
    answer_budget_s: float = ANSWER_BUDGET_S
    body_timeout_s: float = BODY_TIMEOUT_S
    credential_ttl_s: float = CREDENTIAL_TTL_S
    stale_credential_s: float = STALE_CREDENTIAL_S
    store_timeout_s: float = STORE_TIMEOUT_S
    ready_store_timeout_s: float = READY_STORE_TIMEOUT_S
    store_retry_s: float = STORE_RETRY_S
    store_pool_size: int = STORE_POOL_SIZE
    config_check_interval_s: float = CONFIG_CHECK_INTERVAL_S
    log_salt: bytes | None = field(default=None, repr=False)  # default: derived from the keys
    oauth: OAuthSettings = field(default_factory=lambda: OAuthSettings(None, None))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        accounts_dir: Path | None = None,
        state_url: str | None = None,
    ) -> Settings:
        """Raises `SecretKeysError` when `TOGETHER_SECRET_KEYS` is missing or malformed."""
        pool = (environ.get("TOGETHER_STORE_POOL_SIZE") or "").strip()
        ttl = (environ.get("TOGETHER_CREDENTIAL_TTL") or "").strip()
        return cls(
            credential_ttl_s=float(ttl) if plain_number(ttl, point=True) else CREDENTIAL_TTL_S,
            accounts_dir=accounts_dir or Path(environ.get("TOGETHER_ACCOUNTS_DIR") or "accounts"),
            store_pool_size=int(pool) if plain_number(pool) and int(pool) > 0 else STORE_POOL_SIZE,
            state_url=state_url or environ.get("TOGETHER_STATE_URL") or DEFAULT_STATE_URL,
            keyring=Keyring.from_env(environ.get("TOGETHER_SECRET_KEYS")),
            shopify=ShopifySettings.from_env(environ),
            oauth=OAuthSettings.from_env(environ),
        )


# -- Config: loaded once, looked up in O(1), reloaded when the files change -----------------


def accounts_dir_signature(accounts_dir: Path) -> tuple[Any, ...]:
    """Cheap change check: names, sizes and mtimes of the folder's entries."""
    try:
        entries = sorted(
            (entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
            for entry in os.scandir(accounts_dir)
        )
        return (accounts_dir.stat().st_mtime_ns, tuple(entries))
    except OSError:
        return ("unreadable",)


def accounts_dir_version(accounts_dir: Path) -> str:
    """`sha256:` + the first 16 hex digits of a hash over every file's name and content: the
    same folder gives the same version on every replica."""
    digest = hashlib.sha256()
    try:
        names = sorted(entry.name for entry in os.scandir(accounts_dir) if entry.is_file())
        for name in names:
            content = (accounts_dir / name).read_bytes()
            digest.update(f"{name}\0{len(content)}\0".encode())
            digest.update(content)
    except OSError:
        return "unreadable"
    return "sha256:" + digest.hexdigest()[:16]


def git_commit(folder: Path) -> str | None:
    """The commit checked out where `folder` lives, when it is a git checkout (else None)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


@dataclass(frozen=True)
class ConfigSnapshot:
    """A loaded account map, the folder signature it was loaded from, and its version."""

    accounts: Mapping[str, Account]
    signature: tuple[Any, ...]
    version: str = ""
    commit: str | None = None

    @classmethod
    def load(cls, accounts_dir: Path) -> ConfigSnapshot:
        """Raises `ConfigError` if any account file is invalid."""
        signature = accounts_dir_signature(accounts_dir)
        version = accounts_dir_version(accounts_dir)
        files = load_accounts(accounts_dir)
        return cls(
            {domain.lower(): f.account for domain, f in files.items()},
            signature,
            version,
            git_commit(accounts_dir),
        )

    def describe(self) -> dict[str, Any]:
        """What `/readyz` and the reload log lines say about this config."""
        return {"accounts": len(self.accounts), "version": self.version, "commit": self.commit}


class AccountRegistry:
    """The account map: last good config, reloaded on change (checked at most once a second)."""

    def __init__(
        self,
        accounts_dir: Path,
        snapshot: ConfigSnapshot,
        *,
        check_interval_s: float = CONFIG_CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.accounts_dir = accounts_dir
        self._snapshot = snapshot
        self._seen_signature = snapshot.signature
        self._interval = check_interval_s
        self._clock = clock
        self._next_check = clock() + check_interval_s
        self._lock = threading.Lock()
        self._reload_requested = False
        self._watching = False
        # Called after every reload attempt with (loaded, the config now served): metrics.
        self.reload_listeners: list[Callable[[bool, ConfigSnapshot], None]] = []

    def __len__(self) -> int:
        return len(self._snapshot.accounts)

    @property
    def snapshot(self) -> ConfigSnapshot:
        return self._snapshot

    def get(self, account_domain: str) -> Account | None:
        if not self._watching:
            self._maybe_reload()
        return self._snapshot.accounts.get(account_domain.lower())

    def watch(self) -> None:
        """Check the folder now, then every `check_interval_s` on a thread of its own, so no
        request ever waits for a reload (`serve` uses this; in-process use checks on lookup)."""
        if self._watching:
            return
        self._maybe_reload(force=True)
        self._watching = True

        def loop() -> None:
            while True:
                time.sleep(self._interval)
                try:
                    self._maybe_reload(force=True)
                except Exception as error:  # never let the watcher die
                    log.error(
                        json_line({"event": "config_watch_failed", "error": type(error).__name__})
                    )

        threading.Thread(target=loop, name="config-watch", daemon=True).start()

    def request_reload(self) -> None:
        """Safe from a signal handler: the next lookup reloads."""
        self._reload_requested = True

    def reload(self) -> bool:
        """Load the folder again; a broken edit keeps the last good config and logs why."""
        loaded = self._load_again()
        for listener in self.reload_listeners:
            listener(loaded, self._snapshot)
        return loaded

    def _load_again(self) -> bool:
        signature = accounts_dir_signature(self.accounts_dir)
        self._seen_signature = signature
        try:
            snapshot = ConfigSnapshot.load(self.accounts_dir)
        except ConfigError as error:
            problems = [str(problem) for problem in error.problems[:5]]
            log.error(
                json_line(
                    {
                        "event": "config_reload_failed",
                        "message": "kept the last good account config",
                        "problems": problems,
                        "problem_count": len(error.problems),
                        "kept": self._snapshot.describe(),
                    }
                )
            )
            return False
        except Exception as error:  # any failure keeps the last good config; type only logged
            log.error(
                json_line(
                    {
                        "event": "config_reload_failed",
                        "message": "kept the last good account config",
                        "error": type(error).__name__,
                        "kept": self._snapshot.describe(),
                    }
                )
            )
            return False
        self._snapshot = snapshot
        log.info(json_line({"event": "config_reloaded", **snapshot.describe()}))
        return True

    def _maybe_reload(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and not self._reload_requested and now < self._next_check:
            return
        if not self._lock.acquire(blocking=False):
            return  # another thread is checking; use the current map meanwhile
        try:
            self._next_check = now + self._interval
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            elif accounts_dir_signature(self.accounts_dir) != self._seen_signature:
                self.reload()
        finally:
            self._lock.release()


# -- Shopify credentials, cached briefly ------------------------------------------------------


class StoreGate:
    """Store calls run on a few threads of their own, and the request waits for them with a
    deadline: a frozen database (which TCP cannot tell from a slow one) never holds a request
    longer than its budget. Calls beyond `max_waiting` fail at once instead of queueing."""

    def __init__(self, threads: int, *, max_waiting: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="store")
        self._max_waiting = max_waiting if max_waiting is not None else 2 * threads
        self._waiting = 0
        self._lock = threading.Lock()

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        with self._lock:
            if self._waiting >= self._max_waiting:
                raise StoreError(
                    f"the state store is not answering: {self._waiting} calls already waiting"
                )
            self._waiting += 1

        def run() -> Any:
            try:
                return call()
            finally:
                with self._lock:
                    self._waiting -= 1

        return self._pool.submit(run)

    @staticmethod
    def wait(future: Future[Any], timeout_s: float) -> Any:
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()
            raise StoreError(f"the state store did not answer within {timeout_s:g} s") from None


@dataclass(frozen=True)
class TokenRead:
    """A Shopify token as the handler got it: fresh from the store (or its few-second cache),
    or stale (`stale_s` old) because the store failed with `store_error`."""

    token: str | None
    stale_s: float | None = None
    store_error: str | None = None


@dataclass
class _Cached:
    read_at: float
    token: str | None


class CredentialSource:
    """Shopify access tokens from the store, opened lazily, cached for `ttl_s`, read with a
    deadline, and served stale (up to `stale_s` old) while the store fails."""

    def __init__(
        self,
        state_url: str,
        keyring: Keyring,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        store: Store | None = None,
        stale_s: float = STALE_CREDENTIAL_S,
        timeout_s: float = STORE_TIMEOUT_S,
        retry_s: float = STORE_RETRY_S,
        pool_size: int = STORE_POOL_SIZE,
    ) -> None:
        self._url = state_url
        self._keyring = keyring
        self._ttl = ttl_s
        self._stale = stale_s
        self._timeout = timeout_s
        self._retry = retry_s
        self._pool_size = pool_size
        self._clock = clock
        self._store = store
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, Future[Any]] = {}
        self._ping: Future[Any] | None = None
        self._gate = StoreGate(pool_size)
        self._failed_until = 0.0
        self._last_error: str | None = None

    def store(self) -> Store:
        if self._store is None:
            with self._open_lock:
                if self._store is None:
                    self._store = Store.open(
                        self._url, self._keyring, limits=handler_limits(self._pool_size)
                    )
        return self._store

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def prefetch(self, store_domains: Iterable[str], timeout_s: float) -> int:
        """Read the tokens of these stores in one query (bounded), so that every worker holds
        a recent token for every configured account, not only for those it was asked about:
        then a store outage finds them all warm. Returns how many credentials were found."""
        domains = sorted({domain.strip().lower() for domain in store_domains})

        def fetch() -> int:
            started = self._clock()
            found = self.store().get_credentials("shopify", domains)
            for domain in domains:
                current = self._cache.get(domain)
                if current is None or current.read_at <= started:  # never undo a newer read
                    credential = found.get(domain)
                    token = credential.access_token if credential is not None else None
                    self._cache[domain] = _Cached(started, token)
            return len(found)

        count: int = StoreGate.wait(self._gate.submit(fetch), timeout_s)
        return count

    def keep_warm(
        self, store_domains: Callable[[], Iterable[str]], interval_s: float = PREFETCH_INTERVAL_S
    ) -> None:
        """`prefetch` every `interval_s` on a thread of its own (a failure is only logged)."""

        def loop() -> None:
            while True:
                time.sleep(interval_s)
                try:
                    self.prefetch(store_domains(), PREFETCH_TIMEOUT_S)
                except StoreError as error:
                    log.warning(json_line({"event": "token_prefetch_failed", "reason": str(error)}))
                except Exception as error:  # never let the thread die
                    log.error(
                        json_line({"event": "token_prefetch_failed", "error": type(error).__name__})
                    )

        threading.Thread(target=loop, name="token-prefetch", daemon=True).start()

    def cached_tokens(self) -> int:
        """How many tokens could be served now if the store failed."""
        now = self._clock()
        return sum(now - entry.read_at < self._stale for entry in list(self._cache.values()))

    def _failed(self, error: StoreError) -> None:
        message = str(error)
        first = self._clock() >= self._failed_until
        self._failed_until = self._clock() + self._retry
        if first or message != self._last_error:
            log.warning(json_line({"event": "store_unavailable", "reason": message}))
        self._last_error = message

    def _recovered(self) -> None:
        if self._last_error is not None:
            log.info(json_line({"event": "store_recovered"}))
        self._failed_until = 0.0
        self._last_error = None

    def ping(self, timeout_s: float = READY_STORE_TIMEOUT_S) -> None:
        """Raise `StoreError` unless the store answers within `timeout_s` (one ping at a time)."""
        with self._lock:
            future = self._ping
            if future is None or future.done():
                future = self._ping = self._gate.submit(lambda: self.store().ping())
        try:
            StoreGate.wait(future, timeout_s)
        except StoreError as error:
            self._failed(error)
            raise
        self._recovered()

    def shopify_token(self, store_domain: str) -> str | None:
        return self.read_token(store_domain).token

    def read_token(self, store_domain: str) -> TokenRead:
        """The store's token for `store_domain`; stale while the store fails (`StoreError`
        only when there is no usable cached one)."""
        now = self._clock()
        cached = self._cache.get(store_domain)
        if cached is not None and now - cached.read_at < self._ttl:
            return TokenRead(cached.token)
        usable = cached if cached is not None and now - cached.read_at < self._stale else None
        if now < self._failed_until:  # the store just failed: do not wait for it again yet
            return self._stale_or_raise(usable, now, StoreError(self._last_error or "failed"))
        with self._lock:
            future = self._inflight.get(store_domain)
            if future is not None and usable is not None:
                return TokenRead(usable.token)  # another thread is refreshing it right now
            if future is None:
                try:
                    future = self._gate.submit(lambda: self._fetch(store_domain))
                except StoreError as error:
                    return self._stale_or_raise(usable, now, error)
                self._inflight[store_domain] = future
                future.add_done_callback(lambda _f: self._inflight.pop(store_domain, None))
        try:
            token = StoreGate.wait(future, self._timeout)
        except StoreError as error:
            self._failed(error)
            return self._stale_or_raise(usable, now, error)
        self._recovered()
        return TokenRead(token)

    def _fetch(self, store_domain: str) -> str | None:
        credential = self.store().get_credential("shopify", store_domain)
        token = credential.access_token if credential is not None else None
        self._cache[store_domain] = _Cached(self._clock(), token)  # a late answer counts too
        return token

    def _stale_or_raise(self, usable: _Cached | None, now: float, error: StoreError) -> TokenRead:
        if usable is None:
            raise error
        return TokenRead(usable.token, round(now - usable.read_at, 1), str(error))


# -- Requests ---------------------------------------------------------------------------------


class HttpError(Exception):
    """An answer other than 200: status, code and a message that says what to fix."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)
        self.close = close


@dataclass(frozen=True)
class Event:
    ticket_id: str | int
    account_domain: str
    customer_email: str | None


@dataclass
class RequestLog:
    request_id: str
    route: str
    method: str
    account: str | None = None
    email_hash: str | None = None
    shopify_ms: float | None = None
    error: str | None = None
    orders: int | None = None
    credential_stale_s: float | None = None
    store_error: str | None = None


_REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def read_body(environ: dict[str, Any], max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """At most `max_bytes` of the body: 413 beyond, 400 when shorter than `Content-Length`."""
    stream = environ["wsgi.input"]
    declared = (environ.get("CONTENT_LENGTH") or "").strip()
    try:
        if declared:
            if not plain_number(declared):
                raise HttpError(
                    400, "invalid_content_length", "Content-Length is not a number", close=True
                )
            length = int(declared)
            if length > max_bytes:
                raise HttpError(413, "body_too_large", _too_large(max_bytes), close=True)
            body = _read_up_to(stream, length)
            if len(body) < length:
                raise HttpError(
                    400,
                    "incomplete_body",
                    "the body is shorter than its Content-Length",
                    close=True,
                )
            return body
        if environ.get("wsgi.input_terminated"):  # chunked: the server marks the end
            body = _read_up_to(stream, max_bytes + 1)
            if len(body) > max_bytes:
                raise HttpError(413, "body_too_large", _too_large(max_bytes), close=True)
            return body
        if "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower():
            # wsgiref, uWSGI --http-socket: a chunked body the server neither de-chunks nor
            # marks the end of; reading it could wait forever, and ignoring it drops the event.
            raise HttpError(
                411,
                "length_required",
                "this server cannot read a chunked body: send the body with a Content-Length",
                close=True,
            )
        return b""
    except OSError:
        raise HttpError(
            400, "incomplete_body", "the body did not arrive in time", close=True
        ) from None


def _too_large(max_bytes: int) -> str:
    return f"the body is larger than {max_bytes // 1024} KiB"


def _read_up_to(stream: Any, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def parse_event(body: bytes) -> Event:
    """The event body, checked field by field (400 with a precise code otherwise)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "invalid_encoding", "the body is not valid UTF-8") from None
    try:
        document = json.loads(text)
    except RecursionError:
        raise HttpError(400, "invalid_json", "the body is nested too deeply") from None
    except ValueError:
        raise HttpError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise HttpError(400, "not_an_object", "the body must be a JSON object")
    ticket_id = document.get("ticket_id")
    if isinstance(ticket_id, bool) or not isinstance(ticket_id, str | int):
        raise HttpError(400, "invalid_ticket_id", "ticket_id must be a string or an integer")
    domain = document.get("account_domain")
    if not isinstance(domain, str) or not GORGIAS_ACCOUNT_RE.fullmatch(domain):
        raise HttpError(
            400,
            "invalid_account_domain",
            "account_domain must be a Gorgias domain like acme.gorgias.com",
        )
    if "customer_email" not in document:
        raise HttpError(400, "invalid_customer_email", "customer_email is missing")
    email = document["customer_email"]
    if email is not None and not isinstance(email, str):
        raise HttpError(400, "invalid_customer_email", "customer_email must be a string or null")
    return Event(ticket_id=ticket_id, account_domain=domain.lower(), customer_email=email)


def plausible_email(value: str | None) -> str | None:
    """The email to look up, or None when it cannot be a real address (answer: empty list)."""
    if value is None:
        return None
    email = value.strip()
    if not email or len(email) > MAX_EMAIL_CHARS or "@" not in email:
        return None
    if any(
        ord(char) < 0x20 or ord(char) == 0x7F or 0xD800 <= ord(char) <= 0xDFFF for char in email
    ):
        return None  # control characters, or a lone surrogate ("\ud800" in JSON): not UTF-8
    local, _, domain = email.rpartition("@")
    if not local or not domain:
        return None
    return email


def _is_json_content_type(value: str) -> bool:
    return value.split(";", 1)[0].strip().lower() == "application/json"


class HandlerApp:
    """The WSGI callable. Thread-safe: one instance serves every thread of a worker."""

    def __init__(
        self,
        settings: Settings,
        registry: AccountRegistry,
        credentials: CredentialSource,
        shopify: OrdersLookup,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        oauth: OAuthRoutes | None = None,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.credentials = credentials
        self.shopify = shopify
        self._clock = clock
        self._now = now
        self._draining = draining
        # Called once per answered request with (entry, status, seconds taken): metrics.
        self.request_listeners: list[Callable[[RequestLog, int, float], None]] = []
        self._email_key = settings.log_salt or settings.keyring.derived_key(EMAIL_HASH_KEY_LABEL)
        self.oauth = oauth or OAuthRoutes(
            settings.oauth,
            settings.keyring,
            credentials.store,
            account_enabled=lambda domain: getattr(registry.get(domain), "enabled", False),
        )

    def warm_up(self) -> None:
        """Open the store and read every configured account's token before the first request
        needs them, then keep them fresh in the background (see `CredentialSource.prefetch`).
        Bounded: a store that does not answer is only logged, and `/readyz` tells."""
        with contextlib.suppress(StoreError):
            self.credentials.ping(self.settings.ready_store_timeout_s)
            self.credentials.prefetch(self._stores(), self.settings.ready_store_timeout_s)
        self.credentials.keep_warm(self._stores)

    def _stores(self) -> list[str]:
        accounts = self.registry.snapshot.accounts.values()
        return [account.shopify_store for account in accounts if account.enabled]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = self._clock()
        path = environ.get("PATH_INFO") or "/"
        method = (environ.get("REQUEST_METHOD") or "GET").upper()
        request_id = environ.get("HTTP_X_REQUEST_ID") or ""
        if not _REQUEST_ID_RE.match(request_id):
            request_id = uuid.uuid4().hex
        route = path if path in (EVENTS_PATH, HEALTH_PATH, READY_PATH, *OAUTH_PATHS) else "other"
        entry = RequestLog(request_id=request_id, route=route, method=method)
        set_request_id(request_id)
        try:
            if path in OAUTH_PATHS:
                return self._oauth_page(environ, path, entry, started, start_response)
            return self._json_route(environ, path, method, entry, started, start_response)
        finally:
            set_request_id(None)

    def _json_route(
        self,
        environ: dict[str, Any],
        path: str,
        method: str,
        entry: RequestLog,
        started: float,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        request_id = entry.request_id
        headers: list[tuple[str, str]] = []
        try:
            status, document = self._route(environ, path, method, entry)
        except HttpError as error:
            status = error.status
            document = {"error": {"code": error.code, "message": error.message}}
            headers.extend(error.headers)
            entry.error = error.code
            if error.close:
                environ[CLOSE_CONNECTION_KEY] = True
        except Exception as error:
            status = 500
            document = {"error": {"code": "internal_error", "message": "unexpected error"}}
            entry.error = "internal_error"
            self._log_unexpected(error, request_id)
        body = json.dumps(document).encode("utf-8")
        headers += [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Request-Id", request_id),
        ]
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        self._log(entry, status, started)
        return [b""] if method == "HEAD" else [body]

    def _oauth_page(
        self,
        environ: dict[str, Any],
        path: str,
        entry: RequestLog,
        started: float,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """The OAuth routes answer HTML pages (or a redirect), not JSON."""
        try:
            page = self.oauth.answer(
                entry.method,
                path,
                environ.get("QUERY_STRING") or "",
                client=client_address(environ),
            )
        except Exception as error:  # the merchant gets a page, never a stack trace
            self._log_unexpected(error, entry.request_id)
            page = unexpected_error_page()
        entry.account, entry.error = page.account, page.code
        body = page.body()
        headers = [*page.headers(), ("Content-Length", str(len(body)))]
        headers.append(("X-Request-Id", entry.request_id))
        start_response(f"{page.status} {_REASONS.get(page.status, 'Error')}", headers)
        self._log(entry, page.status, started)
        return [b""] if entry.method == "HEAD" else [body]

    @staticmethod
    def _log_unexpected(error: Exception, request_id: str) -> None:
        # Type and frames only: an exception message could carry request data.
        frames = "".join(traceback.format_tb(error.__traceback__))
        log.error(
            json_line(
                {
                    "event": "unexpected_error",
                    "type": type(error).__name__,
                    "request_id": request_id,
                    "traceback": frames,
                }
            )
        )

    def _log(self, entry: RequestLog, status: int, started: float) -> None:
        duration_s = self._clock() - started
        fields: dict[str, Any] = {
            "event": "request",
            "request_id": entry.request_id,
            "method": entry.method,
            "route": entry.route,
            "status": status,
            "duration_ms": round(duration_s * 1000, 1),
        }
        optional = {
            "account": entry.account,
            "email_hash": entry.email_hash,
            "shopify_ms": entry.shopify_ms,
            "orders": entry.orders,
            "error": entry.error,
            "credential_stale_s": entry.credential_stale_s,
            "store_error": entry.store_error,
        }
        fields.update({key: value for key, value in optional.items() if value is not None})
        log.info(json_line(fields))
        for listener in self.request_listeners:
            listener(entry, status, duration_s)

    def _route(
        self, environ: dict[str, Any], path: str, method: str, entry: RequestLog
    ) -> tuple[int, dict[str, Any]]:
        if path == EVENTS_PATH:
            if method != "POST":
                raise HttpError(405, "method_not_allowed", "use POST", headers=[("Allow", "POST")])
            answer = self._event(environ, entry)
            # No usable email or no matching order: `{}`, so the sidebar shows no card.
            return 200, {} if answer is None else answer.model_dump(mode="json")
        if path in (HEALTH_PATH, READY_PATH):
            if method not in ("GET", "HEAD"):
                raise HttpError(
                    405, "method_not_allowed", "use GET", headers=[("Allow", "GET, HEAD")]
                )
            if path == READY_PATH:
                return self._ready(entry)
            return 200, {"status": "ok"}
        raise HttpError(404, "not_found", "no such route")

    def _ready(self, entry: RequestLog) -> tuple[int, dict[str, Any]]:
        """200 when this replica should get traffic: not shutting down, config loaded, and the
        store answered within `ready_store_timeout_s`. Never waits longer than that."""
        config = self.registry.snapshot.describe()
        if self._draining():
            entry.error = "shutting_down"
            return 503, {
                "error": {"code": "shutting_down", "message": "this process is shutting down"},
                "status": "shutting_down",
                "config": config,
            }
        try:
            self.credentials.ping(self.settings.ready_store_timeout_s)
        except StoreError as error:
            entry.error, entry.store_error = "store_unavailable", str(error)
            return 503, {
                "error": {
                    "code": "store_unavailable",
                    "message": "the state store does not answer",
                },
                "status": "store_unavailable",
                "config": config,
                "cached_tokens": self.credentials.cached_tokens(),
            }
        return 200, {"status": "ready", "accounts": config["accounts"], "config": config}

    def _event(self, environ: dict[str, Any], entry: RequestLog) -> EventAnswer | None:
        content_type = environ.get("CONTENT_TYPE") or ""
        if not _is_json_content_type(content_type):
            raise HttpError(415, "unsupported_media_type", "send Content-Type: application/json")
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(self.settings.body_timeout_s)
        read_deadline = environ.get(READ_DEADLINE_KEY)  # bounds the whole body, not each read
        if read_deadline is not None:
            read_deadline(self.settings.body_timeout_s)
        try:
            body = read_body(environ)
        finally:
            if read_deadline is not None:
                read_deadline(None)
        answer_by = self._clock() + self.settings.answer_budget_s
        event = parse_event(body)
        entry.account = event.account_domain
        token = environ.get("HTTP_X_TOGETHER_TOKEN") or ""
        if not token:
            raise HttpError(401, "missing_token", "the X-Together-Token header is missing")
        if not self.settings.keyring.verify_event_token(event.account_domain, token):
            raise HttpError(
                401, "invalid_token", "the X-Together-Token does not match account_domain"
            )
        account = self.registry.get(event.account_domain)
        if account is None:
            raise HttpError(404, "unknown_account", "this Gorgias account is not configured")
        if not account.enabled:
            raise HttpError(404, "account_disabled", "this Gorgias account is disabled")
        email = plausible_email(event.customer_email)
        if email is None:
            entry.orders = 0
            return None
        entry.email_hash = email_hash(self._email_key, email)
        try:
            credential = self.credentials.read_token(account.shopify_store)
        except StoreError as error:
            entry.store_error = str(error)
            raise HttpError(
                503, "store_unavailable", "the credential store does not answer"
            ) from None
        access_token = credential.token
        if credential.stale_s is not None:
            entry.credential_stale_s, entry.store_error = credential.stale_s, credential.store_error
        if access_token is None:
            raise HttpError(
                502,
                "shopify_not_connected",
                "no Shopify credential is stored for this account's store",
            )
        cutoff = self._now() - timedelta(days=account.lookback_days)
        shopify_started = self._clock()
        # The Shopify budget starts now (time spent on the store is not Shopify's), within
        # the answer's own budget.
        deadline = min(shopify_started + self.settings.shopify_budget_s, answer_by)
        try:
            orders = self.shopify.final_sale_orders(
                account.shopify_store, access_token, email, cutoff, deadline=deadline
            )
        except ShopifyError as error:
            raise HttpError(error.http_status, error.code, error.message) from None
        finally:
            entry.shopify_ms = round((self._clock() - shopify_started) * 1000, 1)
        entry.orders = len(orders)
        if not orders:
            # The reserved verification event gets the whole shape, proof that Shopify was
            # asked (see `together_reconcile.verification`); any other event gets `{}`.
            verifying = is_verification(event.ticket_id, event.customer_email)
            return empty_answer(account) if verifying else None
        return EventAnswer(
            shopify_store=account.shopify_store,
            lookback_days=account.lookback_days,
            final_sale_order_count=len(orders),
            final_sale_orders=orders,
        )


def create_app(
    settings: Settings,
    *,
    snapshot: ConfigSnapshot | None = None,
    store: Store | None = None,
    shopify: OrdersLookup | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    draining: Callable[[], bool] = lambda: False,
) -> HandlerApp:
    """The event handler. Loads the accounts now (raises `ConfigError`) unless given a snapshot;
    the store opens on first use, so a store that is down shows in `/readyz`, not at start."""
    registry = AccountRegistry(
        settings.accounts_dir,
        snapshot or ConfigSnapshot.load(settings.accounts_dir),
        check_interval_s=settings.config_check_interval_s,
        clock=clock,
    )
    credentials = CredentialSource(
        settings.state_url,
        settings.keyring,
        ttl_s=settings.credential_ttl_s,
        clock=clock,
        store=store,
        stale_s=settings.stale_credential_s,
        timeout_s=settings.store_timeout_s,
        retry_s=settings.store_retry_s,
        pool_size=settings.store_pool_size,
    )
    lookup = shopify or ShopifyClient(settings.shopify, clock=clock)
    return HandlerApp(
        settings, registry, credentials, lookup, clock=clock, now=now, draining=draining
    )
