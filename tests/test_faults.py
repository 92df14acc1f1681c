"""The handler keeps its promises while things break (issue 13; issue 15 item 1): real `serve`
processes, a PostgreSQL of the test's own that is frozen and stopped under load, signals,
account-file changes and slow clients. Every non-200 answer and connection error is counted,
and `/readyz` is checked against what is true."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.faults_helpers import (
    Load,
    OwnPostgres,
    Probe,
    Served,
    postgres_bin,
    run_serve,
    wait_until,
)
from tests.handler_helpers import SHOPIFY_TOKEN
from together_reconcile.events.app import Settings, create_app
from together_reconcile.events.logs import EMAIL_HASH_KEY_LABEL, email_hash
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Credential, Store

KEYS = generate_key()
KEYRING = Keyring.from_env(KEYS)
WARM = ["acme", "beta"]
COLD = "cold"
EMAIL = "jane@example.com"
FAST_ARGS = ("--workers", "2", "--threads", "8", "--graceful-timeout", "10", "--keep-alive", "2")


@pytest.fixture(scope="module")
def pg() -> Iterator[OwnPostgres]:
    folder = postgres_bin()
    if folder is None:
        reason = "PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = OwnPostgres(folder)
    try:
        yield server
    finally:
        server.close()


def account_yaml(name: str) -> str:
    return f"shopify_store: {name}.myshopify.com\ngorgias_account: {name}.gorgias.com\n"


@dataclass
class World:
    accounts: Path
    state_url: str
    shopify_url: str
    tmp: Path

    def serve(self, *args: str, env: dict[str, str] | None = None) -> object:
        return run_serve(
            self.tmp,
            accounts_dir=self.accounts,
            state_url=self.state_url,
            secret_keys=KEYS,
            shopify_url=self.shopify_url,
            args=args,
            env={"TOGETHER_CREDENTIAL_TTL": "1", **(env or {})},
        )


def event(name: str) -> tuple[str, str, str]:
    domain = f"{name}.gorgias.com"
    return domain, KEYRING.event_token(domain), EMAIL


def post(served: Served, name: str, timeout: float = 10) -> httpx.Response:
    domain, token, email = event(name)
    return httpx.post(
        served.url + "/gorgias/events",
        json={"ticket_id": 1, "account_domain": domain, "customer_email": email},
        headers={"X-Together-Token": token},
        timeout=timeout,
    )


def make_world(tmp: Path, state_url: str, sandbox: RunningSandbox) -> World:
    accounts = tmp / "accounts"
    accounts.mkdir()
    names = [*WARM, COLD, "newco"]
    for name in [*WARM, COLD]:
        (accounts / f"{name}.yaml").write_text(account_yaml(name))
    with Store.open(state_url, KEYRING) as store:
        for name in names:
            store.put_credential(Credential("shopify", f"{name}.myshopify.com", SHOPIFY_TOKEN))
    for name in names:
        sandbox.control.add_shopify_store(name, SHOPIFY_TOKEN)
    return World(accounts, state_url, sandbox.shopify_url_template, tmp)


@pytest.fixture
def pg_world(tmp_path: Path, pg: OwnPostgres, sandbox: RunningSandbox) -> World:
    return make_world(tmp_path, pg.url, sandbox)


@pytest.fixture
def sqlite_world(tmp_path: Path, sandbox: RunningSandbox) -> World:
    return make_world(tmp_path, f"sqlite:///{tmp_path}/state.db", sandbox)


def warm_load(served: Served, **kw: object) -> Load:
    return Load(served.url, [event(name) for name in WARM], **kw)  # type: ignore[arg-type]


def describe(load: Load) -> str:
    failures = load.failures()
    return f"{len(failures)} failures of {len(load.outcomes)}: {failures[:5]}"


# -- the database hangs or stops --------------------------------------------------------------


@pytest.mark.slow
def test_database_frozen_loses_no_warm_event_and_answers_in_time(
    pg_world: World, pg: OwnPostgres
) -> None:
    with (
        pg_world.serve(*FAST_ARGS) as served,  # type: ignore[attr-defined]
        Probe(served.url, "/readyz") as ready,
        Probe(served.url, "/healthz") as health,
        warm_load(served, clients=4) as load,
    ):
        warm_at = load.wait_settled()  # every warm token read once, on every worker
        frozen_at = time.monotonic()
        pg.freeze()
        try:
            (pg_world.accounts / "newco.yaml").write_text(account_yaml("newco"))
            time.sleep(2.0)  # past the 1 s credential TTL: tokens are now served stale
            never = post(served, COLD)  # configured, never asked for: prefetched at start
            started = time.monotonic()
            cold = post(served, "newco")  # added during the outage: its token was never read
            cold_seconds = time.monotonic() - started
            time.sleep(2.0)
        finally:
            pg.thaw()
        thawed_at = time.monotonic()
        recovery = wait_until(lambda: ready.last_status() == 200, 10)
        time.sleep(0.5)
    assert load.failures(since=warm_at) == [], describe(load)
    assert len(load.outcomes) > 100
    assert load.max_seconds() < 6.0
    assert (cold.status_code, cold.json()["error"]["code"]) == (503, "store_unavailable")
    assert never.status_code == 200, never.text
    assert cold_seconds < 2.0
    assert 503 in ready.statuses(frozen_at + 1.5, thawed_at), ready.seen
    assert ready.slowest() < 2.0
    assert health.slowest() < 2.0  # never waits for the store (a new connection each time)
    assert recovery < 5.0
    lines = served.log_lines()
    reasons = [line["reason"] for line in lines if line.get("event") == "store_unavailable"]
    assert any("did not answer within" in r for r in reasons), reasons
    stale = [line for line in lines if line.get("credential_stale_s") is not None]
    assert stale and all(line["status"] == 200 for line in stale)
    assert not [line for line in lines if line.get("error") == "shopify_timeout"]


@pytest.mark.slow
def test_database_stopped_loses_no_warm_event(pg_world: World, pg: OwnPostgres) -> None:
    with (
        pg_world.serve(*FAST_ARGS) as served,  # type: ignore[attr-defined]
        Probe(served.url, "/readyz") as ready,
        warm_load(served, clients=4) as load,
    ):
        warm_at = load.wait_settled()
        stopped_at = time.monotonic()
        pg.stop("fast")
        try:
            (pg_world.accounts / "newco.yaml").write_text(account_yaml("newco"))
            time.sleep(2.0)
            never = post(served, COLD)
            cold = post(served, "newco")
            time.sleep(2.0)
        finally:
            pg.start()
        started_at = time.monotonic()
        recovery = wait_until(lambda: ready.last_status() == 200, 10)
        time.sleep(0.5)
    assert load.failures(since=warm_at) == [], describe(load)
    assert load.max_seconds() < 6.0
    assert (cold.status_code, cold.json()["error"]["code"]) == (503, "store_unavailable")
    assert never.status_code == 200, never.text
    assert 503 in ready.statuses(stopped_at + 1.0, started_at)
    assert ready.slowest() < 2.0
    assert recovery < 5.0
    reasons = [
        line["reason"] for line in served.log_lines() if line.get("event") == "store_unavailable"
    ]
    assert any(r.endswith(": connection refused") for r in reasons), reasons


# -- signals ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sighup_and_max_requests_restarts_lose_nothing(sqlite_world: World) -> None:
    args = (*FAST_ARGS, "--max-requests", "20", "--max-requests-jitter", "5")
    with (
        sqlite_world.serve(*args) as served,  # type: ignore[attr-defined]
        Probe(served.url, "/readyz") as ready,
        warm_load(served, clients=4) as load,
    ):
        time.sleep(1.0)
        for _ in range(2):
            os.kill(served.process.pid, signal.SIGHUP)
            time.sleep(1.5)
        time.sleep(1.0)
    assert load.failures() == [], describe(load)
    assert len(load.outcomes) > 20
    assert load.max_seconds() < 6.0
    assert set(ready.statuses(0, time.monotonic())) == {200}
    lines = served.log_lines()
    assert len(lines) == len(served.stderr().splitlines()), "every line is JSON"
    assert all({"ts", "level", "pid"} <= set(line) for line in lines)
    assert all(line["ts"][-5] == "." and line["ts"].endswith("Z") for line in lines)
    assert [line for line in lines if line.get("event") == "config_reloaded"]
    restarts = [line for line in lines if "Autorestarting" in line.get("message", "")]
    assert restarts  # max-requests restarts happened too
    assert not [line for line in lines if "was sent" in line.get("message", "")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert requests and all(line.get("request_id") for line in requests)


@pytest.mark.slow
def test_sigterm_fails_readyz_first_then_drains_without_losing_a_request(
    sqlite_world: World, sandbox: RunningSandbox
) -> None:
    sandbox.control.set_latency(shopify_ms=150)  # requests are in flight when it comes
    args = (*FAST_ARGS, "--drain-delay", "1")
    with (
        sqlite_world.serve(*args) as served,  # type: ignore[attr-defined]
        Probe(served.url, "/readyz", interval_s=0.05) as ready,
        warm_load(served, clients=4, in_rotation=lambda: ready.last_status() == 200) as balanced,
        warm_load(served, clients=4, stop_on_close=True) as stubborn,
    ):
        time.sleep(1.0)
        term_at = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=15)
        exited_at = time.monotonic()
    first_503 = min(t for t, status, _s in ready.seen if t > term_at and status == 503)
    refused = [t for t, status, _s in ready.seen if t > term_at and status is None]
    assert first_503 - term_at < 0.3
    assert not refused or min(refused) > first_503 + 0.9  # the drain delay held
    assert balanced.failures() == [], describe(balanced)
    assert stubborn.failures() == [], describe(stubborn)
    closes = [o for o in stubborn.outcomes if o.closed]
    assert len(closes) == stubborn.clients  # each connection's last answer said close
    assert exited_at - term_at < 10
    assert served.process.returncode == 0
    assert any(line.get("event") == "draining" for line in served.log_lines())


@pytest.mark.slow
def test_sigkill_of_a_worker_is_replaced_and_costs_at_most_its_connections(
    pg_world: World,
) -> None:
    with (
        pg_world.serve(*FAST_ARGS) as served,  # type: ignore[attr-defined]
        Probe(served.url, "/readyz") as ready,
        warm_load(served, clients=4) as load,
    ):
        load.wait_settled()
        victim = served.workers()[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replaced = wait_until(
            lambda: len(served.workers()) == 2 and victim not in served.workers(), 10
        )
        time.sleep(1.5)
    failures = load.failures(since=killed_at - 1)
    assert len(failures) <= load.clients, describe(load)  # only what that worker held
    assert all(o.status is None for o in failures)
    assert load.failures(since=killed_at + replaced + 1.0) == []
    assert load.max_seconds() < 6.0
    assert ready.last_status() == 200


# -- files change -------------------------------------------------------------------------------


@pytest.mark.slow
def test_new_account_file_is_served_within_2_s_without_a_signal(sqlite_world: World) -> None:
    with (
        sqlite_world.serve(*FAST_ARGS) as served,  # type: ignore[attr-defined]
        warm_load(served, clients=3) as load,
    ):
        time.sleep(0.5)
        before = httpx.get(served.url + "/readyz").json()["config"]
        assert post(served, "newco").status_code == 404
        (sqlite_world.accounts / "newco.yaml").write_text(account_yaml("newco"))
        took = wait_until(lambda: post(served, "newco").status_code == 200, 2.0)
        after = httpx.get(served.url + "/readyz").json()["config"]
        (sqlite_world.accounts / "broken.yaml").write_text("shopify_store: [broken\n")
        time.sleep(1.5)
        kept = httpx.get(served.url + "/readyz").json()["config"]
        still = post(served, "newco").status_code
        (sqlite_world.accounts / "broken.yaml").unlink()
        time.sleep(0.5)
    assert load.failures() == [], describe(load)
    assert took < 2.0
    assert (before["accounts"], after["accounts"]) == (3, 4)
    assert before["version"] != after["version"] and after["version"].startswith("sha256:")
    assert kept == after and still == 200  # a broken folder keeps the last good config
    lines = served.log_lines()
    failed = [line for line in lines if line.get("event") == "config_reload_failed"]
    assert failed and failed[0]["kept"]["version"] == after["version"]


# -- slow clients (issue 15 item 1) -----------------------------------------------------------


def _slow_header_client(port: int, stop: threading.Event, closed_after: list[float]) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = [b"POST /gorgias/events HTTP/1.1\r\n", b"Host: x\r\n"]
        lines += [f"X-Slow-{n}: {n}\r\n".encode() for n in range(100)]
        for line in lines:
            if stop.is_set():
                return
            try:
                sock.sendall(line)
                sock.settimeout(0.5)  # one line every half second; notice a close meanwhile
                if sock.recv(1) == b"":
                    closed_after.append(time.monotonic() - started)
                    return
            except TimeoutError:
                continue
            except OSError:
                closed_after.append(time.monotonic() - started)
                return


def _slow_body_client(port: int, stop: threading.Event, closed_after: list[float]) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /gorgias/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        while not stop.is_set():
            try:
                sock.sendall(b" ")
                sock.settimeout(0.5)
                sock.recv(1024)  # an answer (400) or the close: cut off either way
                closed_after.append(time.monotonic() - started)
                return
            except TimeoutError:
                continue
            except OSError:
                closed_after.append(time.monotonic() - started)
                return


@pytest.mark.slow
def test_slow_clients_hold_no_thread_and_are_cut_off(sqlite_world: World) -> None:
    args = ("--workers", "1", "--threads", "4", "--header-timeout", "2")
    with sqlite_world.serve(*args) as served:  # type: ignore[attr-defined]
        stop = threading.Event()
        header_closed: list[float] = []
        body_closed: list[float] = []
        clients = [
            threading.Thread(target=_slow_header_client, args=(served.port, stop, header_closed))
            for _ in range(40)
        ] + [
            threading.Thread(target=_slow_body_client, args=(served.port, stop, body_closed))
            for _ in range(8)
        ]
        for client in clients:
            client.start()
        time.sleep(0.5)
        latencies = []
        for _ in range(15):
            started = time.monotonic()
            assert post(served, "acme", timeout=10).status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)
        wait_until(lambda: len(header_closed) == 40 and len(body_closed) == 8, 10)
        stop.set()
        for client in clients:
            client.join(timeout=5)
    assert max(latencies) < 1.0, latencies
    assert max(header_closed) < 2.0 + 1.5  # the head must be in within --header-timeout
    assert max(body_closed) < 2.0 + 5.0 + 1.5  # the body within the body timeout after it


# -- settings and the email hash ----------------------------------------------------------------


def test_gunicorn_settings_come_from_file_env_and_options_in_that_order(
    sqlite_world: World,
) -> None:
    config = sqlite_world.tmp / "gunicorn.conf.py"
    config.write_text("workers = 4\nkeepalive = 7\nmax_requests = 1000\n")
    env = {"GUNICORN_CMD_ARGS": "--workers 3 --max-requests 500"}
    with sqlite_world.serve(
        "--gunicorn-config", str(config), "--max-requests", "900", "--store-pool-size", "2", env=env
    ) as served:  # type: ignore[attr-defined]
        wait_until(lambda: len(served.workers()) == 3, 10)
        start = next(line for line in served.log_lines() if line.get("event") == "serve_starting")
    assert (start["workers"], start["keep_alive_s"], start["max_requests"]) == (3, 7, 900)
    assert (start["store_pool_size"], start["postgres_connections"]) == (2, 6)
    assert start["accounts"] == 3 and start["version"].startswith("sha256:")


def test_email_hash_is_keyed_by_the_secret_keys_and_stable_across_starts(
    sqlite_world: World,
) -> None:
    settings = Settings(sqlite_world.accounts, sqlite_world.state_url, KEYRING)
    first, second = create_app(settings), create_app(settings)
    key = KEYRING.derived_key(EMAIL_HASH_KEY_LABEL)
    other = Keyring.from_env(generate_key()).derived_key(EMAIL_HASH_KEY_LABEL)
    assert first._email_key == second._email_key == key
    assert email_hash(key, "Jane@Example.com") == email_hash(key, "jane@example.com")
    assert email_hash(key, EMAIL) != email_hash(other, EMAIL)
    assert json.dumps(email_hash(key, EMAIL)).count("jane") == 0
