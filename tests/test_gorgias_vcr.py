"""The Gorgias client replaying recorded HTTP exchanges (vcrpy cassettes in tests/cassettes/).

By default (``TOGETHER_VCR_RECORD=none``) the cassettes are only replayed: no socket is
opened, and a request missing from a cassette fails the test.

Re-recording
------------
``TOGETHER_VCR_RECORD`` is the vcrpy record mode: ``none`` (default), ``once`` (record the
cassettes that are missing) or ``all`` (re-record everything). Delete a cassette file to
re-record it with ``once``.

* From the sandbox (how the committed cassettes were made)::

      TOGETHER_VCR_RECORD=all .venv/bin/pytest tests/test_gorgias_vcr.py

  The test starts a sandbox on a loopback port and seeds it.

* Against a real Gorgias account (a test account: the scenarios create and delete
  integrations and widgets named ``together-vcr-*``)::

      TOGETHER_VCR_RECORD=all \\
      TOGETHER_GORGIAS_URL='https://{account}.gorgias.com' \\
      TOGETHER_VCR_GORGIAS_ACCOUNT=mytest.gorgias.com \\
      TOGETHER_VCR_GORGIAS_TOKEN=<OAuth access token> \\
      .venv/bin/pytest tests/test_gorgias_vcr.py

  Scenarios that need the sandbox's knobs (a small page size, a forced 429) are skipped
  against a real account and keep their sandbox recording.

Whatever the source, the ``Authorization`` (and ``X-Shopify-Access-Token``, cookie) headers
are filtered out before a cassette is written; ``test_cassettes_hold_no_secret`` checks it.
Requests are matched on method, the path from ``/api/`` on, and the query, so a cassette
replays whatever host, port or sandbox prefix it was recorded from.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import vcr

from together_reconcile.gorgias.client import (
    AccountRateLimiter,
    BearerAuth,
    CredentialsRejected,
    GorgiasClient,
    GorgiasError,
    NotFound,
    new_http_client,
)

CASSETTES = Path(__file__).parent / "cassettes"
RECORD_MODE = os.environ.get("TOGETHER_VCR_RECORD", "none")
RECORDING = RECORD_MODE != "none"
REAL_GORGIAS = RECORDING and bool(os.environ.get("TOGETHER_VCR_GORGIAS_TOKEN"))
SANDBOX_TOKEN = "sandbox-vcr-token-SECRET-7f3a9c"
# Replay never opens a socket; should it ever try, this loopback port is closed.
REPLAY_TEMPLATE = "http://127.0.0.1:9/gorgias/{account}"
FILTERED_HEADERS = ["authorization", "x-shopify-access-token", "cookie", "set-cookie"]


def api_path(uri: str) -> str:
    path = urlsplit(uri).path.rstrip("/")
    return path[path.find("/api/") :] if "/api/" in path else path


def match_api_path(r1: Any, r2: Any) -> None:
    assert api_path(r1.uri) == api_path(r2.uri)


cassette_vcr = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode=RECORD_MODE,
    filter_headers=FILTERED_HEADERS,
    match_on=["method", "api_path", "query"],
    decode_compressed_response=True,
)
cassette_vcr.register_matcher("api_path", match_api_path)


@dataclass
class Target:
    """Where the scenario talks to: a real account, a live sandbox, or nothing (replay)."""

    account: str
    template: str
    token: str
    sandbox: Any = None

    def client(self, token: str | None = None, waits: list[float] | None = None) -> GorgiasClient:
        def sleep(seconds: float) -> None:
            if waits is not None:
                waits.append(seconds)
            if RECORDING:  # the live server's rate limit runs on real time
                time.sleep(seconds)

        return GorgiasClient(
            self.account,
            BearerAuth(token or self.token),
            base_url_template=self.template,
            sleep=sleep,
            rng=lambda: 0.0,
            rate_limiter=AccountRateLimiter(),
            http=new_http_client(),  # vcrpy records and replays httpx, not h11_client's sockets
        )

    def needs_sandbox(self) -> Any:
        if REAL_GORGIAS:
            pytest.skip("needs the sandbox's knobs: keeps its sandbox recording")
        return self.sandbox


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    if not RECORDING:
        yield Target("acme.gorgias.com", REPLAY_TEMPLATE, SANDBOX_TOKEN)
        return
    if REAL_GORGIAS:
        yield Target(
            os.environ["TOGETHER_VCR_GORGIAS_ACCOUNT"],
            os.environ.get("TOGETHER_GORGIAS_URL", "https://{account}.gorgias.com"),
            os.environ["TOGETHER_VCR_GORGIAS_TOKEN"],
        )
        return
    from together_reconcile.sandbox import start_sandbox

    running = start_sandbox(port=0)
    try:
        yield Target("acme.gorgias.com", running.gorgias_url_template, SANDBOX_TOKEN, running)
    finally:
        running.stop()


@pytest.fixture
def fresh(target: Target) -> Target:
    """When recording from the sandbox: reset it and seed the one account."""
    if target.sandbox is not None:
        target.sandbox.control.reset()
        target.sandbox.control.add_gorgias_account("acme", SANDBOX_TOKEN)
    return target


def http_integration(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "http",
        "http": {
            "url": "https://example.com/gorgias/events",
            "method": "POST",
            "request_content_type": "application/json",
            "response_content_type": "application/json",
            "headers": {"X-Together-Token": "not-a-secret-placeholder"},
            "form": {"ticket_id": "{{ticket.id}}"},
            "triggers": {"ticket-created": True, "ticket-updated": True},
        },
    }


def test_integration_lifecycle(fresh: Target) -> None:
    with cassette_vcr.use_cassette("integration_lifecycle.yaml"), fresh.client() as client:
        created = client.create_integration(http_integration("together-vcr-lifecycle"))
        assert created["name"] == "together-vcr-lifecycle"
        assert created["http"]["method"] == "POST"
        fetched = client.get_integration(created["id"])
        assert fetched["id"] == created["id"]
        updated = client.update_integration(created["id"], {"name": "together-vcr-renamed"})
        assert updated["name"] == "together-vcr-renamed"
        listed = [i for i in client.list_integrations() if i["id"] == created["id"]]
        assert [i["name"] for i in listed] == ["together-vcr-renamed"]
        client.delete_integration(created["id"])
        with pytest.raises(NotFound) as caught:
            client.get_integration(created["id"])
        assert caught.value.path == f"/api/integrations/{created['id']}"


def test_widget_lifecycle(fresh: Target) -> None:
    with cassette_vcr.use_cassette("widget_lifecycle.yaml"), fresh.client() as client:
        integration = client.create_integration(http_integration("together-vcr-widget"))
        widget = client.create_widget(
            {
                "type": "http",
                "context": "ticket",
                "order": 0,
                "integration_id": integration["id"],
                "template": {"type": "wrapper", "widgets": []},
            }
        )
        assert widget["integration_id"] == integration["id"]
        mine = client.list_widgets(integration_id=integration["id"])
        assert [w["id"] for w in mine] == [widget["id"]]
        moved = client.update_widget(widget["id"], {"context": "customer"})
        assert moved["context"] == "customer"
        client.delete_widget(widget["id"])
        client.delete_integration(integration["id"])
        assert client.list_widgets(integration_id=integration["id"]) == []


def test_paging(fresh: Target) -> None:
    if RECORDING:
        sandbox = fresh.needs_sandbox()
        for i in range(7):
            sandbox.control.insert_integration("acme", http_integration(f"together-vcr-{i}"))
        sandbox.control.set_page_size(3)
    with cassette_vcr.use_cassette("paging.yaml"), fresh.client() as client:
        names = [i["name"] for i in client.list_integrations()]
    assert sorted(names) == [f"together-vcr-{i}" for i in range(7)]
    assert client.request_count == 3


def test_errors(fresh: Target) -> None:
    with cassette_vcr.use_cassette("errors.yaml"):
        with (
            fresh.client(token="wrong-token-SECRET") as client,
            pytest.raises(CredentialsRejected) as rejected,
        ):
            client.list_integrations()
        assert "credentials rejected for" in str(rejected.value)
        with fresh.client() as client:
            body = http_integration("together-vcr-invalid")
            del body["http"]["url"]
            with pytest.raises(GorgiasError) as invalid:
                client.create_integration(body)
            assert invalid.value.status == 400
            assert invalid.value.message
            with pytest.raises(NotFound):
                client.get_widget(999999999)


def test_rate_limited_then_success(fresh: Target) -> None:
    if RECORDING:
        sandbox = fresh.needs_sandbox()
        sandbox.control.set_rate_limit(1, 1.0)
        with fresh.client() as warmup:  # use the only slot, outside the cassette
            warmup.list_integrations()
    waits: list[float] = []
    with cassette_vcr.use_cassette("rate_limited.yaml"), fresh.client(waits=waits) as client:
        assert client.list_integrations() == []
    assert client.request_count == 2  # 429 (Retry-After: 1), then 200
    assert waits == [pytest.approx(1.0, abs=0.05)]


def test_cassettes_hold_no_secret() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert {f.name for f in files} >= {
        "integration_lifecycle.yaml",
        "widget_lifecycle.yaml",
        "paging.yaml",
        "errors.yaml",
        "rate_limited.yaml",
    }
    secrets = [SANDBOX_TOKEN, "wrong-token-SECRET"]
    if os.environ.get("TOGETHER_VCR_GORGIAS_TOKEN"):
        secrets.append(os.environ["TOGETHER_VCR_GORGIAS_TOKEN"])
    for path in files:
        text = path.read_text()
        assert "authorization" not in text.lower(), path.name
        assert "bearer " not in text.lower(), path.name
        for secret in secrets:
            assert secret not in text, path.name
