"""The sandbox's Gorgias OAuth stand-in over real sockets: authorize, token grants, rotation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from together_reconcile.sandbox import RunningSandbox, SandboxControlError

CLIENT_ID = "together-app"
CLIENT_SECRET = "sandbox-client-secret"
REDIRECT = "http://127.0.0.1:9/oauth/gorgias/callback"
SCOPE = "openid offline integrations:read integrations:write"


@pytest.fixture
def acme(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    sandbox.control.add_gorgias_account("acme", "pasted-token")
    sandbox.control.add_gorgias_account("globex", "globex-token")
    sandbox.control.set_oauth_client(CLIENT_ID, CLIENT_SECRET)
    base = sandbox.gorgias_url_template.format(account="acme")
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client


def authorize(client: httpx.Client, **overrides: str) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": SCOPE,
        "state": "opaque-state",
        **overrides,
    }
    return client.get("/oauth/authorize", params=params)


def code_from(answer: httpx.Response) -> str:
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    return query["code"][0]


def token(client: httpx.Client, form: dict[str, str], *, basic: bool = True) -> httpx.Response:
    if basic:
        return client.post("/oauth/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET))
    return client.post(
        "/oauth/token", data={**form, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )


def redeem(client: httpx.Client, **overrides: str) -> httpx.Response:
    code = code_from(authorize(client, **overrides))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    return token(client, form)


def api_status(client: httpx.Client, access_token: str) -> int:
    answer = client.get("/api/integrations", headers={"Authorization": f"Bearer {access_token}"})
    return answer.status_code


# ---------------------------------------------------------------- authorize
def test_authorize_redirects_with_code_and_the_same_state(acme: httpx.Client) -> None:
    answer = authorize(acme, state="s.1-2_3")
    location = urlsplit(answer.headers["location"])
    assert answer.status_code == 302
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["s.1-2_3"]
    assert query["code"][0].startswith("sbx_code_")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"response_type": "token"}, "Unsupported response_type: use code"),
        ({"client_id": "someone-else"}, "Unknown client_id"),
        ({"redirect_uri": "javascript:alert(1)"}, "Missing or invalid redirect_uri"),
        ({"redirect_uri": ""}, "Missing or invalid redirect_uri"),
    ],
)
def test_authorize_refuses_bad_requests(
    acme: httpx.Client, overrides: dict[str, str], message: str
) -> None:
    answer = authorize(acme, **overrides)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert f"<h1>{message}</h1>" in answer.text


def test_authorize_without_a_registered_app(sandbox: RunningSandbox) -> None:
    sandbox.control.add_gorgias_account("acme", "t")
    base = sandbox.gorgias_url_template.format(account="acme")
    with httpx.Client(base_url=base) as client:
        answer = authorize(client)
    assert answer.status_code == 400
    assert "set_oauth_client" in answer.text


def test_unknown_account_is_a_404_page(acme: httpx.Client, sandbox: RunningSandbox) -> None:
    answer = acme.get(sandbox.gorgias_url_template.format(account="nobody") + "/oauth/authorize")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")


# ---------------------------------------------------------------- token: authorization_code
@pytest.mark.parametrize("basic", [True, False])
def test_code_gives_tokens_that_work(acme: httpx.Client, basic: bool) -> None:
    code = code_from(authorize(acme))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    answer = token(acme, form, basic=basic)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    assert body["refresh_token"].startswith("sbx_rt_")
    assert api_status(acme, body["access_token"]) == 200


def test_code_works_once(acme: httpx.Client) -> None:
    code = code_from(authorize(acme))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    assert token(acme, form).status_code == 200
    again = token(acme, form)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_code_needs_the_same_redirect_uri(acme: httpx.Client) -> None:
    code = code_from(authorize(acme))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT + "x"}
    assert token(acme, form).json()["error"] == "invalid_grant"


def test_code_of_another_account_is_refused(acme: httpx.Client, sandbox: RunningSandbox) -> None:
    globex = sandbox.gorgias_url_template.format(account="globex")
    with httpx.Client(base_url=globex) as other:
        code = code_from(authorize(other))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    answer = token(acme, form)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


def test_no_refresh_token_without_offline_scope(acme: httpx.Client) -> None:
    body = redeem(acme, scope="openid integrations:write").json()
    assert "refresh_token" not in body


@pytest.mark.parametrize(
    ("auth", "extra"),
    [
        ((CLIENT_ID, "wrong"), {}),
        (None, {"client_id": CLIENT_ID, "client_secret": "wrong"}),
        (None, {}),
    ],
)
def test_bad_client_credentials_are_401(
    acme: httpx.Client, auth: tuple[str, str] | None, extra: dict[str, str]
) -> None:
    code = code_from(authorize(acme))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    answer = acme.post("/oauth/token", data=form, auth=auth)
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def test_token_endpoint_bad_requests(acme: httpx.Client) -> None:
    as_json = acme.post("/oauth/token", json={"grant_type": "refresh_token"})
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    other_grant = token(acme, {"grant_type": "password"})
    assert (other_grant.status_code, other_grant.json()["error"]) == (400, "unsupported_grant_type")
    assert acme.get("/oauth/token").status_code == 405


# ---------------------------------------------------------------- token: refresh_token
def refresh(client: httpx.Client, refresh_token: str) -> httpx.Response:
    return token(client, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def test_refresh_rotates(acme: httpx.Client, sandbox: RunningSandbox) -> None:
    first = redeem(acme).json()
    second = refresh(acme, first["refresh_token"])
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert api_status(acme, rotated["access_token"]) == 200
    spent = refresh(acme, first["refresh_token"])
    assert (spent.status_code, spent.json()) == (
        400,
        {"error": "invalid_grant", "error_description": "the refresh token is unknown or revoked"},
    )
    status = sandbox.control.oauth_status("acme")
    assert status == {
        "refresh_grants": 1,
        "active_refresh_tokens": 1,
        "latest_refresh_token": rotated["refresh_token"],
    }


def test_revoked_refresh_token_is_invalid_grant(
    acme: httpx.Client, sandbox: RunningSandbox
) -> None:
    first = redeem(acme).json()
    assert sandbox.control.revoke_refresh_tokens("acme") == 1
    answer = refresh(acme, first["refresh_token"])
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")


def test_tokens_expire_after_the_configured_lifetime(
    acme: httpx.Client, sandbox: RunningSandbox
) -> None:
    # 1 s, not less: on a busy CI machine the first call must still land inside the lifetime
    sandbox.control.set_token_lifetime(1.0)
    body = redeem(acme).json()
    issued_by = time.monotonic()  # the sandbox issued the token before this instant
    assert body["expires_in"] == 1.0
    assert api_status(acme, body["access_token"]) == 200
    time.sleep(max(0.0, issued_by + 1.05 - time.monotonic()))
    assert api_status(acme, body["access_token"]) == 401


def test_expire_tokens_makes_the_api_answer_401(
    acme: httpx.Client, sandbox: RunningSandbox
) -> None:
    body = redeem(acme).json()
    assert sandbox.control.expire_tokens("acme") == 2  # the pasted token and the OAuth one
    assert api_status(acme, body["access_token"]) == 401
    assert api_status(acme, "pasted-token") == 401
    renewed = refresh(acme, body["refresh_token"]).json()
    assert api_status(acme, renewed["access_token"]) == 200


def test_token_endpoint_fault(acme: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.control.add_fault(path_contains="/oauth/token", status=503)
    assert redeem(acme).status_code == 503
    assert redeem(acme).status_code == 200


@pytest.mark.parametrize(
    ("call", "args", "message"),
    [
        ("set_token_lifetime", {"seconds": 0}, "seconds must be a positive number"),
        ("set_oauth_client", {"client_id": "", "client_secret": "x"}, "client_id must be"),
        ("expire_tokens", {"account": "nobody"}, "unknown Gorgias account 'nobody'"),
    ],
)
def test_control_calls_check_their_arguments(
    sandbox: RunningSandbox, call: str, args: dict[str, object], message: str
) -> None:
    with pytest.raises(SandboxControlError, match=message):
        getattr(sandbox.control, call)(**args)
