"""The OAuth install flow through the handler, against the sandbox's Gorgias over loopback.

The handler app is called in-process (WSGI); Gorgias's authorize and token endpoints are the
sandbox's, over real sockets; the store is a real SQLite file or PostgreSQL schema.
"""

from __future__ import annotations

import html
import io
import json
import logging
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from together_reconcile.events.app import HandlerApp, Settings, create_app
from together_reconcile.events.logs import HANDLER_LOGGER
from together_reconcile.gorgias.oauth import (
    CALLBACK_PATH,
    INSTALL_PATH,
    SCOPES,
    STATE_PURPOSE,
    OAuthRoutes,
    OAuthSettings,
    issue_state,
)
from together_reconcile.gorgias.tokens import OAuthApp
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Store

CLIENT_ID = "together-app"
CLIENT_SECRET = "sandbox-client-secret"
PUBLIC_URL = "https://together.example.com"
START_AGAIN = "Start again from the Together app in Gorgias (Connect)."


@dataclass
class Page:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def title(self) -> str:
        return html.unescape(self.text.split("<h1>", 1)[1].split("</h1>", 1)[0])


def get(app: HandlerApp, path: str, query: dict[str, str] | str = "", method: str = "GET") -> Page:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query if isinstance(query, str) else urlencode(query),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
    }
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(headers)

    body = b"".join(app(environ, start_response))
    return Page(seen["status"], seen["headers"], body.decode())


@dataclass
class World:
    app: HandlerApp
    store: Store
    keyring: Keyring
    sandbox: RunningSandbox
    settings: Settings
    clock: list[float]
    state_url: str

    def routes(self, **overrides: Any) -> OAuthRoutes:
        return OAuthRoutes(
            overrides.get("oauth", self.settings.oauth),
            self.keyring,
            lambda: self.store,
            clock=lambda: self.clock[0],
        )

    def install(self, account: str = "acme") -> str:
        """The state of a fresh install for `account`."""
        page = get(self.app, INSTALL_PATH, {"account": account})
        assert page.status == 302, page.text
        return parse_qs(urlsplit(page.headers["Location"]).query)["state"][0]

    def authorize(self, account: str, state: str) -> dict[str, str]:
        """Act as the merchant's browser at Gorgias: the query Gorgias sends back."""
        base = self.sandbox.gorgias_url_template.format(account=account)
        answer = httpx.get(
            base + "/oauth/authorize",
            params={
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": PUBLIC_URL + CALLBACK_PATH,
                "scope": SCOPES,
                "state": state,
            },
        )
        assert answer.status_code == 302, answer.text
        location = urlsplit(answer.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == PUBLIC_URL + CALLBACK_PATH
        return {key: values[0] for key, values in parse_qs(location.query).items()}

    def callback(self, query: dict[str, str]) -> Page:
        return get(self.app, CALLBACK_PATH, query)

    def stored(self) -> list[str]:
        return [f"{info.kind}:{info.domain}" for info in self.store.list_credentials()]


@pytest.fixture
def world(
    sandbox: RunningSandbox, store: Store, keyring: Keyring, tmp_path: Path, state_url: str
) -> Iterator[World]:
    sandbox.control.add_gorgias_account("acme", "pasted-acme")
    sandbox.control.add_gorgias_account("beta", "pasted-beta")
    sandbox.control.set_oauth_client(CLIENT_ID, CLIENT_SECRET)
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    oauth = OAuthSettings(
        OAuthApp(CLIENT_ID, CLIENT_SECRET, sandbox.gorgias_url_template), PUBLIC_URL
    )
    settings = Settings(accounts_dir=accounts, state_url=state_url, keyring=keyring, oauth=oauth)
    app = create_app(settings, store=store)
    clock = [time.time()]
    world = World(app, store, keyring, sandbox, settings, clock, state_url)
    app.oauth = world.routes()
    yield world


# ---------------------------------------------------------------- install
def test_install_redirects_to_the_accounts_authorize_url(world: World) -> None:
    page = get(world.app, INSTALL_PATH, {"account": "acme"})
    assert page.status == 302
    location = urlsplit(page.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        world.sandbox.url + "/gorgias/acme/oauth/authorize"
    )
    query = {key: values for key, values in parse_qs(location.query).items()}
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [PUBLIC_URL + CALLBACK_PATH]
    assert query["scope"] == ["openid offline integrations:read integrations:write"]
    payload = world.keyring.unsign(query["state"][0], STATE_PURPOSE, max_age_s=600)
    assert payload is not None and b'"a":"acme"' in payload
    assert page.headers["Cache-Control"] == "no-store"
    assert page.title == "Connecting to Gorgias"


@pytest.mark.parametrize("account", ["acme.gorgias.com", "ACME", " Acme.Gorgias.Com "])
def test_install_accepts_the_full_domain_in_any_case(world: World, account: str) -> None:
    page = get(world.app, INSTALL_PATH, {"account": account})
    assert page.status == 302
    assert "/gorgias/acme/oauth/authorize?" in page.headers["Location"]


@pytest.mark.parametrize("query", [{}, {"account": ""}, {"account": "  "}])
def test_install_without_account(world: World, query: dict[str, str]) -> None:
    page = get(world.app, INSTALL_PATH, query)
    assert page.status == 400
    assert page.title == "Which Gorgias account?"
    assert (
        "The link does not say which Gorgias account to connect: open it from the Together app "
        "in Gorgias, or add ?account=SUBDOMAIN (acme for acme.gorgias.com)."
    ) in page.text


@pytest.mark.parametrize(
    ("account", "shown"),
    [
        ("acme corp", "acme corp"),
        ("acme.example.com", "acme.example.com"),
        ("-acme", "-acme"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ],
)
def test_install_with_an_invalid_account(world: World, account: str, shown: str) -> None:
    page = get(world.app, INSTALL_PATH, {"account": account})
    assert page.status == 400
    assert page.title == "Not a Gorgias account"
    assert (
        f"“{shown}” is not a Gorgias account: give its subdomain, like acme for acme.gorgias.com."
    ) in page.text
    assert "<script>" not in page.text


def test_routes_answer_503_without_client_credentials(world: World) -> None:
    world.app.oauth = world.routes(oauth=OAuthSettings(None, PUBLIC_URL))
    for path in (INSTALL_PATH, CALLBACK_PATH):
        page = get(world.app, path, {"account": "acme"})
        assert page.status == 503
        assert page.title == "Connecting Gorgias is not set up yet"
        assert (
            "This server cannot connect Gorgias accounts until TOGETHER_GORGIAS_CLIENT_ID and "
            "TOGETHER_GORGIAS_CLIENT_SECRET are set. Please contact Together support."
        ) in page.text


def test_routes_answer_503_without_public_url(world: World) -> None:
    world.app.oauth = world.routes(oauth=OAuthSettings(world.settings.oauth.app, None))
    page = get(world.app, INSTALL_PATH, {"account": "acme"})
    assert page.status == 503
    assert "cannot connect Gorgias accounts until TOGETHER_PUBLIC_URL is set." in page.text
    world.app.oauth = world.routes(oauth=OAuthSettings(None, None))
    page = get(world.app, CALLBACK_PATH)
    assert (
        "until TOGETHER_GORGIAS_CLIENT_ID, TOGETHER_GORGIAS_CLIENT_SECRET and TOGETHER_PUBLIC_URL "
        "are set."
    ) in page.text


def test_settings_read_the_environment(tmp_path: Path) -> None:
    environ = {
        "TOGETHER_SECRET_KEYS": generate_key(),
        "TOGETHER_GORGIAS_CLIENT_ID": "id",
        "TOGETHER_GORGIAS_CLIENT_SECRET": "secret",
        "TOGETHER_PUBLIC_URL": "https://together.example.com/",
        "TOGETHER_GORGIAS_URL": "http://127.0.0.1:1/gorgias/{account}",
    }
    oauth = Settings.from_env(environ, accounts_dir=tmp_path).oauth
    assert oauth.public_url == "https://together.example.com"
    assert oauth.app is not None
    assert oauth.app.token_url("acme") == "http://127.0.0.1:1/gorgias/acme/oauth/token"
    assert "secret" not in repr(oauth)
    environ.pop("TOGETHER_GORGIAS_CLIENT_SECRET")
    assert Settings.from_env(environ, accounts_dir=tmp_path).oauth.app is None


def test_other_methods_are_405(world: World) -> None:
    page = get(world.app, INSTALL_PATH, {"account": "acme"}, method="POST")
    assert page.status == 405


# ---------------------------------------------------------------- callback: success
class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def handler_log() -> Iterator[_Lines]:
    logger = logging.getLogger(HANDLER_LOGGER)
    lines, level = _Lines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


def test_connect_stores_the_tokens_and_says_what_happens_next(
    world: World, handler_log: _Lines
) -> None:
    state = world.install("acme")
    query = world.authorize("acme", state)
    page = world.callback(query)
    assert page.status == 200, page.text
    assert page.title == "Gorgias account connected"
    assert "acme.gorgias.com is now connected to Together." in page.text
    assert "Together support links your Shopify store" in page.text
    assert "appear in Gorgias once that is done, and support will tell you" in page.text
    credential = world.store.get_credential("gorgias", "acme.gorgias.com")
    assert credential is not None and credential.refresh_token is not None
    assert credential.expires_at is not None
    expected = datetime.fromtimestamp(world.clock[0], UTC) + timedelta(hours=24)
    assert abs((credential.expires_at - expected).total_seconds()) < 2
    token_works = httpx.get(
        world.sandbox.gorgias_url_template.format(account="acme") + "/api/integrations",
        headers={"Authorization": f"Bearer {credential.access_token}"},
    )
    assert token_works.status_code == 200
    secrets_seen = (credential.access_token, credential.refresh_token, query["code"], state)
    logged = "\n".join(handler_log.lines)
    entries = [json.loads(line) for line in handler_log.lines]
    assert [(e["route"], e["status"], e.get("account")) for e in entries] == [
        (INSTALL_PATH, 302, "acme.gorgias.com"),
        (CALLBACK_PATH, 200, "acme.gorgias.com"),
    ]
    for secret in secrets_seen:
        assert secret not in page.text
        assert secret not in logged
    assert world.store.list_credentials()[0].status == "ok"


# ---------------------------------------------------------------- callback: bad input
def test_access_denied_is_a_friendly_page_and_stores_nothing(world: World) -> None:
    state = world.install("acme")
    page = world.callback({"error": "access_denied", "state": state})
    assert page.status == 403
    assert page.title == "Connection cancelled"
    assert "Gorgias access was not granted, so nothing was connected." in page.text
    assert world.stored() == []


def test_any_other_error_is_a_friendly_page_that_never_echoes_it(world: World) -> None:
    page = world.callback({"error": "<b>server_error</b>", "state": world.install("acme")})
    assert page.status == 400
    assert page.title == "Gorgias did not authorize the connection"
    assert "Gorgias did not authorize the connection, so nothing was connected." in page.text
    assert "server_error" not in page.text  # only known codes, in our words (issue 15)
    assert world.stored() == []


def tampered(state: str) -> str:
    body, _, signature = state.rpartition(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{body}.{flipped}"


@pytest.mark.parametrize(
    "forge",
    [
        tampered,
        lambda state: "s1.1700000000.eyJhIjoiYWNtZSJ9.AAAA",
        lambda state: "not-a-state",
        lambda state: issue_state(Keyring.from_env(generate_key()), "acme", now=time.time()),
    ],
    ids=["tampered", "made-up", "garbage", "other-key"],
)
def test_forged_state_is_refused(world: World, forge: Callable[[str], str]) -> None:
    query = world.authorize("acme", world.install("acme"))
    page = world.callback({**query, "state": forge(query["state"])})
    assert page.status == 400
    assert page.title == "Connection link not valid"
    assert f"This link was not issued by Together. {START_AGAIN}" in page.text
    assert world.stored() == []


def test_state_for_another_purpose_is_refused(world: World) -> None:
    other = world.keyring.sign(b'{"a":"acme","n":"x"}', "something-else")
    page = world.callback({"code": "c", "state": other})
    assert (page.status, page.title) == (400, "Connection link not valid")
    assert f"This link was not issued by Together. {START_AGAIN}" in page.text
    assert world.stored() == []


def test_missing_state_is_refused(world: World) -> None:
    page = world.callback({"code": "c"})
    assert (page.status, page.title) == (400, "Connection link incomplete")
    assert f"The link has no state. {START_AGAIN}" in page.text
    assert world.stored() == []


def test_expired_state_is_refused(world: World) -> None:
    state = world.install("acme")
    query = world.authorize("acme", state)
    world.clock[0] += 601
    page = world.callback(query)
    assert page.status == 400
    assert page.title == "Connection link expired"
    assert f"Connection links work for 10 minutes. {START_AGAIN}" in page.text
    assert world.stored() == []


def test_state_just_under_ten_minutes_still_works(world: World) -> None:
    query = world.authorize("acme", world.install("acme"))
    world.clock[0] += 599
    assert world.callback(query).status == 200


def test_replayed_state_is_refused(world: World) -> None:
    query = world.authorize("acme", world.install("acme"))
    assert world.callback(query).status == 200
    world.store.delete_credential("gorgias", "acme.gorgias.com")
    page = world.callback(query)
    assert page.status == 400
    assert page.title == "Connection link already used"
    assert f"Each link works only once. {START_AGAIN}" in page.text
    assert world.stored() == []


def test_replay_is_refused_by_another_process_on_the_same_store(world: World) -> None:
    query = world.authorize("acme", world.install("acme"))
    assert world.callback(query).status == 200
    other_store = Store.open(world.state_url, world.keyring)
    try:
        other = create_app(world.settings, store=other_store)
        other.oauth = OAuthRoutes(world.settings.oauth, world.keyring, lambda: other_store)
        page = get(other, CALLBACK_PATH, query)
    finally:
        other_store.close()
    assert (page.status, page.title) == (400, "Connection link already used")


def test_state_of_another_account_cannot_redeem_its_code(world: World) -> None:
    acme_state = world.install("acme")
    beta_query = world.authorize("beta", world.install("beta"))
    page = world.callback({"code": beta_query["code"], "state": acme_state})
    assert page.status == 400
    assert page.title == "Gorgias refused the connection"
    assert (
        "Gorgias did not accept the authorization code (it may have expired or been used), "
        f"so nothing was connected. {START_AGAIN}"
    ) in page.text
    assert world.stored() == []


def test_callback_naming_another_account_is_refused(world: World) -> None:
    query = world.authorize("acme", world.install("acme"))
    page = world.callback({**query, "account": "beta"})
    assert page.status == 400
    assert page.title == "Connection link for another account"
    assert f"This link was made to connect a different Gorgias account. {START_AGAIN}" in (
        page.text
    )
    assert world.stored() == []
    assert world.callback({**query, "account": "acme.gorgias.com"}).status == 200


@pytest.mark.parametrize("code", [None, ""])
def test_missing_code_is_refused(world: World, code: str | None) -> None:
    query = world.authorize("acme", world.install("acme"))
    query.pop("code")
    if code is not None:
        query["code"] = code
    page = world.callback(query)
    assert page.status == 400
    assert f"Gorgias sent no code. {START_AGAIN}" in page.text
    assert world.stored() == []


EXCHANGE_ADVICE = {
    "Gorgias did not answer": (
        "Nothing was connected. Try again in a few minutes from the Together app in Gorgias."
    ),
    "Gorgias refused the connection": (
        "Gorgias did not accept the authorization code (it may have expired or been used), "
        "so nothing was connected."
    ),
    "Gorgias gave an unexpected answer": (
        "Nothing was connected. Try again from the Together app in Gorgias; if it keeps "
        "failing, contact Together support."
    ),
}


@pytest.mark.parametrize(
    ("fault", "status", "title"),
    [
        ({"kind": "drop"}, 502, "Gorgias did not answer"),
        ({"kind": "status", "status": 503}, 502, "Gorgias did not answer"),
        ({"kind": "status", "status": 400}, 400, "Gorgias refused the connection"),
        ({"kind": "status", "status": 200}, 502, "Gorgias gave an unexpected answer"),
    ],
    ids=["down", "503", "400", "200-without-tokens"],
)
def test_token_endpoint_failures(
    world: World, fault: dict[str, Any], status: int, title: str
) -> None:
    query = world.authorize("acme", world.install("acme"))
    world.sandbox.control.add_fault(path_contains="/oauth/token", **fault)
    page = world.callback(query)
    assert (page.status, page.title) == (status, title)
    assert EXCHANGE_ADVICE[title] in page.text
    assert "Traceback" not in page.text
    assert world.stored() == []


def test_token_endpoint_refusing_our_client_credentials(world: World) -> None:
    query = world.authorize("acme", world.install("acme"))
    world.sandbox.control.set_oauth_client(CLIENT_ID, "rotated-secret")
    page = world.callback(query)
    assert (page.status, page.title) == (502, "Gorgias refused Together's app credentials")
    assert "Nothing was connected. Please contact Together support." in page.text
    assert world.stored() == []


class _NotJson(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body>Welcome to Gorgias</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def not_json_server() -> Iterator[str]:
    server = socketserver.TCPServer(("127.0.0.1", 0), _NotJson)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{{account}}"
    finally:
        server.shutdown()
        server.server_close()


def test_token_endpoint_answering_non_json(world: World, not_json_server: str) -> None:
    query = world.authorize("acme", world.install("acme"))
    oauth = OAuthSettings(OAuthApp(CLIENT_ID, CLIENT_SECRET, not_json_server), PUBLIC_URL)
    world.app.oauth = world.routes(oauth=oauth)
    page = world.callback(query)
    assert (page.status, page.title) == (502, "Gorgias gave an unexpected answer")
    assert EXCHANGE_ADVICE["Gorgias gave an unexpected answer"] in page.text
    assert world.stored() == []


def test_token_endpoint_unreachable(world: World) -> None:
    query = world.authorize("acme", world.install("acme"))
    closed = OAuthApp(CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1:9/{account}")
    world.app.oauth = world.routes(oauth=OAuthSettings(closed, PUBLIC_URL))
    page = world.callback(query)
    assert (page.status, page.title) == (502, "Gorgias did not answer")
    assert EXCHANGE_ADVICE["Gorgias did not answer"] in page.text
    assert world.stored() == []


# ---------------------------------------------------------------- the nonce table
def test_a_nonce_is_used_once_and_old_ones_are_cleaned(store: Store) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    keep = timedelta(hours=1)
    assert store.use_oauth_state_nonce("n1", now=t0, keep=keep) is True
    assert store.use_oauth_state_nonce("n1", now=t0 + timedelta(minutes=59), keep=keep) is False
    assert store.use_oauth_state_nonce("n2", now=t0 + timedelta(hours=2), keep=keep) is True
    # n1 was cleaned up; its state expired long ago, so a replay fails on expiry anyway
    assert store.use_oauth_state_nonce("n1", now=t0 + timedelta(hours=2), keep=keep) is True
