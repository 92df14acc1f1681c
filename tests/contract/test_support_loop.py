"""SPEC "The support loop": `status`, `verify`, `apply --only/--verify/--verify-wait`, the
verification request, and going live after a late connect (the OAuth callback dispatching the
apply workflow through a GitHub stand-in on a loopback port).

Real processes and sockets throughout: the installed CLI, `together-reconcile serve`
(gunicorn), the sandbox process, the GitHub stand-in, SQLite files. Each test names the SPEC
line it holds; the workflow lines (hourly backstop, the pull-request comment) are run from
`.github/workflows/apply.yml` itself in `tests/test_workflow_support_steps.py` and pinned here
too.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.contract.conftest import (
    OAUTH_CLIENT_ID,
    OAUTH_CLIENT_SECRET,
    PUBLIC_URL,
    REPO,
    SHOPIFY_TOKEN,
    SandboxProcess,
    Served,
    World,
    keep_output,
    remember_secret,
    start_serve,
    unique,
)
from tests.contract.test_oauth import authorize, callback
from together_reconcile.sandbox.github import GitHubStandIn
from together_reconcile.verification import VERIFY_EMAIL, VERIFY_TICKET_ID

GITHUB_TOKEN = "github_pat_" + "5c4b3a29" * 5
STATUS_KEYS = {
    "gorgias_account",
    "shopify_store",
    "file",
    "gorgias",
    "shopify",
    "applied",
    "verified",
    "next",
}
NEXT_CODES = {"connect_gorgias", "store_shopify_token", "apply", "verify", "fix_handler", "none"}


# -- set-up: one serve (OAuth on, GitHub dispatch on) over one world, for the module ----------


@dataclass
class Live:
    world: World
    served: Served
    github: GitHubStandIn

    @property
    def url(self) -> str:
        return self.served.url

    def cli(self, *args: str, **env: str) -> Any:
        return self.world.cli(*args, **{"TOGETHER_PUBLIC_URL": self.url, **env})

    def add(self, sub: str, extra: str = "", *, shopify: bool = True, connect: bool = True) -> str:
        """An account file; its Gorgias tokens; its Shopify store and token."""
        self.world.write_account(sub, extra)
        if connect:
            self.world.connect(sub)
        if shopify:
            store_shopify(self.world, sub)
        return f"{sub}.gorgias.com"

    def wait_known(self, domain: str) -> None:
        """Until the handler has reloaded the accounts folder and knows `domain`."""
        token = self.world.keyring.event_token(domain)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = post_event(self.url, domain, token)
            if answer.status_code != 404 or "unknown_account" not in answer.text:
                return
            time.sleep(0.2)
        raise AssertionError(f"the handler never learned {domain}")


def store_shopify(world: World, sub: str, token: str = SHOPIFY_TOKEN) -> None:
    world.sandbox.control.add_shopify_store(sub, token)
    line = json.dumps({"access_token": token})
    done = world.cli("credentials", "put", "shopify", f"{sub}.myshopify.com", stdin=line)
    assert done.code == 0, done.output


def post_event(url: str, domain: str, token: str) -> httpx.Response:
    body = {"ticket_id": VERIFY_TICKET_ID, "account_domain": domain, "customer_email": VERIFY_EMAIL}
    answer = httpx.post(
        url + "/gorgias/events", json=body, headers={"X-Together-Token": token}, timeout=15
    )
    keep_output(answer.text)
    return answer


@pytest.fixture(scope="module")
def live(
    sandbox_process: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("support")
    world = World(sandbox_process, root)
    world.write_account(unique("seed"))  # the handler needs a valid folder to start
    remember_secret(GITHUB_TOKEN, SHOPIFY_TOKEN, OAUTH_CLIENT_SECRET)
    sandbox_process.control.set_oauth_client(OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET)
    with ExitStack() as stack:
        github = stack.enter_context(GitHubStandIn(GITHUB_TOKEN))
        env = {
            "TOGETHER_PUBLIC_URL": PUBLIC_URL,
            "TOGETHER_GORGIAS_URL": world.sandbox.gorgias_url,
            "TOGETHER_GORGIAS_CLIENT_ID": OAUTH_CLIENT_ID,
            "TOGETHER_GORGIAS_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
            "TOGETHER_GITHUB_REPOSITORY": github.repository,
            "TOGETHER_GITHUB_TOKEN": GITHUB_TOKEN,
            "TOGETHER_GITHUB_API_URL": github.url,
        }
        handler = start_serve(stack, world, root, env)
        yield Live(world, Served(handler, world, {}), github)
        keep_output(handler.stderr())


def by_domain(result: Any) -> dict[str, dict[str, Any]]:
    return {a["gorgias_account"]: a for a in result.json()["accounts"]}


def applied_and_verified(live: Live, sub: str) -> str:
    domain = live.add(sub)
    applied = live.cli("apply", "--yes", "--account", domain, "--verify", "--verify-wait", "15")
    assert applied.code == 0, applied.output
    return domain


# -- small HTTP servers standing in for a handler that misbehaves ----------------------------


class FakeHandler:
    """Answers every request with `status` and `body`, keeping what it received."""

    def __init__(self, status: int = 200, body: bytes = b"{}") -> None:
        self.status, self.body = status, body
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.received.append((self.command, self.path, headers, raw))
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_handler() -> Iterator[FakeHandler]:
    fake = FakeHandler()
    yield fake
    fake.close()


def world_like(live: Live, tmp_path: Path, *, same_keys: bool = True) -> World:
    """A second accounts folder and store (not the handler's), maybe with the same keys."""
    if same_keys:
        return World(live.world.sandbox, tmp_path, keys=live.world.keys)
    return World(live.world.sandbox, tmp_path)


def applied_in(world: World, sub: str) -> str:
    """In `world`: an account file, Gorgias connected, Shopify token, applied."""
    world.write_account(sub)
    world.connect(sub)
    store_shopify(world, sub)
    done = world.cli("apply", "--yes")
    assert done.code == 0, done.output
    return f"{sub}.gorgias.com"


# == status ==================================================================================


def test_status_one_line_per_file_and_managed_account_with_file_state(
    live: Live, tmp_path: Path
) -> None:
    """status: files and managed accounts; file enabled / disabled / removed."""
    world = world_like(live, tmp_path)
    on, off, gone = unique("son"), unique("soff"), unique("sgone")
    for sub in (on, off, gone):
        applied_in(world, sub)
    world.write_account(off, "enabled: false\n")
    (world.accounts_dir / f"{gone}.yaml").unlink()
    done = world.cli("status")
    assert done.code == 0, done.output
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    line = {
        sub: next(x for x in lines if x.startswith(f"{sub}.gorgias.com "))
        for sub in (on, off, gone)
    }
    assert (
        "file=enabled" in line[on] and "file=disabled" in line[off] and "file=removed" in line[gone]
    )
    documents = by_domain(world.cli("status", "--json"))
    assert [documents[f"{s}.gorgias.com"]["file"] for s in (on, off, gone)] == [
        "enabled",
        "disabled",
        "removed",
    ]
    assert documents[f"{off}.gorgias.com"]["next"]["code"] == "apply"  # ours is still there
    assert documents[f"{gone}.gorgias.com"]["shopify_store"] is None


def test_status_json_has_exactly_the_spec_shape(live: Live) -> None:
    """status --json: {"accounts": [{gorgias_account, shopify_store, file, gorgias, shopify,
    applied: {integration_id, widget_id, at, commit} | null, verified: {result, code?, at} |
    null, next: {code, message}}]}."""
    domain = applied_and_verified(live, unique("sjson"))
    fresh = live.add(unique("sfresh"), connect=False, shopify=False)
    document = live.cli("status", "--json", "--account", domain, "--account", fresh).json()
    assert set(document) == {"accounts"}
    entries = {a["gorgias_account"]: a for a in document["accounts"]}
    assert set(entries) == {domain, fresh}
    done = entries[domain]
    assert set(done) == STATUS_KEYS
    assert done["shopify_store"] == domain.replace(".gorgias.com", ".myshopify.com")
    assert (done["file"], done["gorgias"], done["shopify"]) == ("enabled", "connected", "stored")
    assert set(done["applied"]) == {"integration_id", "widget_id", "at", "commit"}
    integration = live.world.ours(domain.split(".")[0])[0]
    assert done["applied"]["integration_id"] == integration["id"]
    assert isinstance(done["applied"]["widget_id"], int)
    assert done["verified"]["result"] == "ok" and set(done["verified"]) == {"result", "at"}
    assert done["next"]["code"] == "none"
    assert "tell the merchant" in done["next"]["message"]
    new = entries[fresh]
    assert set(new) == STATUS_KEYS
    assert (new["gorgias"], new["shopify"], new["applied"], new["verified"]) == (
        "not_connected",
        "missing",
        None,
        None,
    )


def test_status_next_connect_gorgias_carries_the_install_link(live: Live) -> None:
    sub = unique("sconn")
    domain = live.add(sub, connect=False)
    entry = by_domain(live.cli("status", "--json", "--account", domain))[domain]
    assert entry["gorgias"] == "not_connected"
    assert entry["next"]["code"] == "connect_gorgias"
    assert f"{live.url}/oauth/gorgias/install?account={sub}" in entry["next"]["message"]
    text = live.cli("status", "--account", domain).stdout
    assert f"/oauth/gorgias/install?account={sub}" in text


def test_status_gorgias_shows_the_blocked_reason_reconnect_needed(live: Live) -> None:
    sub = unique("srecon")
    domain = live.add(sub)
    from together_reconcile.store import Store

    with Store.open(live.world.state_url, live.world.keyring) as store:
        assert store.mark_reconnect_needed("gorgias", domain)
    entry = by_domain(live.cli("status", "--json", "--account", domain))[domain]
    assert entry["gorgias"] == "reconnect_needed"
    assert entry["next"]["code"] == "connect_gorgias"


def test_status_next_store_shopify_token_names_the_command(live: Live) -> None:
    domain = live.add(unique("sshop"), shopify=False)
    entry = by_domain(live.cli("status", "--json", "--account", domain))[domain]
    assert entry["shopify"] == "missing"
    assert entry["next"]["code"] == "store_shopify_token"
    store = domain.replace(".gorgias.com", ".myshopify.com")
    assert f"together-reconcile credentials put shopify {store}" in entry["next"]["message"]


def test_status_next_apply_then_verify_then_none(live: Live) -> None:
    domain = live.add(unique("sflow"))
    assert by_domain(live.cli("status", "--json"))[domain]["next"]["code"] == "apply"
    assert live.cli("apply", "--yes", "--account", domain).code == 0
    assert by_domain(live.cli("status", "--json"))[domain]["next"]["code"] == "verify"
    live.wait_known(domain)
    assert live.cli("verify", "--account", domain).code == 0
    entry = by_domain(live.cli("status", "--json"))[domain]
    assert entry["next"]["code"] == "none" and entry["verified"]["result"] == "ok"


def test_status_next_fix_handler_after_a_failed_verification(live: Live, tmp_path: Path) -> None:
    world = world_like(live, tmp_path, same_keys=False)  # the handler has other keys
    domain = applied_in(world, unique("sfix"))
    failed = world.cli("verify", TOGETHER_PUBLIC_URL=live.url)
    assert failed.code == 1
    entry = by_domain(world.cli("status", "--json"))[domain]
    assert entry["verified"]["result"] == "failed" and entry["verified"]["code"] == "invalid_token"
    assert entry["next"]["code"] == "fix_handler"
    assert "TOGETHER_SECRET_KEYS" in entry["next"]["message"]
    assert {
        e["next"]["code"] for e in world.cli("status", "--json").json()["accounts"]
    } <= NEXT_CODES


def test_status_reads_files_and_store_only_no_network(live: Live, tmp_path: Path) -> None:
    """status: no network — Gorgias, Shopify and the handler all unreachable, same answer."""
    world = world_like(live, tmp_path)
    domain = applied_in(world, unique("snet"))
    control = world.sandbox.control
    control.clear_requests()
    dead = "http://127.0.0.1:9"
    started = time.monotonic()
    done = world.cli(
        "status",
        "--json",
        TOGETHER_GORGIAS_URL=dead + "/{account}",
        TOGETHER_SHOPIFY_URL=dead + "/{store}",
        TOGETHER_PUBLIC_URL=dead,
    )
    assert done.code == 0, done.output
    assert time.monotonic() - started < 10
    assert by_domain(done)[domain]["next"]["code"] == "verify"
    assert [r for r in control.requests() if r.get("account") == domain.split(".")[0]] == []


def test_status_exits_1_when_the_store_is_unreadable(live: Live, tmp_path: Path) -> None:
    broken = tmp_path / "state.db"
    broken.write_bytes(b"this is not a database" * 100)
    done = live.world.cli("status", TOGETHER_STATE_URL=f"sqlite:///{broken}")
    assert done.code == 1
    assert done.stderr.startswith("Error: ")
    assert done.stdout == ""


def test_status_refuses_an_unknown_account_as_plan_does(live: Live) -> None:
    done = live.world.cli("status", "--account", "Nobody.gorgias.com")
    assert done.code == 1
    assert done.stderr == (
        "Error: unknown account(s): nobody.gorgias.com: no file in the accounts folder and "
        "not managed by together-reconcile\n"
    )
    assert done.stdout == ""


# == verify ==================================================================================


def test_verify_makes_the_call_gorgias_makes(
    live: Live, tmp_path: Path, fake_handler: FakeHandler
) -> None:
    """Verification request: POST {TOGETHER_PUBLIC_URL}/gorgias/events, X-Together-Token of
    the account's current key, the reserved body."""
    world = world_like(live, tmp_path)
    domain = applied_in(world, unique("vcall"))
    world.cli("verify", TOGETHER_PUBLIC_URL=fake_handler.url)
    ((method, path, headers, raw),) = fake_handler.received
    assert (method, path) == ("POST", "/gorgias/events")
    assert headers["content-type"] == "application/json"
    assert headers["x-together-token"] == world.keyring.event_token(domain)
    assert json.loads(raw) == {
        "ticket_id": "together-verify",
        "account_domain": domain,
        "customer_email": "verify@together-reconcile.invalid",
    }


def test_verify_ok_against_a_running_serve_is_recorded(live: Live) -> None:
    """verify: each enabled, applied account; ok = 200 with the answer's shape (Shopify was
    asked); recorded in the store; exit 0."""
    sub = unique("vok")
    domain = live.add(sub)
    assert live.cli("apply", "--yes", "--account", domain).code == 0
    live.wait_known(domain)
    control = live.world.sandbox.control
    control.clear_requests()
    done = live.cli("verify", "--json", "--account", domain)
    assert done.code == 0, done.output
    (entry,) = done.json()["accounts"]
    assert set(entry) == {"gorgias_account", "result", "seconds"}
    assert (entry["gorgias_account"], entry["result"]) == (domain, "ok")
    assert 0 < entry["seconds"] < 10
    asked = [r for r in control.requests() if r["target"] == "shopify"]
    assert asked, "the handler did not ask Shopify"
    recorded = by_domain(live.cli("status", "--json", "--account", domain))[domain]["verified"]
    assert recorded["result"] == "ok"


def test_verify_checks_only_enabled_applied_accounts(live: Live, tmp_path: Path) -> None:
    world = world_like(live, tmp_path)
    applied = applied_in(world, unique("vapp"))
    world.write_account(unique("vnew"))  # not applied
    off = applied_in(world, unique("voff"))
    world.write_account(off.split(".")[0], "enabled: false\n")
    done = world.cli("verify", "--json", TOGETHER_PUBLIC_URL=live.url)
    # the handler does not know this world's accounts: each checked one fails, but only one
    assert [a["gorgias_account"] for a in done.json()["accounts"]] == [applied]


def test_verify_json_shape_and_exit_1_when_any_failed(live: Live, tmp_path: Path) -> None:
    """verify --json: {"accounts": [{gorgias_account, result, code?, seconds}]}; exit 1."""
    world = world_like(live, tmp_path)
    domain = applied_in(world, unique("vfail"))
    done = world.cli("verify", "--json", TOGETHER_PUBLIC_URL=live.url)
    assert done.code == 1
    assert done.json() == {
        "accounts": [
            {
                "gorgias_account": domain,
                "result": "failed",
                "code": "unknown_account",  # the handler's own error code
                "seconds": done.json()["accounts"][0]["seconds"],
            }
        ]
    }


def test_verify_failed_with_the_handlers_error_code_invalid_token(
    live: Live, tmp_path: Path
) -> None:
    world = world_like(live, tmp_path, same_keys=False)
    applied_in(world, unique("vkey"))
    done = world.cli("verify", "--json", TOGETHER_PUBLIC_URL=live.url)
    assert done.code == 1
    assert done.json()["accounts"][0]["code"] == "invalid_token"


def test_verify_failed_shopify_not_connected_when_no_shopify_token(live: Live) -> None:
    sub = unique("vnoshop")
    domain = live.add(sub, shopify=False)
    assert live.cli("apply", "--yes", "--account", domain).code == 0
    live.wait_known(domain)
    done = live.cli("verify", "--json", "--account", domain)
    assert done.code == 1
    assert done.json()["accounts"][0]["code"] == "shopify_not_connected"


def test_verify_failed_when_shopify_refuses_the_token(live: Live) -> None:
    sub = unique("vrefused")
    domain = live.add(sub, shopify=False)
    live.world.sandbox.control.add_shopify_store(sub, SHOPIFY_TOKEN)
    stale = json.dumps({"access_token": "shpat_" + "ab" * 16})  # not the store's token
    put = live.world.cli("credentials", "put", "shopify", f"{sub}.myshopify.com", stdin=stale)
    assert put.code == 0
    assert live.cli("apply", "--yes", "--account", domain).code == 0
    live.wait_known(domain)
    done = live.cli("verify", "--json", "--account", domain)
    assert done.code == 1
    assert done.json()["accounts"][0]["code"] == "shopify_unauthorized"


def test_verify_unreachable(live: Live, tmp_path: Path) -> None:
    world = world_like(live, tmp_path)
    applied_in(world, unique("vunr"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    done = world.cli("verify", "--json", TOGETHER_PUBLIC_URL=f"http://127.0.0.1:{port}")
    assert done.code == 1
    assert done.json()["accounts"][0]["code"] == "unreachable"


def test_verify_tls_error(live: Live, tmp_path: Path) -> None:
    """https to a server that answers in plain text: the TLS handshake fails, tls_error."""
    world = world_like(live, tmp_path)
    applied_in(world, unique("vtls"))
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(8)

    def answer_plain_text() -> None:
        while True:
            try:
                conn, _ = plain.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer_plain_text, daemon=True).start()
    try:
        done = world.cli(
            "verify", "--json", TOGETHER_PUBLIC_URL=f"https://127.0.0.1:{plain.getsockname()[1]}"
        )
    finally:
        plain.close()
    assert done.code == 1
    assert done.json()["accounts"][0]["code"] == "tls_error"


def test_verify_timeout_is_bounded(live: Live, tmp_path: Path) -> None:
    """A handler that accepts the connection and never answers: timeout, in bounded time."""
    world = world_like(live, tmp_path)
    applied_in(world, unique("vslow"))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nobody answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        done = world.cli("verify", "--json", "--verify-timeout", "1", TOGETHER_PUBLIC_URL=url)
        took = time.monotonic() - started
    assert done.code == 1
    assert done.json()["accounts"][0]["code"] == "timeout"
    assert took < 15  # the CLI's own start included


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"{}"),  # a handler that did not ask Shopify
        (200, b"<html>a login page</html>"),
        (
            200,
            b'{"shopify_store": "other.myshopify.com", "lookback_days": 60, '
            b'"final_sale_order_count": 0, "final_sale_orders": []}',
        ),
        (502, b"Bad Gateway"),
    ],
)
def test_verify_bad_answer(
    live: Live, tmp_path: Path, fake_handler: FakeHandler, status: int, body: bytes
) -> None:
    world = world_like(live, tmp_path)
    applied_in(world, unique("vbad"))
    fake_handler.status, fake_handler.body = status, body
    done = world.cli("verify", "--json", TOGETHER_PUBLIC_URL=fake_handler.url)
    assert done.code == 1
    assert done.json()["accounts"][0]["code"] == "bad_answer"


def test_verify_at_most_one_in_flight_per_account(live: Live, tmp_path: Path) -> None:
    """Two verifications of one account at once: the handler sees one request."""
    world = world_like(live, tmp_path)
    domain = applied_in(world, unique("vone"))
    received: list[float] = []

    class Slow(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(time.monotonic())
            time.sleep(1.5)
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        results: list[Any] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(
                    world.cli("verify", "--json", TOGETHER_PUBLIC_URL=url)
                )
            )
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.3)
        for thread in threads:
            thread.join(60)
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1
    assert [r.json()["accounts"][0]["code"] for r in results] == ["bad_answer", "bad_answer"]
    assert by_domain(world.cli("status", "--json"))[domain]["verified"]["code"] == "bad_answer"


# == apply --only / --account / --verify / --verify-wait =====================================


def test_apply_only_create_leaves_the_others_and_shows_them_skipped(
    live: Live, tmp_path: Path
) -> None:
    world = world_like(live, tmp_path)
    existing, new = unique("oold"), unique("onew")
    applied_in(world, existing)
    world.write_account(existing, "widget:\n  title: Final sale\n")  # an update
    world.write_account(new)
    world.connect(new)
    writes_before = len(world.writes(existing))
    done = world.cli("apply", "--yes", "--only", "create")
    assert done.code == 0, done.output
    assert f"{existing}.gorgias.com: update skipped" in done.stdout
    assert f"{new}.gorgias.com: create done" in done.stdout
    assert "1 skipped" in done.stdout
    assert len(world.writes(existing)) == writes_before  # left as it was
    assert world.ours(new)


def test_apply_only_rejects_an_unknown_action(live: Live) -> None:
    done = live.world.cli("apply", "--yes", "--only", "create,rename")
    assert done.code == 1
    assert "rename is not an action: use create, update, delete" in done.stderr


def test_apply_account_applies_only_that_account(live: Live, tmp_path: Path) -> None:
    world = world_like(live, tmp_path)
    one, other = unique("aone"), unique("aother")
    for sub in (one, other):
        world.write_account(sub)
        world.connect(sub)
    done = world.cli("apply", "--yes", "--account", f"{one}.gorgias.com")
    assert done.code == 0, done.output
    assert world.ours(one) and not world.ours(other)


def test_apply_verify_verifies_each_account_it_created(live: Live) -> None:
    sub = unique("avok")
    domain = live.add(sub)
    live.wait_known(domain)
    done = live.cli("apply", "--yes", "--verify", "--account", domain)
    assert done.code == 0, done.output
    assert f"{domain}: ok" in done.stdout
    assert (
        by_domain(live.cli("status", "--json", "--account", domain))[domain]["next"]["code"]
        == "none"
    )


def test_apply_verify_failed_verification_exits_1(live: Live) -> None:
    sub = unique("avfail")
    domain = live.add(sub, shopify=False)
    live.wait_known(domain)
    done = live.cli("apply", "--yes", "--verify", "--verify-wait", "0", "--account", domain)
    assert done.code == 1
    assert f"{domain}: FAILED shopify_not_connected" in done.stdout
    assert live.world.ours(sub), "the apply itself was done"


def test_apply_verify_waits_for_a_handler_that_does_not_know_the_account_yet(
    live: Live, tmp_path: Path
) -> None:
    """--verify-wait: the handler's checkout catches up while apply waits."""
    world = world_like(live, tmp_path)
    world.state_url = live.world.state_url  # the handler's store: Shopify token found there
    sub = unique("await")
    world.write_account(sub)
    world.connect(sub)
    store_shopify(world, sub)

    def catch_up() -> None:
        time.sleep(3)
        live.world.write_account(sub)  # the handler's folder gets the file later

    later = threading.Thread(target=catch_up)
    later.start()
    started = time.monotonic()
    done = world.cli(
        "apply",
        "--yes",
        "--verify",
        "--verify-wait",
        "30",
        "--account",
        f"{sub}.gorgias.com",
        TOGETHER_PUBLIC_URL=live.url,
    )
    later.join()
    assert done.code == 0, done.output
    assert f"{sub}.gorgias.com: ok" in done.stdout
    assert 3 <= time.monotonic() - started < 30


def test_apply_verify_wait_gives_up_and_reports_unknown_account(live: Live, tmp_path: Path) -> None:
    world = world_like(live, tmp_path)
    sub = unique("agive")
    world.write_account(sub)
    world.connect(sub)
    started = time.monotonic()
    done = world.cli(
        "apply", "--yes", "--verify", "--verify-wait", "3", TOGETHER_PUBLIC_URL=live.url
    )
    took = time.monotonic() - started
    assert done.code == 1
    assert f"{sub}.gorgias.com: FAILED unknown_account" in done.stdout
    assert 3 <= took < 20


# == going live after a late connect =========================================================


def connect_through_oauth(live: Live, sub: str) -> httpx.Response:
    params = authorize(live.served, sub)
    started = time.monotonic()
    page = callback(live.served, params)
    page.elapsed_total = time.monotonic() - started  # type: ignore[attr-defined]
    return page


def test_late_connect_dispatches_the_apply_workflow_for_that_account(live: Live) -> None:
    sub = unique("lconn")
    domain = live.add(sub, connect=False)
    live.wait_known(domain)
    live.github.dispatch_mode = "ok"
    before = len(live.github.dispatches)
    page = connect_through_oauth(live, sub)
    assert page.status_code == 200, page.text
    assert "appear in Gorgias within a few minutes" in page.text
    assert live.github.dispatches[before:] == [
        {"workflow": "apply.yml", "ref": "main", "inputs": {"account": domain}}
    ]
    (request,) = [
        r
        for r in live.github.requests
        if r.path.endswith("/dispatches") and r.body["inputs"]["account"] == domain
    ]
    assert request.path == "/repos/together/accounts/actions/workflows/apply.yml/dispatches"
    assert request.headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    # what the dispatched run does: apply that one account, verified
    run = live.cli("apply", "--account", domain, "--yes", "--verify")
    assert run.code == 0, run.output
    assert f"{domain}: ok" in run.stdout
    assert (
        by_domain(live.cli("status", "--json", "--account", domain))[domain]["next"]["code"]
        == "none"
    )


def test_late_connect_never_dispatches_for_an_account_without_a_file(live: Live) -> None:
    sub = unique("lnofile")
    before = len(live.github.requests)
    page = connect_through_oauth(live, sub)
    assert page.status_code == 200, page.text
    assert "support will tell you" in page.text
    assert [r for r in live.github.requests[before:] if r.path.endswith("/dispatches")] == []


def test_late_connect_never_dispatches_for_a_disabled_file(live: Live) -> None:
    sub = unique("ldis")
    domain = live.add(sub, "enabled: false\n", connect=False, shopify=False)
    live.wait_known(domain)
    before = len(live.github.requests)
    page = connect_through_oauth(live, sub)
    assert page.status_code == 200, page.text
    assert [r for r in live.github.requests[before:] if r.path.endswith("/dispatches")] == []


@pytest.mark.parametrize("mode", ["error", "hang", "refused"])
def test_late_connect_a_failed_dispatch_never_fails_the_callback(live: Live, mode: str) -> None:
    """GitHub answering 500, too slow, or refusing the token: the callback still stores the
    tokens and answers 200 within a few seconds; the failure is logged without the token."""
    sub = unique(f"lf{mode[:3]}")
    domain = live.add(sub, connect=False)
    live.wait_known(domain)
    token = live.github.token
    live.github.dispatch_mode = "ok" if mode == "refused" else mode
    live.github.hang_s = 8
    if mode == "refused":
        live.github.token = "another-token"
    try:
        page = connect_through_oauth(live, sub)
    finally:
        live.github.dispatch_mode, live.github.token = "ok", token
    assert page.status_code == 200, page.text
    assert page.elapsed_total < 6  # type: ignore[attr-defined]
    assert "appear in Gorgias within the hour" in page.text
    status = by_domain(live.cli("status", "--json", "--account", domain))[domain]
    assert status["gorgias"] == "connected"
    time.sleep(0.3)
    log = live.served.handler.stderr()
    keep_output(log)
    failed = [line for line in log.splitlines() if "dispatch for " + domain in line]
    assert failed and "failed" in failed[-1]
    assert GITHUB_TOKEN not in log


# == the workflows: hourly backstop and the pull-request comment ============================


def apply_workflow() -> dict[str, Any]:
    return yaml.safe_load((REPO / ".github" / "workflows" / "apply.yml").read_text("utf-8"))


def test_apply_workflow_runs_hourly_with_only_create_and_verify() -> None:
    document = apply_workflow()
    triggers = document.get("on") or document.get(True)
    crons = [entry["cron"] for entry in triggers["schedule"]]
    assert len(crons) == 1 and crons[0].split()[1:] == ["*", "*", "*", "*"]
    scripts = "\n".join(s.get("run", "") for job in document["jobs"].values() for s in job["steps"])
    assert "apply --only create --yes --verify" in scripts


def test_apply_workflow_takes_an_account_input_for_dispatched_runs() -> None:
    document = apply_workflow()
    triggers = document.get("on") or document.get(True)
    assert "account" in triggers["workflow_dispatch"]["inputs"]
    scripts = "\n".join(s.get("run", "") for job in document["jobs"].values() for s in job["steps"])
    # the unattended job `connect` (no reviewer) may only create
    assert 'apply --account "$ACCOUNT" --only create --yes --verify' in scripts


def test_apply_workflow_comments_on_the_pull_request() -> None:
    """After every apply on main: one comment on the pull request that brought the change
    (run against the GitHub stand-in in tests/test_workflow_support_steps.py)."""
    document = apply_workflow()
    comment_jobs = [
        job
        for job in document["jobs"].values()
        if "pull-requests" in (job.get("permissions") or {})
    ]
    assert len(comment_jobs) == 1
    (job,) = comment_jobs
    assert job["permissions"]["pull-requests"] == "write"
    assert "environment" not in job  # no secret next to the GitHub token that may comment
