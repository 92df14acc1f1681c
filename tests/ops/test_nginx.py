"""The shipped nginx configuration (deploy/nginx) with the real nginx, TLS on a self-signed
certificate made here, in front of two `serve` replicas on one PostgreSQL:

- a rolling restart (SIGTERM replica 1, start it, wait ready, then replica 2) under keep-alive
  load loses no event;
- clients that send their headers slowly do not delay other events;
- an OAuth `state` issued by replica 1 completes on replica 2, and its replay is refused on
  both;
- only the event and OAuth routes are exposed.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from tests.handler_helpers import SHOPIFY_TOKEN
from tests.ops.helpers import Nginx, Replica, replicas, run_nginx
from tests.plugins.store_fixtures import fresh_schema
from tests.serve_helpers import free_port
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Credential, Store

KEYS = generate_key()
KEYRING = Keyring.from_env(KEYS)
CLIENT_ID = "together-app"
CLIENT_SECRET = "sandbox-client-secret"
PUBLIC_URL = "https://together.example.com"
# Shopify limits each store (the sandbox too), so the load is spread over many accounts.
STORES = [f"shop{number:02d}" for number in range(32)]
EVENTS = [
    (
        json.dumps(
            {
                "ticket_id": 7,
                "account_domain": f"{s}.gorgias.com",
                "customer_email": "n@example.com",
            }
        ).encode(),
        {
            "Content-Type": "application/json",
            "X-Together-Token": KEYRING.event_token(f"{s}.gorgias.com"),
        },
    )
    for s in STORES
]
EVENT, HEADERS = EVENTS[0]
_turn = iter(range(10**9))


@dataclass
class Setup:
    nginx: Nginx
    one: Replica
    two: Replica
    sandbox: RunningSandbox

    def connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1", self.nginx.port, timeout=15, context=self.nginx.tls()
        )


@pytest.fixture(scope="module")
def schema_url(postgres_url_or_skip_reason: tuple[str | None, str | None]) -> Iterator[str]:
    with fresh_schema(postgres_url_or_skip_reason) as url:
        yield url


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, sandbox_session: RunningSandbox, schema_url: str
) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("nginx")
    sandbox = sandbox_session
    sandbox.control.reset()
    sandbox.control.add_shopify_store("acme", SHOPIFY_TOKEN)
    for shop in STORES:
        sandbox.control.add_shopify_store(shop, SHOPIFY_TOKEN)
    sandbox.control.add_gorgias_account("acme", "unused-pasted-token")
    sandbox.control.set_oauth_client(CLIENT_ID, CLIENT_SECRET)
    with Store.open(schema_url, KEYRING) as store:
        store.put_credential(Credential("shopify", "acme.myshopify.com", SHOPIFY_TOKEN))
        for shop in STORES:
            store.put_credential(Credential("shopify", f"{shop}.myshopify.com", SHOPIFY_TOKEN))
    accounts = tmp / "accounts"
    accounts.mkdir()
    for shop in STORES:
        (accounts / f"{shop}.yaml").write_text(
            f"shopify_store: {shop}.myshopify.com\ngorgias_account: {shop}.gorgias.com\n"
        )
    (accounts / "acme.yaml").write_text(
        "shopify_store: acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"
    )
    env = {
        **os.environ,
        "TOGETHER_SECRET_KEYS": KEYS,
        "TOGETHER_STATE_URL": schema_url,
        "TOGETHER_ACCOUNTS_DIR": str(accounts),
        "TOGETHER_SHOPIFY_URL": sandbox.shopify_url_template,
        "TOGETHER_GORGIAS_URL": sandbox.gorgias_url_template,
        "TOGETHER_PUBLIC_URL": PUBLIC_URL,
        "TOGETHER_GORGIAS_CLIENT_ID": CLIENT_ID,
        "TOGETHER_GORGIAS_CLIENT_SECRET": CLIENT_SECRET,
    }
    args = ("--workers", "1", "--threads", "8")
    one = Replica("one", free_port(), env, tmp / "one.log", args)
    two = Replica("two", free_port(), env, tmp / "two.log", args)
    with replicas(one, two), run_nginx(tmp, free_port(), [one.port, two.port]) as nginx:
        yield Setup(nginx, one, two, sandbox)


def post_event(connection: http.client.HTTPSConnection) -> tuple[int, bytes]:
    body, headers = EVENTS[next(_turn) % len(EVENTS)]
    connection.request("POST", "/gorgias/events", body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def test_only_the_event_and_oauth_routes_are_exposed(setup: Setup) -> None:
    tls = setup.nginx.tls()
    with httpx.Client(verify=tls, timeout=10) as client:
        answer = client.post(setup.nginx.url + "/gorgias/events", content=EVENT, headers=HEADERS)
        assert answer.status_code == 200
        assert answer.json() == {}
        for path in ("/healthz", "/readyz", "/metrics", "/", "/gorgias/eventsx"):
            hidden = client.get(setup.nginx.url + path)
            assert hidden.status_code == 404, path
            assert hidden.json()["error"]["code"] == "not_found"
        install = client.get(setup.nginx.url + "/oauth/gorgias/install", params={"account": "acme"})
        assert install.status_code == 302
        too_big = client.post(
            setup.nginx.url + "/gorgias/events", content=b"x" * (64 * 1024 + 1), headers=HEADERS
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "body_too_large"


def test_rolling_restart_under_keep_alive_load_loses_no_event(setup: Setup) -> None:
    stop = threading.Event()
    results: list[tuple[int, float]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        connection = setup.connection()  # one keep-alive connection per client, reused
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    status, body = post_event(connection)
                except (OSError, http.client.HTTPException) as error:
                    with lock:
                        failures.append(f"{type(error).__name__}: {error}")
                    connection.close()
                    connection = setup.connection()
                    continue
                with lock:
                    results.append((status, time.monotonic() - started))
                    if status != 200:
                        failures.append(f"{status}: {body[:200]!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        started = time.monotonic()
        for replica in (setup.one, setup.two):
            assert replica.stop() == 0
            replica.start()  # waits for /readyz
            time.sleep(0.5)
        restart_s = time.monotonic() - started
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    latencies = sorted(seconds for _status, seconds in results)
    print(
        f"\nrolling restart: {len(results)} events in {restart_s:.1f} s of restarts, "
        f"{len(failures)} lost; p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    assert failures == []
    assert len(results) > 100


def test_slow_header_clients_do_not_delay_other_events(setup: Setup) -> None:
    """40 clients send their request head one line every 0.5 s (more than the replicas'
    threads); meanwhile other events are answered as fast as usual."""
    slow: list[ssl.SSLSocket] = []
    tls = setup.nginx.tls()
    try:
        for _ in range(40):
            raw = socket.create_connection(("127.0.0.1", setup.nginx.port), timeout=10)
            sock = tls.wrap_socket(raw, server_hostname="localhost")
            sock.sendall(b"POST /gorgias/events HTTP/1.1\r\nHost: localhost\r\n")
            slow.append(sock)
        timings = []
        connection = setup.connection()
        for round_ in range(10):
            for sock in slow:
                sock.sendall(f"X-Slow-{round_}: 1\r\n".encode())
            started = time.monotonic()
            status, _body = post_event(connection)
            timings.append(time.monotonic() - started)
            assert status == 200
            time.sleep(0.5)
        connection.close()
        print(f"\nwith 40 slow-header clients: max {max(timings) * 1000:.0f} ms per event")
        assert max(timings) < 0.5
        # nginx, not a replica, is holding them: the replicas saw no request from them.
        for replica in (setup.one, setup.two):
            assert "X-Slow" not in replica.log.read_text(errors="replace")
    finally:
        for sock in slow:
            sock.close()


def test_an_oauth_state_from_replica_one_completes_on_two_and_is_never_replayed(
    setup: Setup,
) -> None:
    with httpx.Client(timeout=10) as browser:
        install = browser.get(setup.one.url + "/oauth/gorgias/install", params={"account": "acme"})
        assert install.status_code == 302, install.text
        authorize = browser.get(install.headers["location"])
        assert authorize.status_code == 302, authorize.text
        back = urlsplit(authorize.headers["location"])
        assert f"{back.scheme}://{back.netloc}" == PUBLIC_URL
        callback = f"{back.path}?{back.query}"
        done = browser.get(setup.two.url + callback)
        assert done.status_code == 200, done.text
        for replica in (setup.one, setup.two):
            replay = browser.get(replica.url + callback)
            assert replay.status_code == 400, replica.name
            assert "Connection link already used" in replay.text
    # And through nginx, over TLS: install, authorize, callback; the replay refused.
    with httpx.Client(timeout=10, verify=setup.nginx.tls()) as browser:
        install = browser.get(
            setup.nginx.url + "/oauth/gorgias/install", params={"account": "acme"}
        )
        authorize = browser.get(install.headers["location"])
        back = urlsplit(authorize.headers["location"])
        callback = f"{setup.nginx.url}{back.path}?{back.query}"
        assert browser.get(callback).status_code == 200
        assert "Connection link already used" in browser.get(callback).text
