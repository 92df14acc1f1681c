"""Pins for the fixes of the security and privacy review (one test, or a few, per finding)."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from together_reconcile.events.app import ConfigSnapshot, Settings, create_app
from together_reconcile.events.logs import HANDLER_LOGGER
from together_reconcile.gorgias.oauth import CALLBACK_PATH, INSTALL_PATH
from together_reconcile.gorgias.tokens import OAuthApp, TokenEndpointError, exchange_code
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.sandbox.fire import is_loopback
from together_reconcile.secrets import Keyring, generate_key

SECRET_MARK = "do-not-show-7f3a"


# -- tokens: a token answer with an absurd lifetime or deep nesting is "invalid", not a crash --


def _token_client(body: bytes, status: int = 200) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

    return httpx.Client(transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    "expires_in",
    ["1e400", "Infinity", "NaN", "1e308", str(10 * 366 * 24 * 3600), "-Infinity"],
)
def test_token_lifetime_out_of_range_is_an_invalid_response(expires_in: str) -> None:
    body = f'{{"access_token": "{SECRET_MARK}", "expires_in": {expires_in}}}'.encode()
    app = OAuthApp("id", "secret", "http://127.0.0.1:9/{account}")
    with pytest.raises(TokenEndpointError) as caught:
        exchange_code(app, _token_client(body), "acme", code="c", redirect_uri="https://x/cb")
    assert caught.value.kind == "invalid_response"
    assert SECRET_MARK not in str(caught.value)


def test_token_lifetime_of_a_day_still_works() -> None:
    body = b'{"access_token": "a", "refresh_token": "r", "expires_in": 86400}'
    app = OAuthApp("id", "secret", "http://127.0.0.1:9/{account}")
    grant = exchange_code(app, _token_client(body), "acme", code="c", redirect_uri="https://x/cb")
    assert grant.expires_in == 86400


@pytest.mark.parametrize("status", [200, 400])
def test_deeply_nested_token_answer_is_an_invalid_response(status: int) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    app = OAuthApp("id", "secret", "http://127.0.0.1:9/{account}")
    with pytest.raises(TokenEndpointError) as caught:
        exchange_code(
            app, _token_client(body, status), "acme", code="c", redirect_uri="https://x/cb"
        )
    assert caught.value.kind == ("invalid_response" if status == 200 else "rejected")


# -- handler: an unforeseen failure on an OAuth route is a 500 page, logged, no stack trace ----


class _ExplodingRoutes:
    def answer(self, method: str, path: str, query_string: str, *, client: str = "") -> Any:
        raise RuntimeError(f"boom with {SECRET_MARK}")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.parametrize("path", [INSTALL_PATH, CALLBACK_PATH])
def test_oauth_route_failure_is_a_plain_500_page(tmp_path: Path, path: str) -> None:
    settings = Settings(
        accounts_dir=tmp_path,
        state_url="sqlite:///unused.db",
        keyring=Keyring.from_env(generate_key()),
    )
    app = create_app(settings, snapshot=ConfigSnapshot({}, ()))
    app.oauth = _ExplodingRoutes()  # type: ignore[assignment]
    lines = _Lines()
    logger = logging.getLogger(HANDLER_LOGGER)
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": f"code={SECRET_MARK}&state=x",
        "wsgi.input": io.BytesIO(b""),
    }
    try:
        body = b"".join(app(environ, start_response)).decode()
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    assert seen["status"] == "500 Internal Server Error"
    assert seen["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert "<h1>Something went wrong</h1>" in body
    assert "Traceback" not in body and "RuntimeError" not in body and SECRET_MARK not in body
    logged = [json.loads(line) for line in lines.lines]
    assert [entry["event"] for entry in logged] == ["unexpected_error", "request"]
    assert logged[0]["type"] == "RuntimeError"
    assert logged[1]["status"] == 500 and logged[1]["error"] == "internal_error"
    assert SECRET_MARK not in "\n".join(lines.lines)


# -- repr of objects carrying credentials -----------------------------------------------------


def test_settings_repr_hides_the_database_password(tmp_path: Path) -> None:
    settings = Settings(
        accounts_dir=tmp_path,
        state_url=f"postgresql://app:{SECRET_MARK}@db.internal:5432/together",
        keyring=Keyring.from_env(generate_key()),
    )
    assert SECRET_MARK not in repr(settings)


def test_demo_repr_hides_the_secret_key() -> None:
    from together_reconcile.demo import Demo

    key = generate_key()
    demo = Demo(Path("/tmp/x"), None, None, print, key)  # type: ignore[arg-type]
    assert key not in repr(demo)


# -- sandbox fire: loopback only, even with a proxy in the environment ------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1\\@example.com/",
        "http://127.0.0.1:80\\@example.com/",
        "http://evil.example\t@127.0.0.1/",
        "http://127.0.0.1%2F@example.com/",
        "http://localhost\u3002example.com/",
        "http://example.com#@127.0.0.1",
        "http:/\\127.0.0.1/",
        "http://[::ffff:8.8.8.8]/",
    ],
)
def test_fire_refuses_urls_that_do_not_surely_go_to_loopback(url: str) -> None:
    assert not is_loopback(url)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/e", "http://localhost/e", "http://[::1]:9/e", "http://127.9.9.9/"],
)
def test_fire_accepts_loopback(url: str) -> None:
    assert is_loopback(url)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class _Recorder:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.url = ""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.paths.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]


@pytest.fixture
def recorders() -> Iterator[tuple[_Recorder, _Recorder]]:
    apps, servers, threads = [], [], []
    for _ in range(2):
        app = _Recorder()
        server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
        app.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        apps.append(app)
        servers.append(server)
        threads.append(thread)
    yield apps[0], apps[1]
    for server, thread in zip(servers, threads, strict=True):
        server.shutdown()
        server.server_close()
        thread.join()


def test_fire_ignores_a_proxy_from_the_environment(
    sandbox: RunningSandbox,
    recorders: tuple[_Recorder, _Recorder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target, proxy = recorders
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sandbox.control.add_gorgias_account("acme", "t")
    stored = sandbox.control.insert_integration(
        "acme",
        {
            "name": "Together",
            "type": "http",
            "http": {"url": target.url + "/gorgias/events", "method": "POST", "form": {}},
        },
    )
    assert sandbox.control.fire("acme", stored["id"], {"id": 1})["status"] == 200
    assert target.paths == ["/gorgias/events"]
    assert proxy.paths == []


# -- gorgias: an error that echoes the integration's header value shows its fingerprint ------


@pytest.mark.parametrize("status", [400, 422, 500])
@pytest.mark.parametrize("update", [False, True])
def test_gorgias_error_echoing_the_event_token_is_redacted(status: int, update: bool) -> None:
    from together_reconcile.gorgias.client import BearerAuth, GorgiasClient, GorgiasError
    from together_reconcile.secrets import fingerprint

    event_token = "v1." + SECRET_MARK

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            json={
                "error": {
                    "msg": f"header value {event_token} is not allowed",
                    "data": {"http": {"headers": {"X-Together-Token": [event_token]}}},
                }
            },
        )

    body = {"name": "x", "type": "http", "http": {"headers": {"X-Together-Token": event_token}}}
    with (
        GorgiasClient(
            "acme.gorgias.com",
            BearerAuth("gorgias-token"),
            base_url_template="http://127.0.0.1:9/{account}",
            transport=httpx.MockTransport(answer),
            sleep=lambda _s: None,
            max_retries=0,
        ) as client,
        pytest.raises(GorgiasError) as caught,
    ):
        if update:
            client.update_integration(7, body)
        else:
            client.create_integration(body)
    error = caught.value
    assert SECRET_MARK not in str(error) and SECRET_MARK not in error.message
    assert SECRET_MARK not in repr(error.args) and SECRET_MARK not in repr(error.data)
    if status != 500:
        assert fingerprint(event_token) in str(error)


# -- handler: account_domain with a trailing newline is not a domain (`$` allowed it) ---------


@pytest.mark.parametrize("domain", ["acme.gorgias.com\n", "acme.gorgias.com\r\n"])
def test_account_domain_with_a_trailing_newline_is_refused(domain: str) -> None:
    from together_reconcile.events.app import HttpError, parse_event

    body = json.dumps({"ticket_id": 1, "account_domain": domain, "customer_email": None})
    with pytest.raises(HttpError) as caught:
        parse_event(body.encode())
    assert (caught.value.status, caught.value.code) == (400, "invalid_account_domain")


# -- render: text from Gorgias can neither drive the terminal nor break the Markdown block ----

HOSTILE = "bad\x1b[2J\x1b]0;pwned\x07 \x9b31m\n```\n<img src=https://evil.example/x>\u2028end"


def _hostile_plan() -> Any:
    from together_reconcile.reconcile.plan import (
        AccountPlan,
        FieldDiff,
        Plan,
        ResourcePlan,
        blocked,
    )

    failing = blocked("acme.gorgias.com", "gorgias_error", message=HOSTILE)
    changed = AccountPlan(
        gorgias_account="beta.gorgias.com",
        action="update",
        resources=(
            ResourcePlan(
                kind="integration",
                id=1,
                action="update",
                diff=(FieldDiff("name", "x\x9b2J", "Together"),),
            ),
        ),
        notes=(HOSTILE,),
    )
    return Plan(accounts=(failing, changed))


def test_render_text_has_no_control_characters_from_gorgias() -> None:
    from together_reconcile.reconcile.render import render_text

    text = render_text(_hostile_plan(), show_in_sync=True)
    lines = text.splitlines()
    assert not any(ch in text for ch in "\x1b\x07\x9b\u2028")
    assert any(
        line.startswith("! acme.gorgias.com: blocked (gorgias_error: bad ") for line in lines
    )
    assert "\\u009b2J" in text  # a value's C1 character is shown escaped


def test_render_markdown_keeps_gorgias_text_inside_its_block() -> None:
    from together_reconcile.reconcile.render import render_markdown

    text = render_markdown(_hostile_plan())
    assert not any(ch in text for ch in "\x1b\x07\x9b\u2028")
    fences = [line for line in text.splitlines() if line.lstrip().startswith("```")]
    assert fences == ["```diff", "```"]
