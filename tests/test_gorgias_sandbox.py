"""The Gorgias client over real loopback sockets, against the sandbox's Gorgias stand-in.

Each test starts from a reset sandbox (fixture `sandbox`) with one account, `acme`.
Backoff sleeps are injected (recorded, not slept) unless the sandbox's real-time rate limit
needs the wait to really happen.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import pytest

from together_reconcile.gorgias.client import (
    AccountRateLimiter,
    BearerAuth,
    CreateOutcomeUnknown,
    CredentialsRejected,
    GorgiasClient,
    GorgiasUnavailable,
    NotFound,
)

TOKEN = "sandbox-acme-token-SECRET-1234567"
ACCOUNT = "acme.gorgias.com"


def http_integration(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "http",
        "http": {
            "url": "http://127.0.0.1:9/gorgias/events",
            "method": "POST",
            "request_content_type": "application/json",
            "response_content_type": "application/json",
            "headers": {},
            "form": {"ticket_id": "{{ticket.id}}"},
            "triggers": {"ticket-created": True},
        },
    }


class Waits:
    """Injected sleep: records every wait; sleeps for real only when asked to."""

    def __init__(self, real: bool = False) -> None:
        self.real = real
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            time.sleep(seconds)


@pytest.fixture
def acme(sandbox: Any) -> Any:
    sandbox.control.add_gorgias_account("acme", TOKEN)
    return sandbox


def client_for(
    sandbox: Any, waits: Waits | None = None, token: str = TOKEN, **kwargs: Any
) -> GorgiasClient:
    return GorgiasClient(
        ACCOUNT,
        BearerAuth(token),
        base_url_template=sandbox.gorgias_url_template,
        sleep=waits or Waits(),
        rng=lambda: 0.5,
        rate_limiter=AccountRateLimiter(),
        **kwargs,
    )


def gorgias_requests(sandbox: Any, method: str | None = None) -> list[dict[str, Any]]:
    return [
        entry
        for entry in sandbox.control.requests()
        if entry["target"] == "gorgias" and (method is None or entry["method"] == method)
    ]


def test_lists_250_integrations_through_page_size_7(acme: Any) -> None:
    for i in range(250):
        acme.control.insert_integration("acme", http_integration(f"foreign {i}"))
    acme.control.set_page_size(7)
    with client_for(acme) as client:
        items = client.list_integrations()
    ids = [item["id"] for item in items]
    assert len(ids) == 250
    assert len(set(ids)) == 250
    assert {item["name"] for item in items} == {f"foreign {i}" for i in range(250)}
    assert client.request_count == math.ceil(250 / 7) == 36
    assert len(gorgias_requests(acme, "GET")) == 36


def test_crud_round_trip(acme: Any) -> None:
    with client_for(acme) as client:
        created = client.create_integration(http_integration("ours"))
        assert client.get_integration(created["id"])["name"] == "ours"
        updated = client.update_integration(created["id"], {"name": "ours, renamed"})
        assert updated["name"] == "ours, renamed"
        widget = client.create_widget(
            {
                "type": "http",
                "context": "ticket",
                "integration_id": created["id"],
                "template": {"type": "wrapper", "widgets": []},
            }
        )
        assert [w["id"] for w in client.list_widgets(integration_id=created["id"])] == [
            widget["id"]
        ]
        client.delete_widget(widget["id"])
        client.delete_integration(created["id"])
        with pytest.raises(NotFound):
            client.get_integration(created["id"])
        assert client.list_integrations() == []


def test_429_then_success_waits_retry_after(acme: Any) -> None:
    acme.control.set_rate_limit(1, 1.0)
    url = acme.gorgias_url_template.replace("{account}", "acme") + "/api/integrations"
    # Someone else uses the account's only slot.
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    waits = Waits(real=True)
    started = time.monotonic()
    with client_for(acme, waits) as client:
        assert client.list_integrations() == []
    assert waits.waits[0] == pytest.approx(1.0, abs=0.05)  # the sandbox's Retry-After: 1
    assert time.monotonic() - started >= 1.0
    statuses = [entry["status"] for entry in gorgias_requests(acme)]
    assert statuses[:3] == [200, 429, 200]
    assert client.request_count == 2


def test_5xx_retried_for_get(acme: Any) -> None:
    acme.control.insert_integration("acme", http_integration("foreign"))
    acme.control.add_fault(target="gorgias", kind="status", status=502, method="GET", count=2)
    waits = Waits()
    with client_for(acme, waits) as client:
        assert [i["name"] for i in client.list_integrations()] == ["foreign"]
    assert client.request_count == 3
    assert waits.waits == [0.25, 0.5]  # rng 0.5 × ceilings 0.5 s, 1 s
    assert [e["status"] for e in gorgias_requests(acme, "GET")] == [502, 502, 200]


def test_5xx_on_post_is_not_retried(acme: Any) -> None:
    acme.control.add_fault(target="gorgias", kind="status", status=503, method="POST", count=1)
    with client_for(acme) as client:
        with pytest.raises(CreateOutcomeUnknown) as caught:
            client.create_integration(http_integration("ours"))
        assert caught.value.status == 503
        assert client.request_count == 1
    assert len(gorgias_requests(acme, "POST")) == 1


def test_write_then_fail_on_post_then_adopt(acme: Any) -> None:
    acme.control.add_fault(target="gorgias", kind="write_then_fail", status=502, method="POST")
    with client_for(acme) as client:
        with pytest.raises(CreateOutcomeUnknown) as caught:
            client.create_integration(http_integration("ours"))
        assert caught.value.status == 502
        assert "list and adopt" in str(caught.value)
        # The adopt primitive: re-list and find what the lost create made.
        adopted = [i for i in client.list_integrations() if i["name"] == "ours"]
    assert len(adopted) == 1
    assert len(gorgias_requests(acme, "POST")) == 1


def test_401_is_credentials_rejected(acme: Any) -> None:
    with (
        client_for(acme, token="not-the-token-SECRET") as client,
        pytest.raises(CredentialsRejected) as caught,
    ):
        client.list_integrations()
    assert "credentials rejected for acme.gorgias.com" in str(caught.value)
    assert "not-the-token-SECRET" not in str(caught.value) + repr(caught.value)
    assert client.request_count == 1


def test_unknown_account_is_not_found(acme: Any) -> None:
    with (
        GorgiasClient(
            "nobody.gorgias.com",
            BearerAuth(TOKEN),
            base_url_template=acme.gorgias_url_template,
            rate_limiter=AccountRateLimiter(),
        ) as client,
        pytest.raises(NotFound) as caught,
    ):
        client.list_integrations()
    assert "the answer is not JSON: text/html" in str(caught.value)


def test_dropped_connection_on_get_is_retried(acme: Any) -> None:
    acme.control.add_fault(target="gorgias", kind="drop", method="GET", count=1)
    with client_for(acme) as client:
        assert client.list_integrations() == []
    assert client.request_count == 2


def test_connection_that_keeps_dropping_is_unavailable(acme: Any) -> None:
    acme.control.add_fault(target="gorgias", kind="drop", method="GET", count=10)
    waits = Waits()
    with (
        client_for(acme, waits, max_retries=2) as client,
        pytest.raises(GorgiasUnavailable) as caught,
    ):
        client.list_integrations()
    assert client.request_count == 3
    assert caught.value.status is None
    assert len(waits.waits) == 2


def test_dropped_connection_on_post_is_create_outcome_unknown(acme: Any) -> None:
    acme.control.add_fault(target="gorgias", kind="drop", method="POST", count=1)
    with client_for(acme) as client, pytest.raises(CreateOutcomeUnknown):
        client.create_integration(http_integration("ours"))
    assert client.request_count == 1


# A read timeout a loaded 2-core CI machine still answers a plain request within; the slow
# faults below hold their answer three times as long.
SHORT = httpx.Timeout(connect=2.0, read=0.5, write=2.0, pool=2.0)
HELD_S = 1.5


def wait_for_held_answers(sandbox: Any, method: str, count: int) -> list[dict[str, Any]]:
    """Wait until the sandbox has finished `count` requests of `method` (held ones included),
    so none finishes later inside another test's log or state; returns them."""
    deadline = time.monotonic() + 10
    while len(gorgias_requests(sandbox, method)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return gorgias_requests(sandbox, method)


def test_slow_answer_on_get_times_out_then_unavailable(acme: Any) -> None:
    acme.control.add_fault(target="gorgias", kind="slow", method="GET", delay_s=HELD_S, count=2)
    with (
        client_for(acme, timeout=SHORT, max_retries=1) as client,
        pytest.raises(GorgiasUnavailable) as caught,
    ):
        client.list_integrations()
    assert client.request_count == 2
    assert "ReadTimeout" in str(caught.value)
    assert [r["status"] for r in wait_for_held_answers(acme, "GET", 2)] == [200, 200]


def test_slow_answer_on_get_once_is_retried(acme: Any) -> None:
    acme.control.add_fault(target="gorgias", kind="slow", method="GET", delay_s=HELD_S, count=1)
    with client_for(acme, timeout=SHORT) as client:
        assert client.list_integrations() == []
    assert client.request_count == 2
    assert [r["status"] for r in wait_for_held_answers(acme, "GET", 2)] == [200, 200]


def test_slow_answer_on_post_is_create_outcome_unknown(acme: Any) -> None:
    acme.control.add_fault(target="gorgias", kind="slow", method="POST", delay_s=HELD_S, count=1)
    with client_for(acme, timeout=SHORT) as client, pytest.raises(CreateOutcomeUnknown) as caught:
        client.create_integration(http_integration("ours"))
    assert "ReadTimeout" in str(caught.value)
    assert client.request_count == 1
    # the sandbox still makes the held create: wait for it, so that it cannot land in the
    # next test's fresh "acme" (same name, same token)
    assert [r["status"] for r in wait_for_held_answers(acme, "POST", 1)] == [201]
    assert [i["name"] for i in acme.control.integrations("acme")] == ["ours"]
