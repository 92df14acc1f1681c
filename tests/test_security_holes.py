"""Issue 15, "Medium and low" items 2-9 and issue 11's chunked body and block-scalar domain:
each test reproduces the attack the security review found and asserts the exact outcome now."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import psycopg
import pytest
from click.testing import CliRunner, Result

from tests.handler_helpers import Answer, call
from tests.test_oauth import CLIENT_ID, CLIENT_SECRET, PUBLIC_URL, START_AGAIN, World
from tests.test_oauth import Page as OAuthPage
from together_reconcile.cli import main
from together_reconcile.events.app import HandlerApp, Settings, create_app
from together_reconcile.events.serve import prepare
from together_reconcile.events.shopify import (
    ShopifyClient,
    ShopifySettings,
    ascii_lower,
    build_search_query,
)
from together_reconcile.gorgias.oauth import (
    CALLBACK_PATH,
    INSTALL_PATH,
    ClientRateLimit,
    OAuthRoutes,
    OAuthSettings,
)
from together_reconcile.gorgias.tokens import OAuthApp
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.sandbox.searchsyntax import compile_query
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Store, StoreError, mask_url

ROOT = Path(__file__).resolve().parents[1]

# -- 2. a database password with an unencoded "@" ---------------------------------------------

LEAKY_URL = "postgresql://svc:Sup3r@Secr3t@db.internal:5432/db"
ENCODE_ADVICE = (
    "the state URL has an unencoded '@' in its user name or password: "
    "percent-encode the password (write '@' as %40, ':' as %3A, '/' as %2F)"
)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (LEAKY_URL, "postgresql://***@db.internal:5432/db"),
        ("postgresql://svc:Sup@er/x@db.internal/db", "postgresql://***@db.internal/db"),
        ("postgresql://svc@corp:pw@db.internal/db?options=x", "postgresql://***@db.internal/db"),
        (
            "postgresql://svc:Sup3r%40Secr3t@db.internal:5432/db",
            "postgresql://svc:***@db.internal:5432/db",
        ),
        ("postgresql://svc:pw@db.internal/db?options=a@b", "postgresql://svc:***@db.internal/db"),
    ],
)
def test_mask_url_masks_up_to_the_last_at(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_state_url_with_an_unencoded_at_is_refused_without_echoing_it() -> None:
    with pytest.raises(StoreError) as raised:
        Store.open(LEAKY_URL)
    assert str(raised.value) == ENCODE_ADVICE


def test_cli_refuses_the_url_with_advice_and_no_password() -> None:
    runner = CliRunner(
        env={"TOGETHER_SECRET_KEYS": generate_key(), "TOGETHER_STATE_URL": LEAKY_URL}
    )
    result = runner.invoke(main, ["credentials", "list"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {ENCODE_ADVICE}\n"
    assert "Secr3t" not in result.output and "Sup3r" not in result.output


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`prepare` sets up the JSON log handlers (propagate off): undo that for later tests."""
    loggers = [logging.getLogger("together_reconcile"), logging.getLogger()]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    logging.captureWarnings(False)


@pytest.mark.usefixtures("restore_logging")
def test_handler_start_up_log_has_no_password(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "accounts").mkdir()
    settings = Settings(
        accounts_dir=tmp_path / "accounts",
        state_url=LEAKY_URL,
        keyring=Keyring.from_env(generate_key()),
    )
    prepare(settings)
    text = capfd.readouterr().err
    assert '"event":"store_unavailable_at_start"' in text
    assert ENCODE_ADVICE in text
    assert "Secr3t" not in text and "Sup3r" not in text


def test_driver_host_text_is_never_repeated() -> None:
    # Percent-encoded, so the URL is accepted; the host does not resolve. psycopg says
    # "failed to resolve host 'no-such-host.invalid': ..."; we say it in our own words.
    url = "postgresql://svc:Sup3r%40Secr3t@no-such-host.invalid:5432/db"
    with pytest.raises(StoreError) as raised:
        Store.open(url)
    assert str(raised.value) == (
        "cannot reach the state database at postgresql://svc:***@no-such-host.invalid:5432/db: "
        "the host name does not resolve"
    )


def test_driver_quoted_names_are_never_repeated(
    postgres_url_or_skip_reason: tuple[str | None, str | None],
) -> None:
    base, reason = postgres_url_or_skip_reason
    if base is None:
        if os.environ.get("CI") == "true":
            pytest.fail(str(reason))
        pytest.skip(f"{reason}: start it or set TOGETHER_TEST_POSTGRES_URL")
    url = base.rsplit("/", 1)[0] + "/no_such_db_Secr3t"
    with pytest.raises(StoreError) as raised:
        Store.open(url)
    assert str(raised.value) == (
        f"cannot reach the state database at {mask_url(url)}: the database does not exist"
    )
    # what psycopg itself says names the database: the reason above is ours
    with pytest.raises(psycopg.OperationalError, match='"no_such_db_Secr3t"'):
        psycopg.connect(url, connect_timeout=3)


# -- 3. a 5,000-digit integer in an account file ----------------------------------------------

HUGE = "9" * 5000
GOOD_ACCOUNT = "shopify_store: acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"


def _accounts(tmp_path: Path, widget: str) -> Path:
    folder = tmp_path / "accounts"
    folder.mkdir(exist_ok=True)
    (folder / "acme.yaml").write_text(GOOD_ACCOUNT + widget)
    return folder


def _cli(tmp_path: Path, *args: str) -> Result:
    env = {
        "TOGETHER_SECRET_KEYS": generate_key(),
        "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/state.db",
        "TOGETHER_PUBLIC_URL": "https://together.example.com",
    }
    accounts = ["--accounts-dir", str(tmp_path / "accounts")]
    return CliRunner(env=env).invoke(main, [*accounts, *args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (HUGE, "a 5000-digit number"),
        ("-" + HUGE, "a 5000-digit number"),
        ("0x" + "f" * 29, "a 29-digit number"),
        ("1" * 40, "a 40-digit number"),  # a number, not "looks like a secret"
        ("1001", "1001"),
        ("-1", "-1"),
    ],
    ids=["5000-digits", "minus-5000-digits", "hex-29", "40-digits", "1001", "-1"],
)
def test_huge_or_out_of_range_order_is_a_normal_problem(
    tmp_path: Path, value: str, shown: str
) -> None:
    folder = _accounts(tmp_path, f"widget:\n  order: {value}\n")
    problem = f"{folder}/acme.yaml:4:10: widget.order: must be between 0 and 1000, got {shown}"
    validated = _cli(tmp_path, "validate")
    assert validated.exit_code == 1
    assert validated.output.splitlines()[0] == problem
    planned = _cli(tmp_path, "plan")
    assert planned.exit_code == 1
    assert planned.output == (
        f"Error: invalid account files (1 problem); run `together-reconcile validate`:\n{problem}\n"
    )
    assert not (tmp_path / "state.db").exists()


def test_5000_hex_digits_are_out_of_range_and_look_like_a_key(tmp_path: Path) -> None:
    folder = _accounts(tmp_path, "widget:\n  order: 0x" + "f" * 5000 + "\n")
    validated = _cli(tmp_path, "validate")
    assert validated.exit_code == 1
    assert validated.output.splitlines()[:2] == [
        f"{folder}/acme.yaml:4:10: widget.order: must be between 0 and 1000, "
        "got a 5000-digit number",
        f"{folder}/acme.yaml:4:10: widget.order: this value looks like a secret (an access "
        "token or key); secrets never go in account files: remove it (tokens are stored "
        "with `together-reconcile credentials put`)",
    ]


def test_order_bound_in_the_model_and_the_committed_schema() -> None:
    from pydantic import ValidationError

    from together_reconcile.config import WidgetSettings

    assert WidgetSettings(order=1000).order == 1000
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        WidgetSettings(order=1001)
    committed = json.loads((ROOT / "schemas" / "account.schema.json").read_text())
    order = committed["properties"]["widget"]["properties"]["order"]
    assert (order["minimum"], order["maximum"]) == (0, 1000)


@pytest.fixture
def handler(tmp_path: Path) -> tuple[HandlerApp, Keyring, Path]:
    keyring = Keyring.from_env(generate_key())
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "acme.yaml").write_text(GOOD_ACCOUNT)
    settings = Settings(
        accounts_dir=folder,
        state_url=f"sqlite:///{tmp_path}/state.db",
        keyring=keyring,
        config_check_interval_s=0.0,
    )
    return create_app(settings, shopify=_NoOrders()), keyring, folder


class _NoOrders:
    def final_sale_orders(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return []


def _acme_event(app: HandlerApp, keyring: Keyring, email: Any = None) -> Answer:
    body = {"ticket_id": 1, "account_domain": "acme.gorgias.com", "customer_email": email}
    return call(app, body=body, token=keyring.event_token("acme.gorgias.com"))


def _touch_later(path: Path) -> None:
    stamp = time.time() + 5
    os.utime(path, (stamp, stamp))


def test_reload_of_a_huge_order_keeps_the_last_good_config(
    handler: tuple[HandlerApp, Keyring, Path], caplog: pytest.LogCaptureFixture
) -> None:
    app, keyring, folder = handler
    assert _acme_event(app, keyring).status == 200
    (folder / "acme.yaml").write_text(GOOD_ACCOUNT + f"widget:\n  order: {HUGE}\n")
    _touch_later(folder / "acme.yaml")
    with caplog.at_level(logging.ERROR, logger="together_reconcile"):
        answer = _acme_event(app, keyring)
    assert answer.status == 200  # acme still known (an unknown account is 404)
    (failure,) = [json.loads(r.getMessage()) for r in caplog.records]
    assert (failure["event"], failure["message"]) == (
        "config_reload_failed",
        "kept the last good account config",
    )
    assert failure["problems"] == [
        f"{folder}/acme.yaml:4:10: widget.order: must be between 0 and 1000, "
        "got a 5000-digit number"
    ]


def test_any_reload_failure_keeps_the_last_good_config(
    handler: tuple[HandlerApp, Keyring, Path],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from together_reconcile.events import app as app_module

    app, keyring, folder = handler

    def explode(_folder: Path) -> Any:
        raise RuntimeError("secret-looking detail")

    monkeypatch.setattr(app_module, "load_accounts", explode)
    _touch_later(folder / "acme.yaml")
    with caplog.at_level(logging.ERROR, logger="together_reconcile"):
        assert _acme_event(app, keyring).status == 200
        app.registry.request_reload()
        assert _acme_event(app, keyring).status == 200
    failures = [json.loads(r.getMessage()) for r in caplog.records]
    assert [(f["event"], f["message"], f["error"]) for f in failures] == [
        ("config_reload_failed", "kept the last good account config", "RuntimeError")
    ] * 2
    assert "secret-looking detail" not in caplog.text


# -- 4. the OAuth callback and install routes -------------------------------------------------


@pytest.fixture
def world(
    sandbox: RunningSandbox, store: Store, keyring: Keyring, tmp_path: Path, state_url: str
) -> World:
    """As in tests/test_oauth.py: the handler with the sandbox's Gorgias as the OAuth server."""
    sandbox.control.add_gorgias_account("acme", "pasted-acme")
    sandbox.control.add_gorgias_account("beta", "pasted-beta")
    sandbox.control.set_oauth_client(CLIENT_ID, CLIENT_SECRET)
    (tmp_path / "accounts").mkdir(exist_ok=True)
    oauth = OAuthSettings(
        OAuthApp(CLIENT_ID, CLIENT_SECRET, sandbox.gorgias_url_template), PUBLIC_URL
    )
    settings = Settings(
        accounts_dir=tmp_path / "accounts", state_url=state_url, keyring=keyring, oauth=oauth
    )
    app = create_app(settings, store=store)
    made = World(app, store, keyring, sandbox, settings, [time.time()], state_url)
    app.oauth = made.routes()
    return made


def _oauth_get(
    app: HandlerApp, path: str, query: dict[str, str], *, remote: str, forwarded: str = ""
) -> OAuthPage:
    """`tests.test_oauth.get` with the client's address (and a proxy's X-Forwarded-For)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": urlencode(query),
        "REMOTE_ADDR": remote,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
    }
    if forwarded:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(app(environ, start_response)).decode()
    return OAuthPage(seen["status"], seen["headers"], body)


def test_callback_error_without_a_state_is_refused_and_never_echoed(world: World) -> None:
    hostile = "Your account is suspended: call +1-555-0100 <b>now</b>"
    page = world.callback({"error": hostile})
    assert (page.status, page.title) == (400, "Connection link incomplete")
    assert f"The link has no state. {START_AGAIN}" in page.text
    assert "suspended" not in page.text and "555" not in page.text
    forged = world.callback({"error": hostile, "state": "s1.1700000000.eyJhIjoiYWNtZSJ9.AAAA"})
    assert (forged.status, forged.title) == (400, "Connection link not valid")
    assert "suspended" not in forged.text
    assert world.stored() == []


def test_callback_error_with_a_valid_state_shows_only_our_words(world: World) -> None:
    hostile = "Your account is suspended: call +1-555-0100"
    page = world.callback({"error": hostile, "state": world.install("acme")})
    assert (page.status, page.title) == (400, "Gorgias did not authorize the connection")
    assert (
        "<p>Gorgias did not authorize the connection, so nothing was connected. Start again "
        "from the Together app in Gorgias; if it keeps failing, contact Together support.</p>"
    ) in page.text
    assert "suspended" not in page.text and "555" not in page.text
    busy = world.callback({"error": "temporarily_unavailable", "state": world.install("acme")})
    assert (busy.status, busy.title) == (502, "Gorgias did not authorize the connection")
    assert (
        "Gorgias could not complete the authorization, so nothing was connected. Try again "
        "in a few minutes from the Together app in Gorgias."
    ) in busy.text
    scope = world.callback({"error": "invalid_scope", "state": world.install("acme")})
    assert (scope.status, scope.title) == (400, "Gorgias did not authorize the connection")
    assert (
        "Gorgias did not accept Together&#x27;s connection request, so nothing was connected. "
        "Please contact Together support."
    ) in scope.text
    assert world.stored() == []


def _limited_app(world: World, clock: list[float]) -> ClientRateLimit:
    limit = ClientRateLimit(clock=lambda: clock[0])
    world.app.oauth = OAuthRoutes(
        world.settings.oauth,
        world.keyring,
        lambda: world.store,
        clock=lambda: world.clock[0],
        rate_limit=limit,
    )
    return limit


def test_install_and_callback_are_rate_limited_per_client_address(world: World) -> None:
    clock = [1000.0]
    _limited_app(world, clock)
    for second in range(60):  # 60 in one minute, install and callback alike: never refused
        clock[0] = 1000.0 + second * 0.5
        path = INSTALL_PATH if second % 2 else CALLBACK_PATH
        page = _oauth_get(world.app, path, {"account": "acme"}, remote="203.0.113.7")
        assert page.status != 429
    refused = _oauth_get(world.app, INSTALL_PATH, {"account": "acme"}, remote="203.0.113.7")
    assert (refused.status, refused.headers["Retry-After"]) == (429, "31")
    assert refused.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Too many connection attempts came from your address." in refused.text
    other = _oauth_get(world.app, INSTALL_PATH, {"account": "acme"}, remote="203.0.113.8")
    assert other.status == 302
    clock[0] = 1060.1  # the first request left the window
    again = _oauth_get(world.app, INSTALL_PATH, {"account": "acme"}, remote="203.0.113.7")
    assert again.status == 302


def test_a_steady_60_a_minute_is_never_refused() -> None:
    clock = [0.0]
    limit = ClientRateLimit(clock=lambda: clock[0])
    for n in range(600):  # ten minutes at exactly one a second
        clock[0] = float(n)
        assert limit.take("198.51.100.1") is None
    bursts = ClientRateLimit(clock=lambda: clock[0])
    for start in (0.0, 60.0, 120.0):  # 60 at once, once a minute
        clock[0] = start
        assert [bursts.take("198.51.100.1") for _ in range(60)] == [None] * 60
        assert bursts.take("198.51.100.1") == 60


def test_rate_limit_keys_on_the_forwarded_address_only_behind_a_local_proxy(
    world: World,
) -> None:
    clock = [1000.0]
    _limited_app(world, clock)
    for _ in range(60):
        _oauth_get(
            world.app, INSTALL_PATH, {"account": "acme"}, remote="127.0.0.1", forwarded="192.0.2.1"
        )
    proxied = {"remote": "127.0.0.1", "forwarded": "10.9.9.9, 192.0.2.1"}
    assert _oauth_get(world.app, INSTALL_PATH, {"account": "acme"}, **proxied).status == 429
    proxied["forwarded"] = "192.0.2.2"
    assert _oauth_get(world.app, INSTALL_PATH, {"account": "acme"}, **proxied).status == 302
    # A client that is not a local proxy cannot pick its address with the header.
    for n in range(60):
        spoofed = {"remote": "203.0.113.9", "forwarded": f"192.0.2.{100 + n}"}
        assert _oauth_get(world.app, INSTALL_PATH, {"account": "acme"}, **spoofed).status == 302
    spoofed = {"remote": "203.0.113.9", "forwarded": "192.0.2.250"}
    assert _oauth_get(world.app, INSTALL_PATH, {"account": "acme"}, **spoofed).status == 429


def test_rate_limit_tracks_a_bounded_number_of_addresses() -> None:
    limit = ClientRateLimit(max_clients=100, clock=lambda: 0.0)
    for n in range(1000):
        assert limit.take(f"2001:db8::{n:x}") is None
    assert len(limit) == 100


def _nonce_rows(store: Store) -> int:
    from sqlalchemy import func, select

    from together_reconcile.store import oauth_state_nonces

    with store._engine.connect() as conn:  # the table itself: what an attacker could fill
        return int(conn.execute(select(func.count()).select_from(oauth_state_nonces)).scalar_one())


def test_nonce_rows_of_expired_states_are_purged(world: World) -> None:
    started = world.clock[0]
    for _ in range(3):
        assert world.callback(world.authorize("acme", world.install("acme"))).status == 200
    assert _nonce_rows(world.store) == 3
    world.clock[0] = started + 14 * 60  # a used nonce is kept while its state could verify
    assert world.callback(world.authorize("acme", world.install("acme"))).status == 200
    assert _nonce_rows(world.store) == 4
    world.clock[0] = started + 15 * 60 + 1
    assert world.callback(world.authorize("acme", world.install("acme"))).status == 200
    assert _nonce_rows(world.store) == 2


class _CentralTokenEndpoint(httpx.HTTPTransport):
    """Redeems every code at the account that issued it, whatever URL it is posted to: a
    token endpoint shared by all Gorgias accounts, so a code from `beta` yields beta's token."""

    def __init__(self, issuer: str) -> None:
        super().__init__()
        self.issuer = issuer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/token"):
            path = request.url.path.replace("/gorgias/acme/", f"/gorgias/{self.issuer}/")
            request.url = request.url.copy_with(path=path)
        return super().handle_request(request)


def test_a_code_from_another_gorgias_account_never_replaces_the_credentials(
    world: World,
) -> None:
    assert world.callback(world.authorize("acme", world.install("acme"))).status == 200
    merchant = world.store.get_credential("gorgias", "acme.gorgias.com")
    assert merchant is not None
    # The attacker starts an install for acme, but authorizes at their own account (beta).
    acme_state = world.install("acme")
    beta_code = world.authorize("beta", acme_state)["code"]
    world.app.oauth = OAuthRoutes(
        world.settings.oauth,
        world.keyring,
        lambda: world.store,
        clock=lambda: world.clock[0],
        http=httpx.Client(transport=_CentralTokenEndpoint("beta"), timeout=10),
    )
    page = world.callback({"code": beta_code, "state": acme_state})
    assert (page.status, page.title) == (400, "Authorized for another Gorgias account")
    assert (
        "The authorization Gorgias sent does not give access to acme.gorgias.com (it may come "
        f"from another Gorgias account), so nothing was connected. {START_AGAIN}"
    ) in page.text
    assert world.store.get_credential("gorgias", "acme.gorgias.com") == merchant
    # the read that decided it: acme's own API, with the new token, refused by the sandbox
    reads = [e for e in world.sandbox.control.requests() if e["path"].endswith("/api/integrations")]
    assert [(r["path"], r["status"]) for r in reads][-1] == ("/gorgias/acme/api/integrations", 401)


def test_ownership_check_failing_stores_nothing(world: World) -> None:
    query = world.authorize("acme", world.install("acme"))
    world.sandbox.control.add_fault(path_contains="/api/integrations", kind="status", status=503)
    page = world.callback(query)
    assert (page.status, page.title) == (502, "Gorgias did not answer")
    assert world.stored() == []


# -- 5. the email re-check is exact (ASCII case only) -----------------------------------------

SHOP_TOKEN = "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"


def _shop_order(oid: int, email: str) -> dict[str, Any]:
    return {
        "id": oid,
        "name": f"#{oid}",
        "email": email,
        "created_at": "2026-10-20T10:00:00Z",
        "tags": ["together-final-sale"],
        "total": "10.00",
        "currency": "EUR",
        "financial_status": "PAID",
        "fulfillment_status": "FULFILLED",
        "line_items": [{"name": "Mug", "quantity": 1}],
    }


KELVIN = "\u212a"  # KELVIN SIGN: casefold() and NFKC make it "k"


@pytest.mark.parametrize(
    ("asked", "theirs", "mine"),
    [
        ("strasse@example.com", "straße@example.com", "strasse@example.com"),
        ("straße@example.com", "strasse@example.com", "straße@example.com"),
        (f"{KELVIN}ate@example.com", "kate@example.com", f"{KELVIN}ate@example.com"),
        ("Kate@Example.COM", f"{KELVIN}ate@example.com", "kate@example.com"),
        ("ｋａｔｅ@example.com", "kate@example.com", "ｋａｔｅ@example.com"),
    ],
    ids=["strasse", "strasse-sharp-s", "kelvin-asks", "ascii-asks", "fullwidth"],
)
def test_near_miss_emails_never_get_each_others_orders(
    sandbox: RunningSandbox, asked: str, theirs: str, mine: str
) -> None:
    sandbox.control.add_shopify_store("acme", SHOP_TOKEN)
    sandbox.control.add_orders("acme", [_shop_order(1, theirs), _shop_order(2, mine)])
    settings = ShopifySettings(url_template=sandbox.shopify_url_template, api_version="2026-04")
    client = ShopifyClient(settings)
    try:
        # The sandbox's search is an index: it returns the near-miss too ...
        search = build_search_query(asked, datetime(2026, 9, 1, tzinfo=UTC))
        sandbox.control.clear_requests()
        found = client.final_sale_orders(
            "acme.myshopify.com",
            SHOP_TOKEN,
            asked,
            datetime(2026, 9, 1, tzinfo=UTC),
            deadline=time.monotonic() + 5,
        )
    finally:
        client.close()
    (request,) = sandbox.control.requests()
    assert request["status"] == 200
    assert compile_query(search)(_shop_order(1, theirs)) is True  # the near-miss came back
    # ... and the re-check keeps only the address that is the same up to ASCII case.
    assert [order.name for order in found] == ["#2"]


def test_sandbox_search_returns_the_near_misses(sandbox: RunningSandbox) -> None:
    """Without this, the test above would test the sandbox, not the handler's re-check."""
    sandbox.control.add_shopify_store("acme", SHOP_TOKEN)
    sandbox.control.add_orders(
        "acme", [_shop_order(1, "straße@example.com"), _shop_order(2, "kate@example.com")]
    )
    url = sandbox.shopify_url_template.format(store="acme") + "/admin/api/2026-04/graphql.json"
    query = "query($q: String!) { orders(first: 10, query: $q) { nodes { name email } } }"
    for asked, near in (
        ("strasse@example.com", "#1"),
        (f"{KELVIN}ate@example.com", "#2"),
        ("ｋａｔｅ@example.com", "#2"),
    ):
        answer = httpx.post(
            url,
            json={"query": query, "variables": {"q": f'email:"{asked}"'}},
            headers={"X-Shopify-Access-Token": SHOP_TOKEN},
        )
        assert [n["name"] for n in answer.json()["data"]["orders"]["nodes"]] == [near]


def test_ascii_lower_folds_only_ascii_letters() -> None:
    assert ascii_lower("Jane.DOE@Example.COM") == "jane.doe@example.com"
    assert ascii_lower("STRAẞE@x") == "straẞe@x"  # capital sharp s stays
    assert ascii_lower(f"{KELVIN}ATE@x") == f"{KELVIN}ate@x"
    assert ascii_lower("ÉMILE@x") == "Émile@x"


# -- 6. symlinks in accounts/ -----------------------------------------------------------------

LINK_PROBLEM = (
    "is a symbolic link: an account file must be a regular file in the accounts folder; "
    "replace the link with the file itself"
)


def _linked_accounts(tmp_path: Path) -> Path:
    """accounts/acme.yaml -> ../docs/acme.yaml (valid content), plus a dangling link."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "acme.yaml").write_text(GOOD_ACCOUNT)
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "acme.yaml").symlink_to("../docs/acme.yaml")
    (folder / "gone.yml").symlink_to("../docs/nowhere.yaml")
    return folder


def test_validate_refuses_symlinked_account_files(tmp_path: Path) -> None:
    folder = _linked_accounts(tmp_path)
    result = _cli(tmp_path, "validate")
    assert result.exit_code == 1
    assert result.output == (
        f"{folder}/acme.yaml:1:1: {LINK_PROBLEM}\n"
        f"{folder}/gone.yml:1:1: {LINK_PROBLEM}\n"
        "2 files, 2 problems\n"
    )
    named = _cli(tmp_path, "validate", str(folder / "acme.yaml"))
    assert named.exit_code == 1
    assert named.output.splitlines()[0] == f"{folder}/acme.yaml:1:1: {LINK_PROBLEM}"


def test_plan_refuses_symlinked_account_files(tmp_path: Path) -> None:
    folder = _linked_accounts(tmp_path)
    result = _cli(tmp_path, "plan")
    assert result.exit_code == 1
    assert result.output == (
        "Error: invalid account files (2 problems); run `together-reconcile validate`:\n"
        f"{folder}/acme.yaml:1:1: {LINK_PROBLEM}\n"
        f"{folder}/gone.yml:1:1: {LINK_PROBLEM}\n"
    )


def test_handler_refuses_symlinks_at_start_and_on_reload(
    handler: tuple[HandlerApp, Keyring, Path], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from together_reconcile.config import ConfigError
    from together_reconcile.events.app import ConfigSnapshot

    app, keyring, folder = handler
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "beta.yaml").write_text(
        "shopify_store: beta.myshopify.com\ngorgias_account: beta.gorgias.com\n"
    )
    (folder / "beta.yaml").symlink_to(tmp_path / "docs" / "beta.yaml")
    _touch_later(folder / "acme.yaml")
    beta = {"ticket_id": 1, "account_domain": "beta.gorgias.com", "customer_email": None}
    with caplog.at_level(logging.ERROR, logger="together_reconcile"):
        answer = call(app, body=beta, token=keyring.event_token("beta.gorgias.com"))
    assert answer.code == "unknown_account"  # the linked file was never loaded
    (failure,) = [json.loads(r.getMessage()) for r in caplog.records]
    assert failure["problems"] == [f"{folder}/beta.yaml:1:1: {LINK_PROBLEM}"]
    with pytest.raises(ConfigError) as raised:
        ConfigSnapshot.load(folder)
    assert [str(p) for p in raised.value.problems] == [f"{folder}/beta.yaml:1:1: {LINK_PROBLEM}"]


# -- 7. workflow-command injection through file names -----------------------------------------

INJECTED = "zz\n::notice title=Approved::Security review passed\n.yaml"


def test_a_file_name_cannot_print_a_workflow_command(tmp_path: Path) -> None:
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / INJECTED).write_text(
        "shopify_store: zz.myshopify.com\ngorgias_account: zz.gorgias.com\n"
    )
    env = {"GITHUB_ACTIONS": "true"}
    result = CliRunner(env=env).invoke(
        main, ["--accounts-dir", str(folder), "validate"], catch_exceptions=False
    )
    assert result.exit_code == 1
    shown = f"{folder}/zz\\n::notice title=Approved::Security review passed\\n.yaml"
    message = (
        'file name "zz\\n::notice title=Approved::Security review passed\\n.yaml" does not '
        'match gorgias_account "zz.gorgias.com": rename the file to zz.yaml or correct '
        "gorgias_account"
    )
    prop = shown.replace(":", "%3A").replace(",", "%2C")
    assert result.output.splitlines() == [
        f"{shown}:2:18: {message}",
        f"::error file={prop},line=2,col=18::{message}",
        "1 file, 1 problem",
    ]
    assert not any(line.startswith("::notice") for line in result.output.splitlines())


def test_every_printed_path_escapes_control_characters(tmp_path: Path) -> None:
    folder = tmp_path / "accounts"
    folder.mkdir()
    body = "shopify_store: zz.myshopify.com\ngorgias_account: {}.gorgias.com\n"
    (folder / "zz.yaml").write_text(body.format("zz"))
    (folder / "e\x1b[2J\u2028.yml").write_text(body.format("e"))  # a clash names the other
    planned = _cli(tmp_path, "plan")
    assert planned.exit_code == 1
    lines = planned.output.splitlines()
    assert lines[0] == (
        "Error: invalid account files (3 problems); run `together-reconcile validate`:"
    )
    assert f"{folder}/zz.yaml:1:16: " in planned.output
    assert f"is also linked in {folder}/e\\x1b[2J\\u2028.yml: a store links" in planned.output
    assert f"{folder}/e\\x1b[2J\\u2028.yml:1:16: " in planned.output
    assert "\x1b" not in planned.output and "\u2028" not in planned.output
    assert len(lines) == 4


def test_shown_path() -> None:
    from together_reconcile.config.problems import shown_path

    assert shown_path("accounts/acme.yaml") == "accounts/acme.yaml"
    assert shown_path("a\tb\rc\x7fd\x85e\u202ef\udcff") == "a\\tb\\rc\\x7fd\\x85e\\u202ef\\udcff"
    assert shown_path(Path("ünï cödé/ok.yaml")) == "ünï cödé/ok.yaml"


# -- 8. a lone surrogate in customer_email ----------------------------------------------------


@pytest.mark.parametrize(
    "raw_email", ['"\\ud800@example.com"', '"jane\\udfff@example.com"', '"a@\\udbff\\udbff.com"']
)
def test_a_lone_surrogate_email_answers_200_empty_never_5xx(
    handler: tuple[HandlerApp, Keyring, Path], caplog: pytest.LogCaptureFixture, raw_email: str
) -> None:
    app, keyring, _folder = handler
    body = (
        f'{{"ticket_id": 1, "account_domain": "acme.gorgias.com", "customer_email": {raw_email}}}'
    )
    with caplog.at_level(logging.INFO, logger="together_reconcile"):
        answer = call(app, body=body.encode(), token=keyring.event_token("acme.gorgias.com"))
    assert (answer.status, answer.json) == (200, {})
    assert "unexpected_error" not in caplog.text


def test_the_log_hash_of_a_lone_surrogate_does_not_raise() -> None:
    from together_reconcile.events.logs import email_hash

    assert email_hash(b"k" * 32, "\ud800@example.com").startswith("hmac:")
    assert email_hash(b"k" * 32, "\ud800@example.com") != email_hash(b"k" * 32, "@example.com")
    assert email_hash(b"k" * 32, "Jane@Example.com") == email_hash(b"k" * 32, "jane@example.com")


# -- 9. the widget title is plain text --------------------------------------------------------

TITLE_ADVICE = (
    'widget.title: use plain text: no markup characters (< > { } [ ] & " ` \\) and no line '
    "breaks, tabs or other control characters"
)


@pytest.mark.parametrize(
    ("title_yaml", "col"),
    [
        ('"<img src=x onerror=alert(1)>"', 10),
        ("'{{ticket.customer.email}}'", 10),
        ('"Orders [internal]"', 10),
        ('"Tom & Jerry"', 10),
        ('"a\\u202eb"', 10),  # right-to-left override
        ('"tab\\there"', 10),
        ("|\n    Final-sale orders\n", 10),  # a block scalar ends in a line break
    ],
    ids=["html", "template", "brackets", "ampersand", "bidi", "tab", "block-scalar"],
)
def test_markup_in_the_widget_title_is_refused(tmp_path: Path, title_yaml: str, col: int) -> None:
    folder = _accounts(tmp_path, f"widget:\n  title: {title_yaml}\n")
    result = _cli(tmp_path, "validate")
    assert result.exit_code == 1
    assert result.output == f"{folder}/acme.yaml:4:{col}: {TITLE_ADVICE}\n1 file, 1 problem\n"


@pytest.mark.parametrize(
    "title", ["Final-sale orders", "Kate's orders (50% off!)", "Ventes finales · 注文", "No. 1"]
)
def test_plain_titles_are_fine(tmp_path: Path, title: str) -> None:
    _accounts(tmp_path, f"widget:\n  title: {json.dumps(title)}\n")
    assert _cli(tmp_path, "validate").output == "1 file, 0 problems\n"


def test_the_model_and_the_committed_schema_state_the_title_rule() -> None:
    import jsonschema
    from pydantic import ValidationError

    from together_reconcile.config import WidgetSettings
    from together_reconcile.config.rules import WIDGET_TITLE_PATTERN

    assert WidgetSettings(title="Final-sale orders").title == "Final-sale orders"
    for bad in ("<b>x</b>", "{{x}}", "Orders\n", "\ud800"):
        with pytest.raises(ValidationError):
            WidgetSettings(title=bad)
    committed = json.loads((ROOT / "schemas" / "account.schema.json").read_text())
    title = committed["properties"]["widget"]["properties"]["title"]
    assert title["pattern"] == WIDGET_TITLE_PATTERN
    assert "without markup characters" in title["description"]
    validator = jsonschema.Draft202012Validator(committed)
    base = {"shopify_store": "acme.myshopify.com", "gorgias_account": "acme.gorgias.com"}
    assert not list(validator.iter_errors({**base, "widget": {"title": "Orders"}}))
    assert [e.validator for e in validator.iter_errors({**base, "widget": {"title": "<b>"}})] == [
        "pattern"
    ]


# -- issue 11: a chunked body on a server that neither de-chunks nor marks its end ------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def wsgiref_server(handler: tuple[HandlerApp, Keyring, Path]) -> Iterator[tuple[int, Keyring]]:
    """The handler behind wsgiref's own server on a loopback port (no CONTENT_LENGTH and no
    wsgi.input_terminated for a chunked request, as uWSGI's --http-socket)."""
    app, keyring, _folder = handler
    server = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], keyring
    finally:
        server.shutdown()
        server.server_close()


def _raw_post(port: int, headers: list[str], body: bytes) -> tuple[int, dict[str, Any]]:
    request = (
        "POST /gorgias/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + "".join(f"{line}\r\n" for line in headers)
        + "\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_a_chunked_body_on_wsgiref_is_411_length_required(
    wsgiref_server: tuple[int, Keyring],
) -> None:
    port, keyring = wsgiref_server
    event = json.dumps(
        {"ticket_id": 1, "account_domain": "acme.gorgias.com", "customer_email": None}
    ).encode()
    headers = [
        "Content-Type: application/json",
        f"X-Together-Token: {keyring.event_token('acme.gorgias.com')}",
    ]
    chunked = f"{len(event):x}\r\n".encode() + event + b"\r\n0\r\n\r\n"
    status, document = _raw_post(port, [*headers, "Transfer-Encoding: chunked"], chunked)
    assert (status, document) == (
        411,
        {
            "error": {
                "code": "length_required",
                "message": "this server cannot read a chunked body: send the body with a "
                "Content-Length",
            }
        },
    )
    # the same event with a Content-Length is answered (here: no email, so {}) ...
    assert _raw_post(port, [*headers, f"Content-Length: {len(event)}"], event) == (200, {})
    # ... and so is a lone surrogate email (item 8), over a real socket too
    odd = event.replace(b"null", b'"\\ud800@example.com"')
    assert _raw_post(port, [*headers, f"Content-Length: {len(odd)}"], odd) == (200, {})


# -- issue 11: a domain with a line break gets the friendly message ---------------------------


@pytest.mark.parametrize(
    "value", ['"acme.gorgias.com\\n"', "|\n  acme.gorgias.com\n", "' acme.gorgias.com '"]
)
def test_a_domain_with_a_line_break_gets_the_friendly_message(tmp_path: Path, value: str) -> None:
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "acme.yaml").write_text(
        f"shopify_store: acme.myshopify.com\ngorgias_account: {value}\n"
    )
    result = _cli(tmp_path, "validate")
    assert result.exit_code == 1
    assert result.output == (
        f"{folder}/acme.yaml:2:18: gorgias_account: remove the spaces or line breaks around "
        '"acme.gorgias.com"\n1 file, 1 problem\n'
    )
