"""Unit tests of the Shopify client on httpx.MockTransport (this module only)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from together_reconcile.events.shopify import (
    FINAL_SALE_TAG,
    MAX_ORDERS,
    ShopifyBadResponse,
    ShopifyClient,
    ShopifyError,
    ShopifySettings,
    ShopifyThrottled,
    ShopifyTimeout,
    ShopifyUnauthorized,
    ShopifyUnavailable,
)

TOKEN = "shpat_0123456789abcdef0123456789abcdef"
EMAIL = "Jane.Doe@Example.com"
CUTOFF = datetime(2026, 9, 2, 12, 0, tzinfo=UTC)
SETTINGS = ShopifySettings(url_template="http://shop.test/{store}", api_version="2026-04")


def node(number: int, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"gid://shopify/Order/{number}",
        "name": f"#{number}",
        "email": "jane.doe@example.com",
        "createdAt": "2026-10-01T10:00:00Z",
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "UNFULFILLED",
        "tags": ["vip", FINAL_SALE_TAG],
        "totalPriceSet": {"shopMoney": {"amount": "49.90", "currencyCode": "EUR"}},
        "lineItems": {
            "nodes": [{"name": "Blue shirt", "quantity": 2}, {"name": "Hat", "quantity": 1}],
            "pageInfo": {"hasNextPage": False},
        },
    }
    base.update(overrides)
    return base


def page(nodes: list[dict[str, Any]], cursor: str | None = None) -> dict[str, Any]:
    return {
        "data": {
            "orders": {
                "nodes": nodes,
                "pageInfo": {"hasNextPage": cursor is not None, "endCursor": cursor},
            }
        },
        "extensions": {"cost": {"requestedQueryCost": 52, "actualQueryCost": 4}},
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, clock: FakeClock | None = None) -> ShopifyClient:
    clock = clock or FakeClock()
    return ShopifyClient(
        SETTINGS,
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        clock=clock,
        sleep=clock.sleep,
    )


def lookup(client: ShopifyClient, deadline: float = 1005.0) -> list[Any]:
    return client.final_sale_orders("acme.myshopify.com", TOKEN, EMAIL, CUTOFF, deadline=deadline)


def test_sends_the_query_and_maps_orders() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=page([node(7, createdAt="2026-10-02T10:00:00+02:00")]))

    (order,) = lookup(client_for(handler))
    request = seen[0]
    assert str(request.url) == "http://shop.test/acme/admin/api/2026-04/graphql.json"
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
    body = json.loads(request.content)
    assert body["variables"]["query"] == (
        'email:"Jane.Doe@Example.com" created_at:>="2026-09-02T12:00:00Z" tag:"together-final-sale"'
    )
    assert body["variables"]["first"] == 25
    assert order.model_dump() == {
        "name": "#7",
        "created_at": "2026-10-02T08:00:00Z",
        "admin_url": "https://admin.shopify.com/store/acme/orders/7",
        "total": "49.90",
        "currency": "EUR",
        "financial_status": "PAID",
        "fulfillment_status": "UNFULFILLED",
        "items": "2 × Blue shirt, 1 × Hat",
    }


def test_every_returned_order_is_rechecked() -> None:
    nodes = [
        node(1),
        node(2, email="someone.else@example.com"),
        node(3, email=None),
        node(4, createdAt="2026-09-02T11:59:59Z"),
        node(5, tags=["vip"]),
        node(6, email="JANE.DOE@EXAMPLE.COM", createdAt="2026-11-01T00:00:00Z"),
    ]
    orders = lookup(client_for(lambda request: httpx.Response(200, json=page(nodes))))
    assert [order.name for order in orders] == ["#6", "#1"]


def test_pages_until_the_cap() -> None:
    calls: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        variables = json.loads(request.content)["variables"]
        calls.append(variables)
        start = len(calls) * 100
        return httpx.Response(
            200, json=page([node(start + i) for i in range(25)], cursor=f"c{len(calls)}")
        )

    orders = lookup(client_for(handler))
    assert len(orders) == MAX_ORDERS
    assert [call["after"] for call in calls] == [None, "c1"]


def test_more_line_items_are_marked() -> None:
    many = {
        "nodes": [{"name": f"Item {i}", "quantity": 1} for i in range(5)],
        "pageInfo": {"hasNextPage": True},
    }
    (order,) = lookup(
        client_for(lambda request: httpx.Response(200, json=page([node(1, lineItems=many)])))
    )
    assert order.items.endswith(", …")


@pytest.mark.parametrize(
    ("response", "error", "code"),
    [
        (
            httpx.Response(401, json={"errors": "Invalid API key"}),
            ShopifyUnauthorized,
            "shopify_unauthorized",
        ),
        (httpx.Response(403, text="forbidden"), ShopifyUnauthorized, "shopify_unauthorized"),
        (httpx.Response(500, text="oops"), ShopifyUnavailable, "shopify_unavailable"),
        (httpx.Response(503, text="down"), ShopifyUnavailable, "shopify_unavailable"),
        (httpx.Response(423, text="locked"), ShopifyUnavailable, "shopify_unavailable"),
        (httpx.Response(400, text="bad"), ShopifyError, "shopify_error"),
        (
            httpx.Response(
                200, json={"errors": [{"message": "x", "extensions": {"code": "ACCESS_DENIED"}}]}
            ),
            ShopifyError,
            "shopify_error",
        ),
        (httpx.Response(200, text="{not json"), ShopifyBadResponse, "shopify_bad_response"),
        (httpx.Response(200, json=[1, 2]), ShopifyBadResponse, "shopify_bad_response"),
        (
            httpx.Response(200, json={"data": {"orders": {"nodes": "x"}}}),
            ShopifyBadResponse,
            "shopify_bad_response",
        ),
        (
            httpx.Response(200, json=page([node(1, id="42")])),
            ShopifyBadResponse,
            "shopify_bad_response",
        ),
        (
            httpx.Response(
                200,
                json=page(
                    [node(1, totalPriceSet={"shopMoney": {"amount": "NaN", "currencyCode": "EUR"}})]
                ),
            ),
            ShopifyBadResponse,
            "shopify_bad_response",
        ),
    ],
)
def test_failures_have_their_own_codes(
    response: httpx.Response, error: type[ShopifyError], code: str
) -> None:
    with pytest.raises(error) as raised:
        lookup(client_for(lambda request: response))
    assert raised.value.code == code
    assert raised.value.http_status == 502
    assert TOKEN not in str(raised.value)
    assert EMAIL.lower() not in str(raised.value).lower()


def throttled_body(available: float = 10.0) -> dict[str, Any]:
    return {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {
            "cost": {
                "requestedQueryCost": 52,
                "actualQueryCost": None,
                "throttleStatus": {
                    "maximumAvailable": 1000.0,
                    "currentlyAvailable": available,
                    "restoreRate": 50.0,
                },
            }
        },
    }


def test_throttled_retries_once_after_the_computed_wait() -> None:
    answers = iter(
        [httpx.Response(200, json=throttled_body()), httpx.Response(200, json=page([node(1)]))]
    )
    clock = FakeClock()
    orders = lookup(client_for(lambda request: next(answers), clock))
    assert [order.name for order in orders] == ["#1"]
    assert clock.slept == [pytest.approx((52 - 10) / 50)]


def test_throttled_twice_gives_up() -> None:
    clock = FakeClock()
    with pytest.raises(ShopifyThrottled) as raised:
        lookup(
            client_for(
                lambda request: httpx.Response(
                    429, headers={"Retry-After": "1"}, json=throttled_body()
                ),
                clock,
            )
        )
    assert raised.value.code == "shopify_throttled"
    assert clock.slept == [1.0]


def test_throttled_without_budget_does_not_wait() -> None:
    clock = FakeClock()
    with pytest.raises(ShopifyThrottled):
        lookup(client_for(lambda request: httpx.Response(429, headers={"Retry-After": "9"}), clock))
    assert clock.slept == []


def test_spent_budget_is_a_timeout() -> None:
    with pytest.raises(ShopifyTimeout) as raised:
        lookup(client_for(lambda request: httpx.Response(200, json=page([]))), deadline=999.0)
    assert raised.value.http_status == 504
    assert raised.value.code == "shopify_timeout"


def test_transport_timeout_is_a_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ShopifyTimeout):
        lookup(client_for(handler))


def test_connection_failure_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ShopifyUnavailable, match="could not reach Shopify"):
        lookup(client_for(handler))


def test_settings_from_env() -> None:
    settings = ShopifySettings.from_env(
        {
            "TOGETHER_SHOPIFY_URL": "http://127.0.0.1:9/shopify/{store}/",
            "TOGETHER_SHOPIFY_API_VERSION": "2026-07",
        }
    )
    assert settings.endpoint("acme.myshopify.com") == (
        "http://127.0.0.1:9/shopify/acme/admin/api/2026-07/graphql.json"
    )
    assert ShopifySettings.from_env({}).endpoint("acme.myshopify.com") == (
        "https://acme.myshopify.com/admin/api/2026-04/graphql.json"
    )
