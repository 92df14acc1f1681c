"""SPEC "Event handler" (OAuth routes) and "Precise rules" — OAuth: install redirect target and
parameters, form-encoded token exchange, a signed, expiring, bound, single-use `state`, 200 HTML
on success, a friendly 4xx page and nothing stored on a denial or a bad state."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.contract.conftest import (
    OAUTH_CLIENT_ID,
    PUBLIC_URL,
    Served,
    keep_output,
    unique,
)
from together_reconcile.gorgias.oauth import issue_state

CALLBACK = "/oauth/gorgias/callback"


def install(served: Served, account: str) -> httpx.Response:
    answer = served.get("/oauth/gorgias/install", account=account)
    return answer


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def authorize(served: Served, sub: str) -> dict[str, str]:
    """Install, then let the sandbox's Gorgias approve: the callback's query."""
    served.world.sandbox.control.add_gorgias_account(sub, f"unused-{sub}")
    location = install(served, sub).headers["location"]
    approved = httpx.get(location, follow_redirects=False, timeout=10)
    assert approved.status_code == 302, approved.text
    back = approved.headers["location"]
    assert back.startswith(f"{PUBLIC_URL}{CALLBACK}?")
    return query_of(back)


def callback(served: Served, params: dict[str, str]) -> httpx.Response:
    answer = httpx.get(f"{served.url}{CALLBACK}?{urlencode(params)}", timeout=15)
    keep_output(answer.text)
    return answer


def stored_domains(served: Served) -> str:
    return served.world.cli("credentials", "list").stdout


def test_oauth_install_redirects_to_gorgias_authorize_with_signed_state(served: Served) -> None:
    sub = unique("oi")
    answer = install(served, sub)
    assert answer.status_code == 302
    location = answer.headers["location"]
    base = served.world.sandbox.gorgias_url.format(account=sub)
    assert location.startswith(f"{base}/oauth/authorize?")
    params = query_of(location)
    assert params["response_type"] == "code"
    assert params["client_id"] == OAUTH_CLIENT_ID
    assert params["redirect_uri"] == f"{PUBLIC_URL}{CALLBACK}"
    assert "integrations:write" in params["scope"].split()
    assert len(params["state"]) > 20


def test_oauth_callback_exchanges_the_code_form_encoded_and_stores_the_tokens(
    served: Served,
) -> None:
    sub = unique("ok")
    params = authorize(served, sub)
    control = served.world.sandbox.control
    control.clear_requests()
    answer = callback(served, params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    token_calls = [r for r in control.requests() if r["path"].endswith("/oauth/token")]
    # the sandbox token endpoint answers 400 to anything but application/x-www-form-urlencoded
    assert [(r["method"], r["path"], r["status"]) for r in token_calls] == [
        ("POST", f"/gorgias/{sub}/oauth/token", 200)
    ]
    assert f"{sub}.gorgias.com" in stored_domains(served)


def test_oauth_state_works_once(served: Served) -> None:
    sub = unique("once")
    params = authorize(served, sub)
    assert callback(served, params).status_code == 200
    again = callback(served, params)
    assert 400 <= again.status_code < 500
    assert "already used" in again.text


def test_oauth_state_binds_the_account(served: Served) -> None:
    sub = unique("bind")
    params = authorize(served, sub)
    answer = callback(served, {**params, "account": "someone-else"})
    assert 400 <= answer.status_code < 500
    assert f"{sub}.gorgias.com" not in stored_domains(served)


def test_oauth_state_expires_after_10_minutes(served: Served) -> None:
    sub = unique("exp")
    old = issue_state(served.world.keyring, sub, now=time.time() - 601)
    answer = callback(served, {"code": "whatever", "state": old})
    assert answer.status_code == 400
    assert "Connection link expired" in answer.text
    fresh_enough = issue_state(served.world.keyring, sub, now=time.time() - 590)
    served.world.sandbox.control.add_gorgias_account(sub, f"unused-{sub}")
    # a 9m50s old state is still accepted: the code is what fails here, not the state
    late = callback(served, {"code": "not-a-real-code", "state": fresh_enough})
    assert "Connection link expired" not in late.text
    assert f"{sub}.gorgias.com" not in stored_domains(served)


@pytest.mark.parametrize("state", ["", "garbage", "a.b.c"])
def test_oauth_bad_state_answers_a_friendly_4xx_and_stores_nothing(
    served: Served, state: str
) -> None:
    answer = callback(served, {"code": "x", "state": state})
    assert 400 <= answer.status_code < 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "Traceback" not in answer.text
    assert "Start again" in answer.text or "start again" in answer.text


def test_oauth_state_signed_with_another_key_is_refused(served: Served) -> None:
    from together_reconcile.secrets import Keyring, generate_key

    forged = issue_state(Keyring.from_env(generate_key()), "forged", now=time.time())
    answer = callback(served, {"code": "x", "state": forged})
    assert answer.status_code == 400
    assert "forged.gorgias.com" not in stored_domains(served)


def test_oauth_denial_answers_a_friendly_4xx_and_stores_nothing(served: Served) -> None:
    sub = unique("deny")
    params = authorize(served, sub)
    answer = callback(served, {"error": "access_denied", "state": params["state"]})
    assert 400 <= answer.status_code < 500
    assert "Connection cancelled" in answer.text
    assert f"{sub}.gorgias.com" not in stored_domains(served)


@pytest.mark.parametrize("account", ["", "not a domain!", "acme.example.com"])
def test_oauth_install_without_a_gorgias_account_answers_a_friendly_4xx(
    served: Served, account: str
) -> None:
    answer = install(served, account)
    assert 400 <= answer.status_code < 500
    assert "location" not in answer.headers
    assert answer.headers["content-type"].startswith("text/html")


def test_oauth_install_takes_the_account_case_insensitively(served: Served) -> None:
    answer = install(served, "MiXeD")
    assert answer.status_code == 302
    assert "/gorgias/mixed/oauth/authorize?" in answer.headers["location"]
