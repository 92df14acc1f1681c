"""Gorgias OAuth tokens: the token endpoint, and keeping a stored access token fresh.

The token endpoint (`{TOGETHER_GORGIAS_URL with the account}/oauth/token`) takes form-encoded
grants with our app's credentials in HTTP Basic. `exchange_code` redeems the code of an install;
`ensure_fresh_gorgias_token` refreshes a stored token that expires within `REFRESH_MARGIN`, and
`refresh_after_rejection` once more after Gorgias answered 401 to a token we thought valid.

A refresh runs with the credential row locked (`Store.locked_credential`) and re-reads the row
first, so when two processes refresh the same account at once the second one finds the token
the first one stored and uses it: a rotated refresh token is never lost. A refresh token that
Gorgias refuses marks the credential `reconnect_needed` (the merchant must connect again).

No token appears in any message, `repr` or log line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from together_reconcile.gorgias.reasons import (
    CREDENTIALS_REJECTED,
    GORGIAS_UNAVAILABLE,
    NOT_CONNECTED,
    RECONNECT_NEEDED,
)
from together_reconcile.store import Credential, Store

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL_TEMPLATE = "https://{account}.gorgias.com"
BASE_URL_ENV = "TOGETHER_GORGIAS_URL"
CLIENT_ID_ENV = "TOGETHER_GORGIAS_CLIENT_ID"
CLIENT_SECRET_ENV = "TOGETHER_GORGIAS_CLIENT_SECRET"  # noqa: S105 - a variable name
REFRESH_MARGIN = timedelta(minutes=5)
TOKEN_TIMEOUT_S = 10.0  # connect: 5 s
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
# A lifetime beyond this is not one Gorgias gives (24 h); it would also overflow a datetime.
MAX_TOKEN_LIFETIME_S = 366 * 24 * 3600


@dataclass(frozen=True)
class OAuthApp:
    """Our app as registered with Gorgias, and where Gorgias is (`{account}` = subdomain)."""

    client_id: str
    client_secret: str = field(repr=False)
    base_url_template: str = DEFAULT_BASE_URL_TEMPLATE

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OAuthApp | None:
        """Our app from `TOGETHER_GORGIAS_CLIENT_ID` / `_CLIENT_SECRET` / `TOGETHER_GORGIAS_URL`;
        None unless both client values are set."""
        client_id = (environ.get(CLIENT_ID_ENV) or "").strip()
        client_secret = (environ.get(CLIENT_SECRET_ENV) or "").strip()
        template = (environ.get(BASE_URL_ENV) or "").strip() or DEFAULT_BASE_URL_TEMPLATE
        if not client_id or not client_secret:
            return None
        return cls(client_id, client_secret, template)

    def base_url(self, subdomain: str) -> str:
        return self.base_url_template.replace("{account}", subdomain).rstrip("/")

    def token_url(self, subdomain: str) -> str:
        return self.base_url(subdomain) + "/oauth/token"


@dataclass(frozen=True)
class TokenGrant:
    """What the token endpoint gave: an access token, maybe a refresh token, maybe a lifetime."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: float | None = None

    def expires_at(self, now: datetime) -> datetime | None:
        return None if self.expires_in is None else now + timedelta(seconds=self.expires_in)


TokenFailure = Literal["rejected", "client_rejected", "unavailable", "invalid_response"]


class TokenEndpointError(Exception):
    """The token endpoint did not give tokens. `kind`:

    - `rejected`: the grant (code or refresh token) was refused (400 / 401 `invalid_grant`);
    - `client_rejected`: our app's client id or secret was refused (401 `invalid_client`);
    - `unavailable`: no answer, or a 5xx / 429;
    - `invalid_response`: an answer that is not the JSON tokens it should be.
    """

    def __init__(self, kind: TokenFailure, message: str) -> None:
        super().__init__(message)
        self.kind: TokenFailure = kind
        self.message = message


def token_http_client() -> httpx.Client:
    """The HTTP client for token requests: bounded time, no redirects followed."""
    import httpx  # only a token request needs it: a plan with fresh tokens never loads it

    return httpx.Client(timeout=httpx.Timeout(TOKEN_TIMEOUT_S, connect=5.0), follow_redirects=False)


class TokenPoster(Protocol):
    """What a token request needs of its HTTP client: `httpx.Client.post`."""

    def post(
        self,
        url: str,
        *,
        data: dict[str, str],
        auth: tuple[str, str],
        headers: dict[str, str],
    ) -> httpx.Response: ...


class ClientOnFirstPost:
    """A `token_http_client()` made on the first token request, then kept (thread-safe).

    A plan whose tokens are all fresh sends none, so it never loads httpx.
    """

    def __init__(self) -> None:
        self._made = threading.Lock()
        self._client: httpx.Client | None = None

    def post(
        self,
        url: str,
        *,
        data: dict[str, str],
        auth: tuple[str, str],
        headers: dict[str, str],
    ) -> httpx.Response:
        with self._made:
            if self._client is None:
                self._client = token_http_client()
        return self._client.post(url, data=data, auth=auth, headers=headers)


def _error_code(response: httpx.Response) -> str | None:
    try:
        document = response.json()
    except (ValueError, RecursionError):
        return None
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, str) else None


def request_tokens(
    app: OAuthApp, http: TokenPoster, subdomain: str, form: dict[str, str]
) -> TokenGrant:
    """POST one grant to the account's token endpoint; `TokenEndpointError` unless it worked."""
    import httpx

    where = f"the Gorgias token endpoint of {subdomain}.gorgias.com"
    try:
        response = http.post(
            app.token_url(subdomain),
            data=form,
            auth=(app.client_id, app.client_secret),
            headers={"Accept": "application/json"},
        )
    except httpx.TimeoutException:
        raise TokenEndpointError("unavailable", f"{where} did not answer in time") from None
    except httpx.HTTPError as error:
        raise TokenEndpointError(
            "unavailable", f"{where} could not be reached ({type(error).__name__})"
        ) from None
    status = response.status_code
    if status >= 500 or status == 429:
        raise TokenEndpointError("unavailable", f"{where} answered {status}")
    if status in (400, 401):
        code = _error_code(response)
        if code in ("invalid_client", "unauthorized_client") or (status == 401 and code is None):
            raise TokenEndpointError(
                "client_rejected",
                f"{where} refused our app's credentials ({code or status}): check "
                f"{CLIENT_ID_ENV} and {CLIENT_SECRET_ENV}",
            )
        if code == "invalid_grant" or status == 400:
            raise TokenEndpointError("rejected", f"{where} refused the grant ({code or status})")
    if status != 200:
        raise TokenEndpointError("invalid_response", f"{where} answered {status}")
    return _parse_grant(response, where)


def _parse_grant(response: httpx.Response, where: str) -> TokenGrant:
    invalid = TokenEndpointError(
        "invalid_response", f"{where} answered something other than the JSON tokens expected"
    )
    if len(response.content) > MAX_TOKEN_RESPONSE_BYTES:
        raise invalid
    try:
        document = json.loads(response.content)
    except (ValueError, RecursionError):
        raise invalid from None
    if not isinstance(document, dict):
        raise invalid
    access, refresh, lifetime = (
        document.get("access_token"),
        document.get("refresh_token"),
        document.get("expires_in"),
    )
    if not isinstance(access, str) or not access.strip():
        raise invalid
    if refresh is not None and (not isinstance(refresh, str) or not refresh.strip()):
        raise invalid
    if lifetime is not None and (
        isinstance(lifetime, bool)
        or not isinstance(lifetime, int | float)
        or not 0 < lifetime <= MAX_TOKEN_LIFETIME_S  # also refuses NaN and Infinity
    ):
        raise invalid
    return TokenGrant(
        access.strip(), refresh.strip() if refresh else None, None if lifetime is None else lifetime
    )


def exchange_code(
    app: OAuthApp, http: TokenPoster, subdomain: str, *, code: str, redirect_uri: str
) -> TokenGrant:
    """Redeem an authorization code (`grant_type=authorization_code`)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    return request_tokens(app, http, subdomain, form)


def refresh_grant(
    app: OAuthApp, http: TokenPoster, subdomain: str, refresh_token: str
) -> TokenGrant:
    """Trade a refresh token for new tokens (`grant_type=refresh_token`)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return request_tokens(app, http, subdomain, form)


# -- Keeping a stored token fresh -------------------------------------------------------------


@dataclass(frozen=True)
class TokenBlocked:
    """Why there is no usable Gorgias token: a `plan` blocked reason, and what to do."""

    reason: str
    message: str | None = None


def needs_refresh(credential: Credential, now: datetime) -> bool:
    """A refreshable token that expires within `REFRESH_MARGIN` (or already has)."""
    return (
        credential.refresh_token is not None
        and credential.expires_at is not None
        and credential.expires_at - now <= REFRESH_MARGIN
    )


def _subdomain(domain: str) -> str:
    return domain.strip().lower().split(".", 1)[0]


def _usable(credential: Credential | None) -> Credential | TokenBlocked:
    if credential is None:
        return TokenBlocked(NOT_CONNECTED)
    if credential.status == "reconnect_needed":
        return TokenBlocked(RECONNECT_NEEDED)
    return credential


def ensure_fresh_gorgias_token(
    store: Store,
    domain: str,
    *,
    app: OAuthApp | None,
    now: datetime,
    http: TokenPoster,
) -> Credential | TokenBlocked:
    """The account's Gorgias credential, refreshed first if it expires within 5 minutes.

    Tokens without a refresh token (pasted with `credentials put`) are returned as they are.
    Without `app` (no client id/secret configured) nothing can be refreshed: the stored token
    is returned, and Gorgias's 401 tells if it has expired.
    """
    current = _usable(store.get_credential("gorgias", domain))
    if isinstance(current, TokenBlocked) or not needs_refresh(current, now) or app is None:
        return current
    return _refresh_locked(store, domain, app, http, now, lambda cred: needs_refresh(cred, now))


def refresh_after_rejection(
    store: Store,
    domain: str,
    rejected_access_token: str,
    *,
    app: OAuthApp | None,
    now: datetime,
    http: TokenPoster,
) -> Credential | TokenBlocked:
    """Gorgias answered 401 to `rejected_access_token`: refresh once, whatever its expiry.

    If another process stored a different access token meanwhile, that one is returned to try.
    A credential that cannot be refreshed gives `credentials_rejected`.
    """
    current = _usable(store.get_credential("gorgias", domain))
    if isinstance(current, TokenBlocked):
        return current
    if current.access_token != rejected_access_token:
        return current
    if current.refresh_token is None or app is None:
        return TokenBlocked(CREDENTIALS_REJECTED, _why_not_refreshed(current, app))
    return _refresh_locked(
        store, domain, app, http, now, lambda cred: cred.access_token == rejected_access_token
    )


def _why_not_refreshed(credential: Credential, app: OAuthApp | None) -> str:
    if credential.refresh_token is None:
        return "Gorgias refused the stored token (401) and there is no refresh token to renew it"
    return (
        f"Gorgias refused the stored token (401); renewing it needs {CLIENT_ID_ENV} and "
        f"{CLIENT_SECRET_ENV}"
    )


def _refresh_locked(
    store: Store,
    domain: str,
    app: OAuthApp,
    http: TokenPoster,
    now: datetime,
    still_needed: Callable[[Credential], bool],
) -> Credential | TokenBlocked:
    with store.locked_credential("gorgias", domain) as lock:
        current = _usable(lock.credential)  # re-read under the lock: maybe already refreshed
        if isinstance(current, TokenBlocked) or not still_needed(current):
            return current
        if current.refresh_token is None:
            return TokenBlocked(CREDENTIALS_REJECTED, _why_not_refreshed(current, app))
        try:
            grant = refresh_grant(app, http, _subdomain(domain), current.refresh_token)
        except TokenEndpointError as error:
            if error.kind == "rejected":
                lock.mark_reconnect_needed()
                return TokenBlocked(RECONNECT_NEEDED)
            if error.kind == "client_rejected":
                return TokenBlocked(CREDENTIALS_REJECTED, error.message)
            if current.expires_at is not None and current.expires_at > now:
                return current  # still valid for a few minutes: refresh on a later run
            return TokenBlocked(GORGIAS_UNAVAILABLE, f"could not refresh the token: {error}")
        refreshed = replace(
            current,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token or current.refresh_token,
            expires_at=grant.expires_at(now),
            status="ok",
        )
        lock.save(refreshed)
        return refreshed


class GorgiasTokenRefresher:
    """What the reconciler calls before using an account's token, and after a 401.

    `from_env` reads `TOGETHER_GORGIAS_CLIENT_ID` / `_CLIENT_SECRET` / `TOGETHER_GORGIAS_URL`;
    without the client credentials nothing is refreshed (stored tokens are used as they are).
    Thread-safe: the store serialises refreshes of one account, httpx clients are thread-safe.
    """

    def __init__(
        self,
        store: Store,
        app: OAuthApp | None,
        *,
        http: httpx.Client | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._app = app
        self._http: TokenPoster = http if http is not None else ClientOnFirstPost()
        self._now = now

    @classmethod
    def from_env(cls, store: Store, environ: Mapping[str, str]) -> GorgiasTokenRefresher:
        return cls(store, OAuthApp.from_env(environ))

    def fresh(self, domain: str) -> Credential | TokenBlocked:
        """The account's credential, refreshed if it expires within 5 minutes."""
        return ensure_fresh_gorgias_token(
            self._store, domain, app=self._app, now=self._now(), http=self._http
        )

    def after_rejection(self, domain: str, rejected_access_token: str) -> Credential | TokenBlocked:
        """Gorgias answered 401 to `rejected_access_token`: the credential to retry with once."""
        return refresh_after_rejection(
            self._store,
            domain,
            rejected_access_token,
            app=self._app,
            now=self._now(),
            http=self._http,
        )
