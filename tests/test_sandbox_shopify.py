"""The Shopify stand-in over real sockets: auth, orders query, paging, cost, throttling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from together_reconcile.sandbox import RunningSandbox
from together_reconcile.sandbox.searchsyntax import quote

TOKEN = "sandbox-shopify-acme"
QUERY = """
query Q($query: String!, $first: Int!, $after: String) {
  orders(first: $first, after: $after, query: $query, sortKey: CREATED_AT, reverse: true) {
    nodes { id name }
    pageInfo { hasNextPage endCursor }
  }
}
"""
INVALID = "[API] Invalid API key or access token (unrecognized login or wrong password)"


def make_order(oid: int, email: str, created: str, tags: list[str]) -> dict[str, Any]:
    return {
        "id": oid,
        "name": f"#{oid}",
        "email": email,
        "created_at": created,
        "tags": tags,
        "total": "120.00",
        "currency": "USD",
        "financial_status": "PAID",
        "fulfillment_status": "FULFILLED",
        "line_items": [{"name": "Mug", "quantity": 2}, {"name": "Tea", "quantity": 1}],
    }


@pytest.fixture
def shop(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    sandbox.control.add_shopify_store("acme", TOKEN)
    sandbox.control.add_shopify_store("globex", "sandbox-shopify-globex")
    sandbox.control.add_orders(
        "acme",
        [
            make_order(1, "jane@example.com", "2026-11-01T10:00:00Z", ["together-final-sale"]),
            make_order(2, "jane@example.com", "2026-11-03T10:00:00Z", []),
            make_order(3, "jane@example.com", "2026-11-02T10:00:00Z", ["together-final-sale"]),
            make_order(4, "john@example.com", "2026-11-04T10:00:00Z", ["together-final-sale"]),
            make_order(5, "jane@example.com", "2026-07-01T10:00:00Z", ["together-final-sale"]),
        ],
    )
    base = sandbox.shopify_url_template.format(store="acme") + "/admin/api/2026-04"
    headers = {"X-Shopify-Access-Token": TOKEN}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        yield client


def orders(shop: httpx.Client, search: str, first: int = 10, after: str | None = None) -> Any:
    variables = {"query": search, "first": first, "after": after}
    answer = shop.post("/graphql.json", json={"query": QUERY, "variables": variables})
    assert answer.status_code == 200
    return answer.json()


def test_auth_and_unknown_store(sandbox: RunningSandbox, shop: httpx.Client) -> None:
    for headers in ({"X-Shopify-Access-Token": "wrong"}, {"X-Shopify-Access-Token": ""}):
        answer = shop.post("/graphql.json", json={"query": QUERY}, headers=headers)
        assert answer.status_code == 401
        assert answer.json() == {"errors": INVALID}
    other = {"X-Shopify-Access-Token": "sandbox-shopify-globex"}
    assert shop.post("/graphql.json", json={"query": QUERY}, headers=other).status_code == 401
    url = sandbox.shopify_url_template.format(store="nosuch") + "/admin/api/2026-04/graphql.json"
    answer = httpx.post(url, json={"query": QUERY}, headers={"X-Shopify-Access-Token": TOKEN})
    assert answer.status_code == 404
    assert answer.json() == {"errors": "Not Found"}
    assert shop.post("/../v1/graphql.json", json={}).status_code == 404


def test_final_sale_query_newest_first(shop: httpx.Client) -> None:
    search = (
        f"email:{quote('jane@example.com')} "
        'created_at:>="2026-10-01T00:00:00Z" tag:"together-final-sale"'
    )
    body = orders(shop, search)
    names = [node["name"] for node in body["data"]["orders"]["nodes"]]
    assert names == ["#3", "#1"]
    page_info = body["data"]["orders"]["pageInfo"]
    assert page_info["hasNextPage"] is False


def test_node_shape(shop: httpx.Client) -> None:
    node = orders(shop, "email:john@example.com")["data"]["orders"]["nodes"][0]
    assert node["id"] == "gid://shopify/Order/4"
    assert node["createdAt"] == "2026-11-04T10:00:00Z"
    assert node["processedAt"] == "2026-11-04T10:00:00Z"
    assert node["cancelledAt"] is None
    assert node["displayFinancialStatus"] == "PAID"
    assert node["displayFulfillmentStatus"] == "FULFILLED"
    assert node["tags"] == ["together-final-sale"]
    assert node["totalPriceSet"]["shopMoney"] == {"amount": "120.00", "currencyCode": "USD"}
    assert [(li["name"], li["quantity"]) for li in node["lineItems"]["nodes"]] == [
        ("Mug", 2),
        ("Tea", 1),
    ]
    assert node["lineItems"]["pageInfo"]["hasNextPage"] is False


def test_paging_with_edges_and_after(shop: httpx.Client) -> None:
    seen: list[str] = []
    after = None
    while True:
        connection = orders(shop, "email:jane@example.com", first=1, after=after)["data"]["orders"]
        assert [e["node"] for e in connection["edges"]] == connection["nodes"]
        seen += [n["name"] for n in connection["nodes"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
        assert after == connection["edges"][-1]["cursor"]
    assert seen == ["#2", "#3", "#1", "#5"]


def test_literal_arguments_and_default_sort(shop: httpx.Client) -> None:
    query = '{ orders(first: 2, query: "tag:together-final-sale", sortKey: ID) { nodes { id } } }'
    body = shop.post("/graphql.json", json={"query": query}).json()
    ids = [n["id"] for n in body["data"]["orders"]["nodes"]]
    assert ids == ["gid://shopify/Order/1", "gid://shopify/Order/3"]


def test_cost_extension_and_bucket(shop: httpx.Client) -> None:
    cost = orders(shop, "email:jane@example.com", first=10)["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 2 + 10 * 13
    assert cost["actualQueryCost"] == 2 + 4 * 5
    status = cost["throttleStatus"]
    assert status["maximumAvailable"] == 2000.0
    assert status["restoreRate"] == 100.0
    assert 1970 <= status["currentlyAvailable"] <= 2000


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (
            'email:"unterminated',
            "Invalid search query: unterminated quoted value starting at position 6",
        ),
        ("colour:red", "Invalid search query: unknown search field 'colour' at position 0"),
    ],
)
def test_unparseable_search_is_a_graphql_error(
    shop: httpx.Client, search: str, message: str
) -> None:
    body = orders(shop, search)
    assert body == {"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]}


def test_bare_word_matches_nothing(shop: httpx.Client) -> None:
    assert orders(shop, "jane@example.com")["data"]["orders"]["nodes"] == []


@pytest.mark.parametrize(
    ("payload", "status", "expected"),
    [
        ("not json", 400, {"errors": "Bad Request: the body is not valid JSON"}),
        ([1], 400, {"errors": "Bad Request: give a JSON object with a query"}),
    ],
)
def test_malformed_bodies(shop: httpx.Client, payload: Any, status: int, expected: Any) -> None:
    if isinstance(payload, str):
        answer = shop.post("/graphql.json", content=payload)
    else:
        answer = shop.post("/graphql.json", json=payload)
    assert answer.status_code == status
    assert answer.json() == expected


def test_bad_arguments(shop: httpx.Client) -> None:
    body = orders(shop, "tag:x", first=251)
    assert body["errors"][0]["message"] == "The 'first' argument must be at most 250"
    too_costly = QUERY.replace(
        "nodes { id name }", "nodes { id lineItems(first: 100) { nodes { name } } }"
    )
    variables = {"query": "", "first": 50}
    answer = shop.post("/graphql.json", json={"query": too_costly, "variables": variables}).json()
    assert answer["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    answer = shop.post("/graphql.json", json={"query": "{ shop { name } }"}).json()
    assert answer["errors"][0]["extensions"]["code"] == "UNSUPPORTED"
    bad_cursor = orders(shop, "", after="nope")
    assert bad_cursor["errors"][0]["message"] == "Invalid 'after' cursor"


def test_throttled_fault_and_latency(sandbox: RunningSandbox, shop: httpx.Client) -> None:
    sandbox.control.add_fault("shopify", "throttled")
    body = orders(shop, "")
    assert body["errors"] == [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]
    assert body["extensions"]["cost"]["actualQueryCost"] is None
    assert "data" not in body
    assert "data" in orders(shop, "")


def test_shopify_faults_and_log(sandbox: RunningSandbox, shop: httpx.Client) -> None:
    sandbox.control.add_fault("shopify", "status", status=503)
    answer = shop.post("/graphql.json", json={"query": QUERY, "variables": {"first": 1}})
    assert answer.status_code == 503
    assert answer.json() == {"errors": "Service Unavailable"}
    sandbox.control.add_fault("shopify", "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        shop.post("/graphql.json", json={"query": QUERY})
    log = sandbox.control.requests()
    assert [(e["target"], e["account"], e["status"]) for e in log] == [
        ("shopify", "acme", 503),
        ("shopify", "acme", 0),
    ]
    assert all(TOKEN not in str(e) for e in log)


def test_real_throttling_when_the_bucket_is_empty(
    sandbox: RunningSandbox, shop: httpx.Client
) -> None:
    many = [make_order(100 + i, "bulk@example.com", "2026-10-01T00:00:00Z", []) for i in range(30)]
    for order in many:
        order["line_items"] = [{"name": f"item {n}", "quantity": 1} for n in range(30)]
    sandbox.control.add_orders("acme", many)
    query = QUERY.replace(
        "nodes { id name }", "nodes { id lineItems(first: 30) { nodes { name } } }"
    )
    variables = {"query": "email:bulk@example.com", "first": 30}
    costs = []
    for _ in range(3):  # each costs 2 + 30 x (3 + 30) = 992 points; the bucket holds 2000
        costs.append(
            shop.post("/graphql.json", json={"query": query, "variables": variables}).json()
        )
    assert [c["extensions"]["cost"]["actualQueryCost"] for c in costs[:2]] == [992, 992]
    assert costs[2]["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert costs[2]["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] < 992


def test_bad_seed_orders_are_refused(sandbox: RunningSandbox, shop: httpx.Client) -> None:
    from together_reconcile.sandbox import SandboxControlError

    with pytest.raises(SandboxControlError, match="order 9: created_at must be an ISO-8601"):
        sandbox.control.add_orders("acme", [{"id": 9, "created_at": "yesterday"}])
    with pytest.raises(SandboxControlError, match="order 1 already exists"):
        sandbox.control.add_orders("acme", [make_order(1, "a@b.c", "2026-01-01T00:00:00Z", [])])
