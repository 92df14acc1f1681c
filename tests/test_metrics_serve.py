"""`serve --metrics-port` with two workers over real loopback sockets: the families add up over
the workers, the failure streak is the whole process's, labels stay bounded and hold no
customer data, and /metrics is on its own (loopback) listener, never the public port."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.handler_helpers import SHOPIFY_TOKEN, write_accounts
from tests.serve_helpers import ServedHandler, free_port, run_serve
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Credential, Store

KEYS = generate_key()
KEYRING = Keyring.from_env(KEYS)
EMAIL = "metrics.customer@example.com"
TICKET = "T-7741-secret-ticket"
WRONG_TOKEN = "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"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Served:
    def __init__(self, handler: ServedHandler, metrics_port: int, tmp: Path) -> None:
        self.handler = handler
        self.metrics_port = metrics_port
        self.tmp = tmp

    def post(
        self, account: str, body: Any = None, *, raw: bytes | None = None, token: str = ""
    ) -> int:
        document = body or {"ticket_id": TICKET, "account_domain": account, "customer_email": EMAIL}
        # A new connection each time, so both workers answer some.
        connection = http.client.HTTPConnection("127.0.0.1", self.handler.port, timeout=10)
        try:
            connection.request(
                "POST",
                "/gorgias/events",
                body=raw if raw is not None else json.dumps(document).encode(),
                headers={
                    "Content-Type": "application/json",
                    "X-Together-Token": token or KEYRING.event_token(account),
                },
            )
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, sandbox_session: RunningSandbox
) -> Iterator[Served]:
    """One serve for the module (tests use differences; the last one stops it)."""
    tmp_path = tmp_path_factory.mktemp("metrics")
    sandbox = sandbox_session
    sandbox.control.reset()
    control = sandbox.control
    control.add_shopify_store("acme", SHOPIFY_TOKEN)
    control.add_shopify_store("beta", "shpat_the_right_one")
    created = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    control.add_orders(
        "acme",
        [
            {
                "id": 501,
                "name": "#501",
                "email": EMAIL,
                "created_at": created,
                "tags": ["together-final-sale"],
                "total": "10.00",
                "currency": "EUR",
                "financial_status": "PAID",
                "fulfillment_status": "UNFULFILLED",
                "line_items": [{"name": "Hat", "quantity": 1}],
            }
        ],
    )
    state_url = f"sqlite:///{tmp_path}/state.db"
    with Store.open(state_url, KEYRING) as store:
        store.put_credential(Credential("shopify", "acme.myshopify.com", SHOPIFY_TOKEN))
        store.put_credential(Credential("shopify", "beta.myshopify.com", WRONG_TOKEN))
    metrics_port = free_port()
    os.environ["TMPDIR"] = str(tmp_path)  # the run's metrics directory goes here (checked below)
    try:
        with run_serve(
            tmp_path,
            accounts_dir=write_accounts(tmp_path / "accounts"),
            state_url=state_url,
            secret_keys=KEYS,
            shopify_url=sandbox.shopify_url_template,
            workers=2,
            extra_args=("--metrics-port", str(metrics_port)),
        ) as handler:
            yield Served(handler, metrics_port, tmp_path)
    finally:
        del os.environ["TMPDIR"]


def test_known_events_add_up_over_both_workers(served: Served) -> None:
    before = scrape(served.metrics_port)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: served.post("acme.gorgias.com"), range(40)))
        statuses += list(pool.map(lambda _: served.post("beta.gorgias.com"), range(6)))
        statuses += list(pool.map(lambda _: served.post("nope.gorgias.com"), range(3)))
        statuses += list(pool.map(lambda _: served.post("acme.gorgias.com", raw=b"{"), range(2)))
    assert statuses == [200] * 40 + [502] * 6 + [404] * 3 + [400] * 2
    after = scrape(served.metrics_port)

    def added(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    events = "together_events_total"
    assert added(events, account="acme.gorgias.com", outcome="ok") == 40
    assert added(events, account="beta.gorgias.com", outcome="shopify_unauthorized") == 6
    assert added(events, account="none", outcome="unknown_account") == 3
    assert added(events, account="none", outcome="invalid_json") == 2
    assert added("together_event_duration_seconds_count") == 51
    assert added("together_shopify_duration_seconds_count") == 46
    assert added("together_requests_total", route="/gorgias/events", status="502") == 6
    streak = "together_account_failure_streak"
    assert added(streak, account="beta.gorgias.com") == 6
    assert sample(after, streak, account="acme.gorgias.com") == 0
    assert sample(after, "together_config_accounts") == 3
    assert sample(after, "together_store_errors_total") == 0
    versions = [key for key, value in after.items() if key[0] == "together_config_info" and value]
    assert len(versions) == 1
    assert dict(versions[0][1])["version"].startswith("sha256:")
    # Both workers answered: the sums above are over two processes.
    pids = {
        json.loads(line).get("pid")
        for line in served.handler.stderr().splitlines()
        if line.startswith("{") and '"route":"/gorgias/events"' in line
    }
    assert len(pids) == 2


def test_streak_counts_across_workers_and_resets_on_any_workers_success(served: Served) -> None:
    streak = "together_account_failure_streak"
    forged = KEYRING.event_token("beta.gorgias.com")  # a 401 is a failed answer too

    def current() -> float:
        return sample(scrape(served.metrics_port), streak, account="acme.gorgias.com")

    assert served.post("acme.gorgias.com") == 200
    assert current() == 0
    with ThreadPoolExecutor(6) as pool:
        answers = pool.map(lambda _: served.post("acme.gorgias.com", token=forged), range(25))
        assert set(answers) == {401}
    assert current() == 25
    assert served.post("acme.gorgias.com") == 200
    assert current() == 0
    with ThreadPoolExecutor(6) as pool:
        answers = pool.map(lambda _: served.post("acme.gorgias.com", token=forged), range(7))
        assert set(answers) == {401}
    assert current() == 7
    assert served.post("acme.gorgias.com") == 200
    assert current() == 0


def test_labels_hold_no_customer_data_and_only_configured_accounts(served: Served) -> None:
    served.post("acme.gorgias.com")
    served.post("beta.gorgias.com")
    served.post("attacker-made-up.gorgias.com")
    text = httpx.get(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=5).text
    for secret in (EMAIL, TICKET, SHOPIFY_TOKEN, WRONG_TOKEN, "attacker-made-up", KEYS):
        assert secret not in text
    accounts = {
        sample.labels["account"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "account" in sample.labels
    }
    # The configured accounts (gone.gorgias.com: its file says enabled: false) at 0 from the
    # start, and `none` for everything else; never the made-up account.
    assert accounts == {"acme.gorgias.com", "beta.gorgias.com", "gone.gorgias.com", "none"}


def test_metrics_only_on_their_own_loopback_listener(served: Served) -> None:
    public = httpx.get(served.handler.url + "/metrics", timeout=5)
    assert public.status_code == 404
    assert "together_events" not in public.text
    other = httpx.get(f"http://127.0.0.1:{served.metrics_port}/other", timeout=5)
    assert other.status_code == 404
    assert listening_addresses(served.metrics_port) == ["127.0.0.1"]


def listening_addresses(port: int) -> list[str]:
    """The IPv4 addresses a socket listens on at `port` (from /proc/net/tcp)."""
    addresses = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
            addresses.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return addresses


def test_each_run_starts_from_a_fresh_directory_removed_at_exit(served: Served) -> None:
    """(Runs last: it stops the module's serve.)"""
    directories = list(served.tmp.glob("together-metrics-*"))
    assert len(directories) == 1
    assert any(directories[0].glob("counter_*.db")) or served.post("acme.gorgias.com") == 200
    served.handler.process.terminate()
    served.handler.process.wait(timeout=20)
    assert list(served.tmp.glob("together-metrics-*")) == []


def test_a_busy_metrics_port_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [
                *(sys.executable, "-m", "together_reconcile", "serve"),
                *("--port", str(free_port()), "--metrics-port", str(port)),
            ],
            env={
                **os.environ,
                "TOGETHER_SECRET_KEYS": KEYS,
                "TOGETHER_ACCOUNTS_DIR": str(write_accounts(tmp_path / "accounts")),
                "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/state.db",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert (
        f"Error: cannot listen on 127.0.0.1:{port} for metrics: Address already in use"
        in done.stderr
    )
