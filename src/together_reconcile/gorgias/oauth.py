"""Connecting a Gorgias account (OAuth2): the install redirect, the signed `state`, the callback.

`GET /oauth/gorgias/install?account=acme` (Gorgias's "Connect App" sends the merchant there)
answers 302 to `{TOGETHER_GORGIAS_URL with acme}/oauth/authorize` with a `state` that is signed
(purpose "oauth-state"), binds the account and a random nonce, and lasts 10 minutes.
`GET /oauth/gorgias/callback?code=&state=` checks the state first (signature, age, account,
and that its nonce was never used: recorded in the state store, so it holds across processes,
and purged once no state could still carry it), redeems the code at `…/oauth/token`, checks
with one read of that account's own API that the new token belongs to the account the state
was issued for, and only then stores the tokens encrypted with their expiry.

Both routes are open to any Gorgias account (merchants connect before support links them), so
each client address may make at most `RATE_LIMIT` requests to them in any `RATE_WINDOW_S`
(per process; 429 with `Retry-After` beyond). An `error=` from Gorgias is shown only as one of
the OAuth error codes we know, in our own words, never as the text received.

Every answer is a small HTML page for the merchant; problems get a 4xx/5xx page that says what
to do, never a stack trace, and everything echoed is HTML-escaped. No token or code appears in
a page or in an error.
"""

from __future__ import annotations

import html
import ipaddress
import json
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

import httpx

from together_reconcile.config import GORGIAS_ACCOUNT_RE, SUBDOMAIN_RE
from together_reconcile.github import GitHubSettings, dispatch_apply
from together_reconcile.gorgias.tokens import (
    CLIENT_ID_ENV,
    CLIENT_SECRET_ENV,
    OAuthApp,
    TokenEndpointError,
    TokenGrant,
    exchange_code,
    token_http_client,
)
from together_reconcile.secrets import Keyring
from together_reconcile.store import Credential, Store, StoreError

# `offline` makes Gorgias issue a refresh token (access tokens live 24 h; reference §4, O10);
# `integrations:read` / `integrations:write` cover HTTP integrations, and widgets appear to
# fall under them (no widget scope exists, reference §4); `openid` is the basic scope of an
# OAuth app. Nothing else: the integration call brings the customer's email, so we never read
# customers or tickets.
SCOPES: Final = "openid offline integrations:read integrations:write"

INSTALL_PATH: Final = "/oauth/gorgias/install"
CALLBACK_PATH: Final = "/oauth/gorgias/callback"
OAUTH_PATHS: Final = (INSTALL_PATH, CALLBACK_PATH)
PUBLIC_URL_ENV: Final = "TOGETHER_PUBLIC_URL"
STATE_PURPOSE: Final = "oauth-state"
STATE_MAX_AGE_S: Final = 600
# A used nonce is kept while a state carrying it could still verify: 10 minutes, plus the 60 s
# a state may come from a clock ahead of ours, plus margin. Older rows are purged on each use.
NONCE_KEEP: Final = timedelta(seconds=STATE_MAX_AGE_S + 300)
RATE_LIMIT: Final = 60  # requests per client address and window: never refused at or below
RATE_WINDOW_S: Final = 60.0
RATE_MAX_CLIENTS: Final = 10_000  # addresses tracked at once (the least recent are forgotten)
_MAX_ECHO_CHARS = 100


class OAuthError(Exception):
    """A request the OAuth routes cannot serve: an HTTP status, a code, and words for a human."""

    def __init__(self, status: int, code: str, title: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail


@dataclass(frozen=True)
class OAuthSettings:
    """Our OAuth app (None without client id/secret) and the public URL of the callback."""

    app: OAuthApp | None
    public_url: str | None
    # Where to dispatch the apply workflow after a connect (SPEC "The support loop").
    github: GitHubSettings = field(default_factory=lambda: GitHubSettings(None))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OAuthSettings:
        public_url = (environ.get(PUBLIC_URL_ENV) or "").strip().rstrip("/") or None
        return cls(OAuthApp.from_env(environ), public_url, GitHubSettings.from_env(environ))

    def require(self) -> tuple[OAuthApp, str]:
        """The app and public URL, or a 503 naming what is missing."""
        missing = [CLIENT_ID_ENV, CLIENT_SECRET_ENV] if self.app is None else []
        if self.public_url is None:
            missing.append(PUBLIC_URL_ENV)
        if self.app is None or self.public_url is None:
            names = (
                ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
            )
            raise OAuthError(
                503,
                "oauth_not_configured",
                "Connecting Gorgias is not set up yet",
                f"This server cannot connect Gorgias accounts until {names} "
                f"{'are' if len(missing) > 1 else 'is'} set. Please contact Together support.",
            )
        return self.app, self.public_url


class ClientRateLimit:
    """At most `limit` requests per client address in any `window_s` seconds (a sliding log of
    the accepted requests' times: an address at or below the limit is never refused)."""

    def __init__(
        self,
        limit: int = RATE_LIMIT,
        window_s: float = RATE_WINDOW_S,
        *,
        max_clients: int = RATE_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def take(self, client: str) -> int | None:
        """None when `client` may go on (the request is counted), else seconds to wait."""
        now = self._clock()
        with self._lock:
            times = self._seen.pop(client, None)
            if times is None:
                times = deque()
            while times and times[0] <= now - self.window_s:
                times.popleft()
            self._seen[client] = times  # now the most recent
            if len(times) >= self.limit:
                return max(1, math.ceil(times[0] + self.window_s - now))
            times.append(now)
            while len(self._seen) > self._max_clients:
                self._seen.popitem(last=False)
            return None


def client_address(environ: Mapping[str, Any]) -> str:
    """The address a request came from: `REMOTE_ADDR`, or, when that is a proxy on this host
    (loopback, as `serve`'s default `forwarded_allow_ips`), the last `X-Forwarded-For` entry
    (the address that proxy saw)."""
    remote = str(environ.get("REMOTE_ADDR") or "")
    try:
        loopback = ipaddress.ip_address(remote).is_loopback
    except ValueError:
        loopback = False
    forwarded = str(environ.get("HTTP_X_FORWARDED_FOR") or "")
    if loopback and forwarded.strip():
        return forwarded.rsplit(",", 1)[-1].strip()[:64]
    return remote


def callback_uri(public_url: str) -> str:
    return public_url.rstrip("/") + CALLBACK_PATH


def _shown(value: str) -> str:
    return value if len(value) <= _MAX_ECHO_CHARS else value[:_MAX_ECHO_CHARS] + "…"


def account_subdomain(value: str | None) -> str:
    """`acme` from `acme` or `acme.gorgias.com` (any case); 400 otherwise."""
    if value is None or not value.strip():
        raise OAuthError(
            400,
            "missing_account",
            "Which Gorgias account?",
            "The link does not say which Gorgias account to connect: open it from the Together "
            "app in Gorgias, or add ?account=SUBDOMAIN (acme for acme.gorgias.com).",
        )
    text = value.strip()
    if GORGIAS_ACCOUNT_RE.match(text):
        text = text.split(".", 1)[0]
    if not SUBDOMAIN_RE.match(text):
        raise OAuthError(
            400,
            "invalid_account",
            "Not a Gorgias account",
            f"“{_shown(value)}” is not a Gorgias account: give its subdomain, like acme for "
            "acme.gorgias.com.",
        )
    return text.lower()


# -- State ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateClaims:
    subdomain: str
    nonce: str = field(repr=False)


def issue_state(keyring: Keyring, subdomain: str, *, now: float) -> str:
    """A signed state binding `subdomain` and a fresh nonce, issued at `now`."""
    payload = json.dumps({"a": subdomain, "n": secrets.token_urlsafe(16)}, separators=(",", ":"))
    return keyring.sign(payload.encode(), STATE_PURPOSE, now=now)


def _start_again(code: str, title: str, why: str) -> OAuthError:
    return OAuthError(
        400, code, title, f"{why} Start again from the Together app in Gorgias (Connect)."
    )


def verify_state(keyring: Keyring, state: str | None, *, now: float) -> StateClaims:
    """The claims of a state we signed that is at most 10 minutes old (not yet: single use)."""
    if state is None or not state:
        raise _start_again("missing_state", "Connection link incomplete", "The link has no state.")
    payload = keyring.unsign(state, STATE_PURPOSE)
    claims = _claims(payload)
    if claims is None:
        raise _start_again(
            "invalid_state", "Connection link not valid", "This link was not issued by Together."
        )
    if keyring.unsign(state, STATE_PURPOSE, max_age_s=STATE_MAX_AGE_S, now=now) is None:
        raise _start_again(
            "expired_state",
            "Connection link expired",
            f"Connection links work for {STATE_MAX_AGE_S // 60} minutes.",
        )
    return claims


def _claims(payload: bytes | None) -> StateClaims | None:
    if payload is None:
        return None
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    subdomain, nonce = document.get("a"), document.get("n")
    if not isinstance(subdomain, str) or not isinstance(nonce, str) or not nonce:
        return None
    if not SUBDOMAIN_RE.match(subdomain):
        return None
    return StateClaims(subdomain, nonce)


def authorize_url(app: OAuthApp, public_url: str, subdomain: str, state: str) -> str:
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": callback_uri(public_url),
        "scope": SCOPES,
        "state": state,
    }
    return f"{app.base_url(subdomain)}/oauth/authorize?{urlencode(query)}"


# -- Pages ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One answer of the OAuth routes: an HTML page, maybe a redirect."""

    status: int
    title: str
    paragraphs: tuple[str, ...]
    code: str | None = None  # an error code for the logs; None on success
    account: str | None = None
    location: str | None = field(default=None, repr=False)
    retry_after: int | None = None

    def body(self) -> bytes:
        text = "".join(f"<p>{html.escape(p)}</p>" for p in self.paragraphs)
        if self.location is not None:
            href = html.escape(self.location, quote=True)
            text += f'<p><a href="{href}">Continue to Gorgias</a></p>'
        title = html.escape(self.title)
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title} · Together</title></head>"
            f'<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto">'
            f"<h1>{title}</h1>{text}</body></html>"
        ).encode()

    def headers(self) -> list[tuple[str, str]]:
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("Referrer-Policy", "no-referrer"),  # the callback URL carries the code
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
        ]
        if self.location is not None:
            headers.append(("Location", self.location))
        if self.retry_after is not None:
            headers.append(("Retry-After", str(self.retry_after)))
        return headers


def error_page(error: OAuthError, account: str | None = None) -> Page:
    return Page(error.status, error.title, (error.detail,), code=error.code, account=account)


def unexpected_error_page() -> Page:
    """What the merchant sees when something failed that we did not foresee (logged apart)."""
    return Page(
        500,
        "Something went wrong",
        (
            "Nothing was connected. Try again in a few minutes from the Together app in "
            "Gorgias; if it keeps failing, contact Together support.",
        ),
        code="internal_error",
    )


def rate_limited_page(retry_after: int) -> Page:
    return Page(
        429,
        "Too many attempts",
        (
            "Too many connection attempts came from your address. Nothing was connected. "
            "Wait a minute, then start again from the Together app in Gorgias.",
        ),
        code="rate_limited",
        retry_after=retry_after,
    )


# When the widget appears, by what happened after the tokens were stored.
WHEN_DISPATCHED = (
    "Your Shopify store is already linked: the Together integration and its sidebar widget "
    "are being set up now and appear in Gorgias within a few minutes. You can close this page."
)
WHEN_HOURLY = (
    "Your Shopify store is already linked: the Together integration and its sidebar widget "
    "appear in Gorgias within the hour. You can close this page."
)
WHEN_LINKED_BY_SUPPORT = (
    "What happens next: Together support links your Shopify store to this Gorgias account; "
    "the Together integration and its sidebar widget appear in Gorgias once that is done, and "
    "support will tell you. You can close this page."
)


def connected_page(domain: str, when: str = WHEN_LINKED_BY_SUPPORT) -> Page:
    return Page(
        200,
        "Gorgias account connected",
        (f"{domain} is now connected to Together.", when),
        account=domain,
    )


# -- Routes -----------------------------------------------------------------------------------


class OAuthRoutes:
    """`GET /oauth/gorgias/install` and `GET /oauth/gorgias/callback`. Thread-safe."""

    def __init__(
        self,
        settings: OAuthSettings,
        keyring: Keyring,
        store: Callable[[], Store],
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        account_enabled: Callable[[str], bool] = lambda domain: False,
        rate_limit: ClientRateLimit | None = None,
    ) -> None:
        self.settings = settings
        self._keyring = keyring
        self._store = store
        self._http = http
        self._clock = clock
        self._account_enabled = account_enabled  # an enabled account file exists
        self.rate_limit = rate_limit if rate_limit is not None else ClientRateLimit()

    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = token_http_client()
        return self._http

    def answer(self, method: str, path: str, query_string: str, *, client: str = "") -> Page:
        wait = self.rate_limit.take(client)
        if wait is not None:
            return rate_limited_page(wait)
        if method not in ("GET", "HEAD"):
            return Page(
                405,
                "Method not allowed",
                ("Open this link in a browser (GET).",),
                "method_not_allowed",
            )
        query = {
            key: values[0] for key, values in parse_qs(query_string, keep_blank_values=True).items()
        }
        try:
            app, public_url = self.settings.require()
            if path == INSTALL_PATH:
                return self.install(app, public_url, query)
            return self.callback(app, public_url, query)
        except OAuthError as error:
            return error_page(error)

    def install(self, app: OAuthApp, public_url: str, query: Mapping[str, str]) -> Page:
        subdomain = account_subdomain(query.get("account"))
        state = issue_state(self._keyring, subdomain, now=self._clock())
        location = authorize_url(app, public_url, subdomain, state)
        return Page(
            302,
            "Connecting to Gorgias",
            ("Continue to Gorgias to allow Together to manage its integration.",),
            account=f"{subdomain}.gorgias.com",
            location=location,
        )

    def callback(self, app: OAuthApp, public_url: str, query: Mapping[str, str]) -> Page:
        now = self._clock()
        claims = verify_state(self._keyring, query.get("state"), now=now)  # before anything
        domain = f"{claims.subdomain}.gorgias.com"
        denial = query.get("error")
        if denial is not None:
            return error_page(_denied(denial), domain)
        try:
            self._check_account(claims, query.get("account"))
            code = query.get("code") or ""
            if not code:
                raise _start_again(
                    "missing_code", "Connection link incomplete", "Gorgias sent no code."
                )
            self._use_once(claims, now)
            grant = self._exchange(app, public_url, claims.subdomain, code)
            self._check_owner(app, claims.subdomain, grant)
            self._save(
                Credential(
                    kind="gorgias",
                    domain=domain,
                    access_token=grant.access_token,
                    refresh_token=grant.refresh_token,
                    expires_at=grant.expires_at(datetime.fromtimestamp(now, UTC)),
                )
            )
        except OAuthError as error:
            return error_page(error, domain)
        return connected_page(domain, self._go_live(domain))

    def _go_live(self, domain: str) -> str:
        """With an enabled account file, dispatch the apply workflow for it (bounded; a
        failure only changes the words); without one, never."""
        if not self._account_enabled(domain):
            return WHEN_LINKED_BY_SUPPORT
        if dispatch_apply(self.settings.github, domain).ok:
            return WHEN_DISPATCHED
        return WHEN_HOURLY

    @staticmethod
    def _check_account(claims: StateClaims, account: str | None) -> None:
        """When the callback names an account, it must be the one the state was made for."""
        if account is None:
            return
        try:
            named = account_subdomain(account)
        except OAuthError:
            named = None
        if named != claims.subdomain:
            raise _start_again(
                "state_account_mismatch",
                "Connection link for another account",
                "This link was made to connect a different Gorgias account.",
            )

    def _use_once(self, claims: StateClaims, now: float) -> None:
        try:
            fresh = self._store().use_oauth_state_nonce(
                claims.nonce, now=datetime.fromtimestamp(now, UTC), keep=NONCE_KEEP
            )
        except StoreError:
            raise _store_unavailable() from None
        if not fresh:
            raise _start_again(
                "state_used", "Connection link already used", "Each link works only once."
            )

    def _exchange(self, app: OAuthApp, public_url: str, subdomain: str, code: str) -> TokenGrant:
        try:
            return exchange_code(
                app, self.http(), subdomain, code=code, redirect_uri=callback_uri(public_url)
            )
        except TokenEndpointError as error:
            raise _exchange_failure(error) from None

    def _check_owner(self, app: OAuthApp, subdomain: str, grant: TokenGrant) -> None:
        """The new token must read the state's own account (its integrations, one item): a
        code from another Gorgias account must never replace this account's credentials."""
        try:
            answer = self.http().get(
                f"{app.base_url(subdomain)}/api/integrations",
                params={"limit": 1},
                headers={
                    "Authorization": f"Bearer {grant.access_token}",
                    "Accept": "application/json",
                },
            )
        except httpx.HTTPError:
            raise _gorgias_unavailable() from None
        if answer.status_code in (401, 403):
            raise _start_again(
                "token_for_another_account",
                "Authorized for another Gorgias account",
                f"The authorization Gorgias sent does not give access to {subdomain}.gorgias.com "
                "(it may come from another Gorgias account), so nothing was connected.",
            )
        if answer.status_code != 200:
            raise _gorgias_unavailable()

    def _save(self, credential: Credential) -> None:
        try:
            self._store().put_credential(credential)
        except StoreError:
            raise _store_unavailable() from None


# The OAuth 2.0 error codes (RFC 6749 §4.1.2.1) and what each means for the merchant. Any
# other `error=` text is not shown: a link anyone can craft would put it on our page.
_GORGIAS_SIDE = "Gorgias could not complete the authorization, so nothing was connected."
_OUR_REQUEST = (
    "Gorgias did not accept Together's connection request, so nothing was connected. "
    "Please contact Together support."
)
_DENIALS: Final = {
    "invalid_request": (400, _OUR_REQUEST),
    "unauthorized_client": (400, _OUR_REQUEST),
    "unsupported_response_type": (400, _OUR_REQUEST),
    "invalid_scope": (400, _OUR_REQUEST),
    "server_error": (
        502,
        _GORGIAS_SIDE + " Try again in a few minutes from the Together app in Gorgias.",
    ),
    "temporarily_unavailable": (
        502,
        _GORGIAS_SIDE + " Try again in a few minutes from the Together app in Gorgias.",
    ),
}


def _denied(error: str) -> OAuthError:
    if error == "access_denied":
        return OAuthError(
            403,
            "access_denied",
            "Connection cancelled",
            "Gorgias access was not granted, so nothing was connected. To connect, start "
            "again from the Together app in Gorgias and choose Allow.",
        )
    known = _DENIALS.get(error)
    if known is not None:
        status, words = known
        return OAuthError(status, error, "Gorgias did not authorize the connection", words)
    return OAuthError(
        400,
        "authorization_failed",
        "Gorgias did not authorize the connection",
        "Gorgias did not authorize the connection, so nothing was connected. Start again "
        "from the Together app in Gorgias; if it keeps failing, contact Together support.",
    )


def _exchange_failure(error: TokenEndpointError) -> OAuthError:
    if error.kind == "rejected":
        return _start_again(
            "code_rejected",
            "Gorgias refused the connection",
            "Gorgias did not accept the authorization code (it may have expired or been used), "
            "so nothing was connected.",
        )
    if error.kind == "client_rejected":
        return OAuthError(
            502,
            "client_rejected",
            "Gorgias refused Together's app credentials",
            "Nothing was connected. Please contact Together support.",
        )
    if error.kind == "unavailable":
        return _gorgias_unavailable()
    return OAuthError(
        502,
        "invalid_token_response",
        "Gorgias gave an unexpected answer",
        "Nothing was connected. Try again from the Together app in Gorgias; if it keeps "
        "failing, contact Together support.",
    )


def _gorgias_unavailable() -> OAuthError:
    return OAuthError(
        502,
        "gorgias_unavailable",
        "Gorgias did not answer",
        "Nothing was connected. Try again in a few minutes from the Together app in Gorgias.",
    )


def _store_unavailable() -> OAuthError:
    return OAuthError(
        503,
        "store_unavailable",
        "Together is temporarily unavailable",
        "Nothing was connected. Try again in a few minutes.",
    )
