"""The WSGI application Gorgias calls: parse → authenticate → look up account → Shopify → answer.

Routes: `POST /gorgias/events`, `GET /healthz`, `GET /readyz`, and the OAuth pages
`GET /oauth/gorgias/install` and `GET /oauth/gorgias/callback` (HTML, see `oauth`). Event checks
run in the order the SPEC fixes (405, 415, 413, 400, 401, 404, then Shopify) and every JSON error
body is `{"error": {"code", "message"}}`. Nothing about the customer is stored; the one JSON log
line per request holds the email only as a salted hash.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
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
from together_reconcile.events.logs import HANDLER_LOGGER, email_hash, json_line
from together_reconcile.events.shopify import ShopifyClient, ShopifyError, ShopifySettings
from together_reconcile.gorgias.oauth import (
    OAUTH_PATHS,
    OAuthRoutes,
    OAuthSettings,
    unexpected_error_page,
)
from together_reconcile.secrets import Keyring
from together_reconcile.store import Store, StoreError

log = logging.getLogger(HANDLER_LOGGER)

EVENTS_PATH = "/gorgias/events"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
MAX_BODY_BYTES = 64 * 1024
MAX_EMAIL_CHARS = 320
SHOPIFY_BUDGET_S = 5.0
BODY_TIMEOUT_S = 5.0
CREDENTIAL_TTL_S = 10.0
CONFIG_CHECK_INTERVAL_S = 1.0
DEFAULT_STATE_URL = "sqlite:///.together/state.db"
CLOSE_CONNECTION_KEY = "together.close_connection"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

StartResponse = Callable[..., Any]
WSGIApplication = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class OrdersLookup(Protocol):
    def final_sale_orders(
        self, store_domain: str, access_token: str, email: str, cutoff: datetime, *, deadline: float
    ) -> list[Any]: ...


@dataclass(frozen=True)
class Settings:
    """Everything the handler needs; `from_env` reads the SPEC's environment variables."""

    accounts_dir: Path
    state_url: str = field(repr=False)  # may carry a database password
    keyring: Keyring
    shopify: ShopifySettings = field(default_factory=ShopifySettings)
    shopify_budget_s: float = SHOPIFY_BUDGET_S
    body_timeout_s: float = BODY_TIMEOUT_S
    credential_ttl_s: float = CREDENTIAL_TTL_S
    config_check_interval_s: float = CONFIG_CHECK_INTERVAL_S
    log_salt: bytes = field(default_factory=lambda: secrets.token_bytes(16), repr=False)
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
        return cls(
            accounts_dir=accounts_dir or Path(environ.get("TOGETHER_ACCOUNTS_DIR") or "accounts"),
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


@dataclass(frozen=True)
class ConfigSnapshot:
    """A loaded account map and the folder signature it was loaded from."""

    accounts: Mapping[str, Account]
    signature: tuple[Any, ...]

    @classmethod
    def load(cls, accounts_dir: Path) -> ConfigSnapshot:
        """Raises `ConfigError` if any account file is invalid."""
        signature = accounts_dir_signature(accounts_dir)
        files = load_accounts(accounts_dir)
        return cls({domain.lower(): f.account for domain, f in files.items()}, signature)


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

    def __len__(self) -> int:
        return len(self._snapshot.accounts)

    def get(self, account_domain: str) -> Account | None:
        self._maybe_reload()
        return self._snapshot.accounts.get(account_domain.lower())

    def request_reload(self) -> None:
        """Safe from a signal handler: the next lookup reloads."""
        self._reload_requested = True

    def reload(self) -> bool:
        """Load the folder again; a broken edit keeps the last good config and logs why."""
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
                    }
                )
            )
            return False
        self._snapshot = snapshot
        log.info(json_line({"event": "config_reloaded", "accounts": len(snapshot.accounts)}))
        return True

    def _maybe_reload(self) -> None:
        now = self._clock()
        if not self._reload_requested and now < self._next_check:
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


class CredentialSource:
    """Shopify access tokens from the store, opened lazily and cached for a few seconds."""

    def __init__(
        self,
        state_url: str,
        keyring: Keyring,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        store: Store | None = None,
    ) -> None:
        self._url = state_url
        self._keyring = keyring
        self._ttl = ttl_s
        self._clock = clock
        self._store = store
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str | None]] = {}

    def store(self) -> Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = Store.open(self._url, self._keyring)
        return self._store

    def ping(self) -> None:
        self.store().ping()

    def shopify_token(self, store_domain: str) -> str | None:
        now = self._clock()
        cached = self._cache.get(store_domain)
        if cached is not None and cached[0] > now:
            return cached[1]
        credential = self.store().get_credential("shopify", store_domain)
        token = credential.access_token if credential is not None else None
        self._cache[store_domain] = (now + self._ttl, token)
        return token


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


_REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
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
            if not declared.isdigit():
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
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in email):
        return None
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
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.credentials = credentials
        self.shopify = shopify
        self._clock = clock
        self._now = now
        self.oauth = oauth or OAuthRoutes(settings.oauth, settings.keyring, credentials.store)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = self._clock()
        path = environ.get("PATH_INFO") or "/"
        method = (environ.get("REQUEST_METHOD") or "GET").upper()
        request_id = environ.get("HTTP_X_REQUEST_ID") or ""
        if not _REQUEST_ID_RE.match(request_id):
            request_id = uuid.uuid4().hex
        route = path if path in (EVENTS_PATH, HEALTH_PATH, READY_PATH, *OAUTH_PATHS) else "other"
        entry = RequestLog(request_id=request_id, route=route, method=method)
        if path in OAUTH_PATHS:
            return self._oauth_page(environ, path, entry, started, start_response)
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
            page = self.oauth.answer(entry.method, path, environ.get("QUERY_STRING") or "")
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
        fields: dict[str, Any] = {
            "event": "request",
            "request_id": entry.request_id,
            "method": entry.method,
            "route": entry.route,
            "status": status,
            "duration_ms": round((self._clock() - started) * 1000, 1),
        }
        optional = {
            "account": entry.account,
            "email_hash": entry.email_hash,
            "shopify_ms": entry.shopify_ms,
            "orders": entry.orders,
            "error": entry.error,
        }
        fields.update({key: value for key, value in optional.items() if value is not None})
        log.info(json_line(fields))

    def _route(
        self, environ: dict[str, Any], path: str, method: str, entry: RequestLog
    ) -> tuple[int, dict[str, Any]]:
        if path == EVENTS_PATH:
            if method != "POST":
                raise HttpError(405, "method_not_allowed", "use POST", headers=[("Allow", "POST")])
            answer = self._event(environ, entry)
            return 200, answer.model_dump(mode="json")
        if path in (HEALTH_PATH, READY_PATH):
            if method not in ("GET", "HEAD"):
                raise HttpError(
                    405, "method_not_allowed", "use GET", headers=[("Allow", "GET, HEAD")]
                )
            if path == READY_PATH:
                self._ready()
                return 200, {"status": "ready", "accounts": len(self.registry)}
            return 200, {"status": "ok"}
        raise HttpError(404, "not_found", "no such route")

    def _ready(self) -> None:
        try:
            self.credentials.ping()
        except StoreError:
            raise HttpError(503, "store_unavailable", "the state store does not answer") from None

    def _event(self, environ: dict[str, Any], entry: RequestLog) -> EventAnswer:
        content_type = environ.get("CONTENT_TYPE") or ""
        if not _is_json_content_type(content_type):
            raise HttpError(415, "unsupported_media_type", "send Content-Type: application/json")
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(self.settings.body_timeout_s)
        body = read_body(environ)
        deadline = self._clock() + self.settings.shopify_budget_s
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
            return empty_answer(account)
        entry.email_hash = email_hash(self.settings.log_salt, email)
        try:
            access_token = self.credentials.shopify_token(account.shopify_store)
        except StoreError:
            raise HttpError(
                503, "store_unavailable", "the credential store does not answer"
            ) from None
        if access_token is None:
            raise HttpError(
                502,
                "shopify_not_connected",
                "no Shopify credential is stored for this account's store",
            )
        cutoff = self._now() - timedelta(days=account.lookback_days)
        shopify_started = self._clock()
        try:
            orders = self.shopify.final_sale_orders(
                account.shopify_store, access_token, email, cutoff, deadline=deadline
            )
        except ShopifyError as error:
            raise HttpError(error.http_status, error.code, error.message) from None
        finally:
            entry.shopify_ms = round((self._clock() - shopify_started) * 1000, 1)
        entry.orders = len(orders)
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
    )
    lookup = shopify or ShopifyClient(settings.shopify, clock=clock)
    return HandlerApp(settings, registry, credentials, lookup, clock=clock, now=now)
