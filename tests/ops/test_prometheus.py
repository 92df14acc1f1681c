"""A real Prometheus server scrapes `serve --metrics-port` (two workers), loads the shipped
alert rules, and the values read back through its HTTP API are the events the test sent."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.handler_helpers import SHOPIFY_TOKEN, write_accounts
from tests.ops.helpers import DEPLOY, need
from tests.serve_helpers import ServedHandler, free_port, run_serve
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Credential, Store

KEYS = generate_key()
KEYRING = Keyring.from_env(KEYS)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(Prometheus URL, the metrics port it scrapes every second)."""
    binary = need("prometheus", "prometheus")
    metrics_port, web_port = free_port(), free_port()
    (tmp_path / "alerts.yml").write_text((DEPLOY / "prometheus" / "alerts.yml").read_text())
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        "  - job_name: together-reconcile\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web_port}",
        ],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{web_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "Prometheus did not start in 30 s"
            time.sleep(0.2)
        yield url, metrics_port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(url + "/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def wait_for_value(url: str, promql: str, expected: float, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = query(url, promql)
        if seen and float(seen[0]["value"][1]) == expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"{promql}: wanted {expected}, Prometheus has {json.dumps(seen)}")


def test_prometheus_scrapes_serve_and_reads_back_the_sent_events(
    tmp_path: Path, sandbox: RunningSandbox, prometheus: tuple[str, int]
) -> None:
    url, metrics_port = prometheus
    sandbox.control.add_shopify_store("acme", SHOPIFY_TOKEN)
    sandbox.control.add_shopify_store("beta", "shpat_the_right_one")
    state_url = f"sqlite:///{tmp_path}/state.db"
    with Store.open(state_url, KEYRING) as store:
        store.put_credential(Credential("shopify", "acme.myshopify.com", SHOPIFY_TOKEN))
        store.put_credential(Credential("shopify", "beta.myshopify.com", "shpat_refused0000"))
    with run_serve(
        tmp_path,
        accounts_dir=write_accounts(tmp_path / "accounts"),
        state_url=state_url,
        secret_keys=KEYS,
        shopify_url=sandbox.shopify_url_template,
        workers=2,
        extra_args=("--metrics-port", str(metrics_port)),
    ) as served:
        # As in production, Prometheus has scraped the running handler before the failures:
        # the configured accounts' series are there at 0, so increase() sees the 21.
        wait_for_value(
            url,
            'sum(together_events_total{account="beta.gorgias.com",outcome="shopify_unauthorized"})',
            0,
        )
        statuses = [post(served, "acme.gorgias.com") for _ in range(12)]
        statuses += [post(served, "beta.gorgias.com") for _ in range(21)]
        assert statuses == [200] * 12 + [502] * 21

        wait_for_value(
            url, 'sum(together_events_total{account="acme.gorgias.com",outcome="ok"})', 12
        )
        assert query(url, "up")[0]["value"][1] == "1"
        wait_for_value(
            url,
            'sum(together_events_total{account="beta.gorgias.com",outcome="shopify_unauthorized"})',
            21,
        )
        wait_for_value(url, "sum(together_event_duration_seconds_count)", 33)
        wait_for_value(url, 'together_account_failure_streak{account="beta.gorgias.com"}', 21)
        wait_for_value(url, "together_config_accounts", 3)
        # The shipped rules run on the real data: the streak (21 >= 20) and the refused token.
        firing = wait_for_alerts(
            url, {"TogetherAccountFailureStreak", "TogetherShopifyUnauthorized"}
        )
        assert {a["labels"].get("account") for a in firing} == {"beta.gorgias.com"}
        rules = httpx.get(url + "/api/v1/rules", timeout=5).json()["data"]["groups"][0]["rules"]
        assert len(rules) == 9
        assert {rule["health"] for rule in rules} == {"ok"}


def wait_for_alerts(url: str, names: set[str], timeout_s: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        alerts = httpx.get(url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        firing = [a for a in alerts if a["state"] == "firing"]
        if names <= {a["labels"]["alertname"] for a in firing}:
            return [a for a in firing if a["labels"]["alertname"] in names]
        time.sleep(0.5)
    raise AssertionError(f"alerts {names} did not fire: {alerts}")


def post(served: ServedHandler, account: str) -> int:
    body = {"ticket_id": 1, "account_domain": account, "customer_email": "p@example.com"}
    answer = httpx.post(
        served.url + "/gorgias/events",
        json=body,
        headers={"X-Together-Token": KEYRING.event_token(account)},
        timeout=10,
    )
    return answer.status_code
