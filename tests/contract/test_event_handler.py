"""SPEC "Event handler (WSGI)" and "Precise rules" — event handler order of checks, against a
running `together-reconcile serve` (gunicorn) over a loopback socket."""

from __future__ import annotations

import json
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.contract.conftest import Served, remember_secret

EMAIL = "Jane.Doe@Example.com"
TAG = "together-final-sale"


def ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def orders(served: Served) -> dict[str, Any]:
    control = served.world.sandbox.control
    main, short = served.accounts["main"], served.accounts["short"]

    def order(n: int, email: str, days: int, tags: list[str]) -> dict[str, Any]:
        return {
            "id": 880000 + n,
            "name": f"#{n}",
            "email": email,
            "created_at": ago(days),
            "tags": tags,
        }

    control.add_orders(
        main,
        [
            order(1, "jane.doe@example.com", 20, [TAG]),
            order(2, "JANE.DOE@EXAMPLE.COM", 2, [TAG, "vip"]),
            order(3, "jane.doe@example.com", 5, ["vip"]),
            order(4, "jane.doe@example.com", 75, [TAG]),
            order(5, "other@example.com", 1, [TAG]),
        ],
    )
    control.add_orders(
        short,
        [
            order(6, "jane.doe@example.com", 10, [TAG]),
            order(7, "jane.doe@example.com", 45, [TAG]),
        ],
    )
    return {"main": main, "short": short}


def event(served: Served, role: str, email: Any = EMAIL, **extra: Any) -> dict[str, Any]:
    body = {
        "ticket_id": "123",
        "account_domain": f"{served.accounts[role]}.gorgias.com",
        "customer_email": email,
    }
    body.update(extra)
    return body


def call(served: Served, role: str = "main", email: Any = EMAIL, **kw: Any) -> httpx.Response:
    domain = f"{served.accounts[role]}.gorgias.com"
    return served.post(event(served, role, email), token=served.token(domain), **kw)


def assert_error(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    document = answer.json()
    assert set(document) == {"error"}
    assert set(document["error"]) == {"code", "message"}
    assert document["error"]["code"] and document["error"]["message"]
    code: str = document["error"]["code"]
    return code


# -- the 200 rows ------------------------------------------------------------------------------


def test_handler_valid_event_answers_the_final_sale_orders(
    served: Served, orders: dict[str, Any]
) -> None:
    answer = call(served)
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["shopify_store"] == f"{orders['main']}.myshopify.com"
    assert document["lookback_days"] == 60
    assert document["final_sale_order_count"] == 2
    assert [o["name"] for o in document["final_sale_orders"]] == ["#2", "#1"]
    for order in document["final_sale_orders"]:
        assert {"name", "created_at", "admin_url"} <= set(order)


def test_handler_orders_are_newest_first(served: Served, orders: dict[str, Any]) -> None:
    created = [o["created_at"] for o in call(served).json()["final_sale_orders"]]
    assert created == sorted(created, reverse=True) and len(created) == 2


def test_handler_created_at_is_iso_8601_utc(served: Served, orders: dict[str, Any]) -> None:
    for order in call(served).json()["final_sale_orders"]:
        stamp = order["created_at"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", stamp), stamp
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert parsed.utcoffset() == timedelta(0)


def test_handler_admin_url_format(served: Served, orders: dict[str, Any]) -> None:
    urls = [o["admin_url"] for o in call(served).json()["final_sale_orders"]]
    assert urls == [
        f"https://admin.shopify.com/store/{orders['main']}/orders/880002",
        f"https://admin.shopify.com/store/{orders['main']}/orders/880001",
    ]


def test_handler_email_match_is_case_insensitive(served: Served, orders: dict[str, Any]) -> None:
    lower = call(served, email="jane.doe@example.com").json()
    upper = call(served, email="JANE.DOE@EXAMPLE.COM").json()
    assert lower["final_sale_order_count"] == upper["final_sale_order_count"] == 2


def test_handler_lookback_days_of_the_account_file(served: Served, orders: dict[str, Any]) -> None:
    document = call(served, role="short").json()
    assert document["lookback_days"] == 30
    assert [o["name"] for o in document["final_sale_orders"]] == ["#6"]


@pytest.mark.parametrize("email", [None, "", "   ", "not-an-email", "@", "a@"])
def test_handler_null_empty_or_implausible_email_answers_200_empty(
    served: Served, orders: dict[str, Any], email: str | None
) -> None:
    answer = call(served, email=email)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}


def test_handler_no_matching_orders_answers_200_empty(
    served: Served, orders: dict[str, Any]
) -> None:
    answer = call(served, email="nobody-at-all@example.com")
    assert answer.status_code == 200
    assert answer.json() == {}


def test_handler_content_type_with_parameters_is_json(
    served: Served, orders: dict[str, Any]
) -> None:
    answer = call(served, content_type="application/json; charset=utf-8")
    assert answer.status_code == 200


def test_handler_account_domain_is_case_insensitive(served: Served, orders: dict[str, Any]) -> None:
    domain = f"{served.accounts['main']}.gorgias.com"
    body = {"ticket_id": 1, "account_domain": domain.upper(), "customer_email": EMAIL}
    answer = served.post(body, token=served.token(domain))
    assert answer.status_code == 200, answer.text


# -- the error rows ----------------------------------------------------------------------------


def test_handler_other_method_is_405(served: Served) -> None:
    assert_error(served.post(None, content=b"", method="GET"), 405)
    assert_error(served.post({}, method="PUT"), 405)


def test_handler_content_type_not_json_is_415(served: Served) -> None:
    domain = f"{served.accounts['main']}.gorgias.com"
    body = event(served, "main")
    assert_error(served.post(body, token=served.token(domain), content_type="text/plain"), 415)
    form = served.post(
        body, token=served.token(domain), content_type="application/x-www-form-urlencoded"
    )
    assert_error(form, 415)


def test_handler_body_over_64_kib_is_413(served: Served) -> None:
    big = json.dumps({"ticket_id": "1", "pad": "x" * (64 * 1024)}).encode()
    assert_error(served.post(None, content=big), 413)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'"a string"',
        json.dumps(
            {"ticket_id": True, "account_domain": "a.gorgias.com", "customer_email": None}
        ).encode(),
        json.dumps({"ticket_id": "1", "account_domain": 7, "customer_email": None}).encode(),
        json.dumps(
            {"ticket_id": "1", "account_domain": "a.gorgias.com", "customer_email": 5}
        ).encode(),
        json.dumps({"ticket_id": "1", "account_domain": "a.gorgias.com"}).encode(),
    ],
    ids=["not-json", "array", "string", "ticket-bool", "domain-int", "email-int", "email-missing"],
)
def test_handler_body_not_json_not_object_or_wrong_types_is_400(
    served: Served, body: bytes
) -> None:
    assert_error(served.post(None, content=body, token="anything"), 400)


def test_handler_missing_wrong_or_other_accounts_token_is_401(
    served: Served, orders: dict[str, Any]
) -> None:
    body = event(served, "main")
    assert_error(served.post(body), 401)
    assert_error(served.post(body, token="wrong-token"), 401)
    other = served.token(f"{served.accounts['short']}.gorgias.com")
    assert_error(served.post(body, token=other), 401)


def test_handler_unknown_or_disabled_account_is_404(served: Served) -> None:
    unknown = "nobody-here.gorgias.com"
    body = {"ticket_id": "1", "account_domain": unknown, "customer_email": EMAIL}
    assert_error(served.post(body, token=served.token(unknown)), 404)
    assert_error(call(served, role="off"), 404)


# -- the order of checks: 405 → 415 → 413 → 400 → 401 → 404 ----------------------------------


def test_handler_checks_405_before_415(served: Served) -> None:
    assert_error(served.post(None, content=b"x", method="PUT", content_type="text/plain"), 405)


def test_handler_checks_415_before_413(served: Served) -> None:
    big = b"x" * (70 * 1024)
    assert_error(served.post(None, content=big, content_type="text/plain"), 415)


def test_handler_checks_413_before_400(served: Served) -> None:
    assert_error(served.post(None, content=b"{" * (70 * 1024)), 413)


def test_handler_checks_400_before_401(served: Served) -> None:
    assert_error(served.post(None, content=b"{not json"), 400)
    body = {"ticket_id": "1", "account_domain": "a.gorgias.com", "customer_email": 5}
    assert_error(served.post(body), 400)


def test_handler_checks_401_before_404(served: Served) -> None:
    unknown = {
        "ticket_id": "1",
        "account_domain": "nobody-here.gorgias.com",
        "customer_email": None,
    }
    assert_error(served.post(unknown), 401)
    assert_error(served.post(unknown, token="wrong"), 401)
    disabled = event(served, "off")
    assert_error(served.post(disabled, token="wrong"), 401)


# -- Shopify failing or too slow ---------------------------------------------------------------


def test_handler_shopify_error_is_502(served: Served, orders: dict[str, Any]) -> None:
    control = served.world.sandbox.control
    control.add_fault(
        target="shopify",
        kind="status",
        status=500,
        path_contains=f"/shopify/{orders['main']}/",
        count=None,
    )
    try:
        assert_error(call(served), 502)
    finally:
        control.clear_faults()


def test_handler_answers_within_6_s_and_504_when_shopify_is_too_slow(
    served: Served, orders: dict[str, Any]
) -> None:
    control = served.world.sandbox.control
    control.add_fault(
        target="shopify",
        kind="slow",
        delay_s=9,
        path_contains=f"/shopify/{orders['main']}/",
        count=None,
    )
    try:
        started = time.monotonic()
        answer = call(served, timeout=15)
        elapsed = time.monotonic() - started
    finally:
        control.clear_faults()
    assert_error(answer, 504)
    assert elapsed < 6.0, elapsed


def test_handler_uses_the_shopify_api_version_setting(
    served: Served, orders: dict[str, Any]
) -> None:
    control = served.world.sandbox.control
    control.clear_requests()
    assert call(served).status_code == 200
    paths = [r["path"] for r in control.requests() if r["target"] == "shopify"]
    assert paths and all("/admin/api/2025-07/graphql.json" in p for p in paths)


# -- health, readiness, privacy ----------------------------------------------------------------


def test_handler_healthz_and_readyz_answer_200(served: Served) -> None:
    assert served.get("/healthz").status_code == 200
    assert served.get("/readyz").status_code == 200


def test_handler_logs_no_customer_email_or_token(served: Served, orders: dict[str, Any]) -> None:
    domain = f"{served.accounts['main']}.gorgias.com"
    remember_secret(served.token(domain))

    def json_lines() -> int:
        return sum(line.startswith("{") for line in served.handler.stderr().splitlines())

    before = json_lines()
    assert call(served, email="private.person@example.com").status_code == 200
    # wait for this request's own log line: checking the log before it is written proves nothing
    deadline = time.monotonic() + 10
    while json_lines() == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert json_lines() > before, "the request wrote no JSON log line"
    logs = served.handler.stderr()
    assert "private.person@example.com" not in logs.lower()
    assert EMAIL.lower() not in logs.lower()
    assert served.token(domain) not in logs


def test_handler_413_may_close_without_reading_the_rest(served: Served) -> None:
    """A huge declared body gets its 413 without the client sending it all."""
    with socket.create_connection(("127.0.0.1", served.handler.port), timeout=5) as sock:
        sock.sendall(
            b"POST /gorgias/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n{"
        )
        head = sock.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413")
