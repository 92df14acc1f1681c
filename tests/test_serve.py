"""The handler served by `together-reconcile serve` (gunicorn), over real loopback sockets,
against the sandbox Shopify."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.handler_helpers import SHOPIFY_TOKEN, write_accounts
from tests.serve_helpers import ServedHandler, run_serve
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Credential, Store

KEYS = f"{generate_key()},{generate_key()}"
KEYRING = Keyring.from_env(KEYS)
ACME_TOKEN = KEYRING.event_token("acme.gorgias.com")
TRICKY_EMAILS = [
    'quo"te@example.com',
    "with space@example.com",
    "x@example.com OR email:*",
    "*",
    "*@example.com",
    "back\\slash@example.com",
    "jörg@exämple.com",
    "(paren)@example.com",
]
OTHER_EMAILS = [
    "jane@example.com",
    "x@example.com",
    "quo@example.com",
    "te@example.com",
    "backslash@example.com",
]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, sandbox_session: RunningSandbox
) -> Iterator[ServedHandler]:
    tmp = tmp_path_factory.mktemp("serve")
    state_url = f"sqlite:///{tmp}/state.db"
    with Store.open(state_url, KEYRING) as store:
        store.put_credential(Credential("shopify", "acme.myshopify.com", SHOPIFY_TOKEN))
        store.put_credential(Credential("shopify", "beta.myshopify.com", "shpat_wrongtoken"))
    with run_serve(
        tmp,
        accounts_dir=write_accounts(tmp / "accounts"),
        state_url=state_url,
        secret_keys=KEYS,
        shopify_url=sandbox_session.shopify_url_template,
    ) as handler:
        yield handler


def order(
    number: int, email: str, *, days_ago: int = 3, tags: tuple[str, ...] = ("together-final-sale",)
) -> dict[str, Any]:
    created = datetime.now(UTC) - timedelta(days=days_ago)
    return {
        "id": number,
        "name": f"#{number}",
        "email": email,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tags": list(tags),
        "total": "10.00",
        "currency": "EUR",
        "financial_status": "PAID",
        "fulfillment_status": "UNFULFILLED",
        "line_items": [{"name": "Hat", "quantity": 1}],
    }


@pytest.fixture
def shop(sandbox: RunningSandbox) -> RunningSandbox:
    control = sandbox.control
    control.add_shopify_store("acme", SHOPIFY_TOKEN)
    control.add_shopify_store("beta", "shpat_the_right_one")
    orders = [order(1000 + i, email) for i, email in enumerate(TRICKY_EMAILS + OTHER_EMAILS)]
    orders += [
        order(2001, "jane@example.com", days_ago=70),
        order(2002, "jane@example.com", tags=("vip",)),
        order(2003, "JANE@example.com", days_ago=1),
    ]
    control.add_orders("acme", orders)
    return sandbox


def post(served: ServedHandler, body: Any, token: str = ACME_TOKEN, **kw: Any) -> httpx.Response:
    return httpx.post(
        served.url + "/gorgias/events",
        json=body,
        timeout=10,
        headers={"X-Together-Token": token},
        **kw,
    )


def event(email: Any, account: str = "acme.gorgias.com") -> dict[str, Any]:
    return {"ticket_id": 42, "account_domain": account, "customer_email": email}


def test_exact_customer_orders_newest_first(served: ServedHandler, shop: RunningSandbox) -> None:
    answer = post(served, event("Jane@Example.com"))
    assert answer.status_code == 200
    document = answer.json()
    assert [o["name"] for o in document["final_sale_orders"]] == ["#2003", "#1008"]
    assert document["final_sale_order_count"] == 2
    first = document["final_sale_orders"][0]
    assert first["admin_url"] == "https://admin.shopify.com/store/acme/orders/2003"
    assert first["created_at"].endswith("Z")


@pytest.mark.parametrize("email", TRICKY_EMAILS)
def test_tricky_emails_find_only_their_own_order(
    served: ServedHandler, shop: RunningSandbox, email: str
) -> None:
    answer = post(
        served, {"ticket_id": "7", "account_domain": "acme.gorgias.com", "customer_email": email}
    )
    assert answer.status_code == 200, answer.text
    if "@" not in email:  # "*": implausible, so no order and no Together card
        assert answer.json() == {}
        return
    own = [f"#{1000 + TRICKY_EMAILS.index(email)}"]
    assert [o["name"] for o in answer.json()["final_sale_orders"]] == own


def test_500_character_email_is_empty_without_shopify(
    served: ServedHandler, shop: RunningSandbox
) -> None:
    shop.control.clear_requests()
    answer = post(served, event("a" * 488 + "@example.com"))
    assert (answer.status_code, answer.json()) == (200, {})
    assert [r for r in shop.control.requests() if r["target"] == "shopify"] == []


def raw_request(
    served: ServedHandler,
    head: bytes,
    body: bytes = b"",
    *,
    half_close: bool = False,
    timeout: float = 10,
) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic() - started


def head(length: int, content_type: str = "application/json") -> bytes:
    return (
        f"POST /gorgias/events HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"X-Together-Token: {ACME_TOKEN}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_ten_megabytes_is_413_before_the_body_is_sent(served: ServedHandler) -> None:
    # Only the headers are sent: the answer must come (and the connection close) without
    # the server waiting for the 10 MB.
    data, elapsed = raw_request(served, head(10 * 2**20))
    assert data.startswith(b"HTTP/1.1 413")
    assert b"Connection: close" in data
    assert b'"body_too_large"' in data
    assert elapsed < 3


def test_content_length_lying_answers_400_not_hang(served: ServedHandler) -> None:
    data, _ = raw_request(served, head(500), b'{"ticket_id": 1', half_close=True)
    assert data.startswith(b"HTTP/1.1 400")
    assert b'"incomplete_body"' in data
    data, elapsed = raw_request(served, head(500), b'{"ticket_id": 1', timeout=15)
    assert data.startswith(b"HTTP/1.1 400")
    assert elapsed < 7


def test_bad_inputs_over_sockets_never_500(served: ServedHandler, shop: RunningSandbox) -> None:
    url = served.url + "/gorgias/events"
    cases = [
        (httpx.get(url), 405),
        (httpx.post(url, content=b"{}", headers={"Content-Type": "text/plain"}), 415),
        (httpx.post(url, content=b"\xff", headers={"Content-Type": "application/json"}), 400),
        (httpx.post(url, content=b"[" * 60000, headers={"Content-Type": "application/json"}), 400),
        (httpx.post(url, json=[1]), 400),
        (httpx.post(url, json=event("jane@example.com")), 401),
        (post(served, event("jane@example.com"), token="nope"), 401),
        (post(served, event("jane@example.com", "beta.gorgias.com")), 401),
        (
            post(
                served,
                event("j@example.com", "nobody.gorgias.com"),
                token=KEYRING.event_token("nobody.gorgias.com"),
            ),
            404,
        ),
        (
            post(
                served,
                event("j@example.com", "gone.gorgias.com"),
                token=KEYRING.event_token("gone.gorgias.com"),
            ),
            404,
        ),
        (httpx.get(served.url + "/readyz"), 200),
    ]
    assert [answer.status_code for answer, _ in cases] == [status for _, status in cases]


def beta(served: ServedHandler) -> httpx.Response:
    return post(
        served,
        event("jane@example.com", "beta.gorgias.com"),
        token=KEYRING.event_token("beta.gorgias.com"),
    )


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"kind": "status", "status": 503, "count": None}, 502, "shopify_unavailable"),
        ({"kind": "status", "status": 500, "count": None}, 502, "shopify_unavailable"),
        ({"kind": "drop", "count": None}, 502, "shopify_unavailable"),
        ({"kind": "status", "status": 401, "count": None}, 502, "shopify_unauthorized"),
        ({"kind": "throttled", "count": None}, 502, "shopify_throttled"),
        ({"kind": "status", "status": 200, "count": None}, 502, "shopify_error"),
    ],
)
def test_shopify_failures(
    served: ServedHandler, shop: RunningSandbox, fault: dict[str, Any], status: int, code: str
) -> None:
    shop.control.add_fault(target="shopify", **fault)
    started = time.monotonic()
    answer = post(served, event("jane@example.com"))
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
    assert time.monotonic() - started < 6


def test_throttled_once_is_retried(served: ServedHandler, shop: RunningSandbox) -> None:
    shop.control.add_fault(target="shopify", kind="throttled", count=1)
    answer = post(served, event("jane@example.com"))
    assert answer.status_code == 200
    assert len(answer.json()["final_sale_orders"]) == 2


def test_refused_store_token_is_shopify_unauthorized(
    served: ServedHandler, shop: RunningSandbox
) -> None:
    answer = beta(served)
    assert (answer.status_code, answer.json()["error"]["code"]) == (502, "shopify_unauthorized")


@pytest.mark.slow
def test_slow_shopify_is_504_within_6_seconds(served: ServedHandler, shop: RunningSandbox) -> None:
    shop.control.add_fault(target="shopify", kind="slow", delay_s=8.0, count=None)
    started = time.monotonic()
    answer = post(served, event("jane@example.com"))
    elapsed = time.monotonic() - started
    assert (answer.status_code, answer.json()["error"]["code"]) == (504, "shopify_timeout")
    assert 4.5 < elapsed < 6
    # the sandbox still answers the held call after 8 s: wait for it here, or its log entry
    # lands in whichever test (of any module: the sandbox is the session's) runs then
    shop.control.clear_faults()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(
        r["target"] == "shopify" for r in shop.control.requests()
    ):
        time.sleep(0.1)
    assert any(r["target"] == "shopify" for r in shop.control.requests())


def test_zz_logs_hold_no_email_and_no_token(served: ServedHandler) -> None:
    """Runs last in this module: every request above went through this process."""
    time.sleep(0.2)
    text = served.stderr()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) > 20
    lowered = text.lower()
    for secret in [
        ACME_TOKEN,
        SHOPIFY_TOKEN,
        "shpat_wrongtoken",
        KEYS.split(",")[0],
        *[e.lower() for e in TRICKY_EMAILS],
        "jane@example.com",
    ]:
        assert secret.lower() not in lowered


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, [], "TOGETHER_SECRET_KEYS is not set"),
        ({"TOGETHER_SECRET_KEYS": "abc"}, [], "entry 1 of TOGETHER_SECRET_KEYS"),
        ({"TOGETHER_SECRET_KEYS": KEYS}, ["--accounts-dir", "/nonexistent"], "not valid"),
    ],
)
def test_serve_refuses_to_start_with_a_clear_error(
    env: dict[str, str], args: list[str], message: str
) -> None:
    base = {k: v for k, v in os.environ.items() if k != "TOGETHER_SECRET_KEYS"}
    result = subprocess.run(
        [sys.executable, "-m", "together_reconcile", *args, "serve", "--port", "0"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert "abc" not in result.stderr
