"""The Gorgias stand-in's OAuth2 side: `/gorgias/{account}/oauth/authorize` and `/oauth/token`.

* **authorize** (GET) auto-approves: it checks `response_type=code`, the registered
  `client_id` and an http(s) `redirect_uri`, then answers 302 to `redirect_uri` with `code`
  and the same `state`. A problem answers a 400 HTML page (no redirect, as a real
  authorization server does when it cannot trust the redirect URI).
* **token** (POST, form-encoded) takes the client credentials by HTTP Basic or in the body
  and serves `grant_type=authorization_code` (a code works once, within 10 minutes, with the
  redirect URI it was issued for) and `grant_type=refresh_token`. Every refresh rotates: the
  presented refresh token is spent and a new one issued. A refresh token is issued only when
  the `offline` scope was granted. Errors follow RFC 6749: 400 `{"error": "invalid_grant"}`,
  401 `invalid_client`, 400 `unsupported_grant_type` / `invalid_request`.

Issued access tokens join the account's token registry and expire after the configurable
lifetime (`set_token_lifetime`); the API answers 401 to an expired one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from together_reconcile.sandbox.http import Request, Response, html_response, json_response
from together_reconcile.sandbox.state import (
    AuthorizationCode,
    ControlError,
    GorgiasAccount,
    SandboxState,
    TokenRecord,
)

CODE_LIFETIME_S = 600.0
_PAGE = (
    "<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
)


# ------------------------------------------------------------------ control calls
def set_oauth_client(state: SandboxState, client_id: str, client_secret: str) -> None:
    if not isinstance(client_id, str) or not client_id:
        raise ControlError("client_id must be a non-empty string")
    if not isinstance(client_secret, str) or not client_secret:
        raise ControlError("client_secret must be a non-empty string")
    with state.lock:
        state.knobs.oauth_client = (client_id, client_secret)


def set_token_lifetime(state: SandboxState, seconds: float) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ControlError("seconds must be a positive number")
    with state.lock:
        state.knobs.token_lifetime_s = float(seconds)


def expire_tokens(state: SandboxState, account: str) -> int:
    """Every bearer token of the account expires now; returns how many."""
    with state.lock:
        record = state.account(account)
        now = state.clock()
        for token in record.tokens.values():
            if token.kind == "bearer":
                token.expires_at = now
        return sum(1 for token in record.tokens.values() if token.kind == "bearer")


def revoke_refresh_tokens(state: SandboxState, account: str) -> int:
    """Every refresh token of the account stops working (the merchant uninstalled the app)."""
    with state.lock:
        grants = state.account(account).oauth
        for token in grants.refresh_tokens:
            grants.refresh_tokens[token] = True
        return len(grants.refresh_tokens)


def oauth_status(state: SandboxState, account: str) -> dict[str, Any]:
    """What tests check: refresh count, live refresh tokens, and the latest one issued."""
    with state.lock:
        grants = state.account(account).oauth
        return {
            "refresh_grants": grants.refresh_grants,
            "active_refresh_tokens": sum(
                1 for revoked in grants.refresh_tokens.values() if not revoked
            ),
            "latest_refresh_token": grants.latest_refresh_token,
        }


# ------------------------------------------------------------------ endpoints
def handle(state: SandboxState, request: Request, account: GorgiasAccount, rest: str) -> Response:
    """Answer `oauth/authorize` or `oauth/token` (the caller holds `state.lock`)."""
    endpoint = rest.strip("/")
    if endpoint == "oauth/authorize":
        if request.method not in ("GET", "HEAD"):
            return json_response(405, {"error": "method_not_allowed"}, {"Allow": "GET"})
        return _authorize(state, account, request)
    if endpoint == "oauth/token":
        if request.method != "POST":
            return json_response(405, {"error": "method_not_allowed"}, {"Allow": "POST"})
        return _token(state, account, request)
    return json_response(404, {"error": {"msg": "Resource not found."}})


def _page(status: int, title: str) -> Response:
    return html_response(status, _PAGE.format(title=title))


def _authorize(state: SandboxState, account: GorgiasAccount, request: Request) -> Response:
    query = {key: values[-1] for key, values in request.query().items()}
    client = state.knobs.oauth_client
    if client is None:
        return _page(400, "No OAuth app is registered (control: set_oauth_client)")
    if query.get("response_type") != "code":
        return _page(400, "Unsupported response_type: use code")
    if not hmac.compare_digest(query.get("client_id", "").encode(), client[0].encode()):
        return _page(400, "Unknown client_id")
    redirect_uri = query.get("redirect_uri", "")
    if urlsplit(redirect_uri).scheme not in ("http", "https") or not urlsplit(redirect_uri).netloc:
        return _page(400, "Missing or invalid redirect_uri")
    code = "sbx_code_" + secrets.token_urlsafe(18)
    account.oauth.codes[code] = AuthorizationCode(
        client_id=client[0],
        redirect_uri=redirect_uri,
        scope=query.get("scope", ""),
        expires_at=state.clock() + CODE_LIFETIME_S,
    )
    answer = {"code": code}
    if "state" in query:
        answer["state"] = query["state"]
    separator = "&" if urlsplit(redirect_uri).query else "?"
    location = redirect_uri + separator + urlencode(answer)
    return Response(302, b"", None, {"Location": location})


def _oauth_error(status: int, code: str, description: str) -> Response:
    return json_response(status, {"error": code, "error_description": description})


def _client_authenticated(state: SandboxState, request: Request, form: dict[str, str]) -> bool:
    client = state.knobs.oauth_client
    if client is None:
        return False
    client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, _, client_secret = decoded.partition(":")
    return hmac.compare_digest(client_id.encode(), client[0].encode()) and hmac.compare_digest(
        client_secret.encode(), client[1].encode()
    )


def _token(state: SandboxState, account: GorgiasAccount, request: Request) -> Response:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _oauth_error(400, "invalid_request", "send application/x-www-form-urlencoded")
    try:
        parsed = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "the body is not UTF-8")
    form = {key: values[-1] for key, values in parsed.items()}
    if not _client_authenticated(state, request, form):
        return _oauth_error(401, "invalid_client", "unknown client or wrong client secret")
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        return _redeem_code(state, account, form)
    if grant_type == "refresh_token":
        return _refresh(state, account, form)
    return _oauth_error(400, "unsupported_grant_type", "use authorization_code or refresh_token")


def _redeem_code(state: SandboxState, account: GorgiasAccount, form: dict[str, str]) -> Response:
    found = account.oauth.codes.get(form.get("code", ""))
    if found is None or found.used or found.expires_at <= state.clock():
        return _oauth_error(400, "invalid_grant", "the code is unknown, used or expired")
    if form.get("redirect_uri") != found.redirect_uri:
        return _oauth_error(400, "invalid_grant", "redirect_uri differs from the authorize one")
    found.used = True
    return _issue(state, account, found.scope, with_refresh="offline" in found.scope.split())


def _refresh(state: SandboxState, account: GorgiasAccount, form: dict[str, str]) -> Response:
    presented = form.get("refresh_token", "")
    grants = account.oauth
    if grants.refresh_tokens.get(presented, True):  # unknown or revoked
        return _oauth_error(400, "invalid_grant", "the refresh token is unknown or revoked")
    grants.refresh_tokens[presented] = True  # rotation: a refresh token works once
    grants.refresh_grants += 1
    return _issue(state, account, "", with_refresh=True)


def _issue(
    state: SandboxState, account: GorgiasAccount, scope: str, *, with_refresh: bool
) -> Response:
    lifetime = state.knobs.token_lifetime_s
    access = "sbx_at_" + secrets.token_urlsafe(24)
    account.tokens[access] = TokenRecord("bearer", expires_at=state.clock() + lifetime)
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(lifetime) if lifetime == int(lifetime) else lifetime,
    }
    if scope:
        body["scope"] = scope
    if with_refresh:
        refresh = "sbx_rt_" + secrets.token_urlsafe(24)
        account.oauth.refresh_tokens[refresh] = False
        account.oauth.latest_refresh_token = refresh
        body["refresh_token"] = refresh
    return json_response(200, body, {"Cache-Control": "no-store"})
