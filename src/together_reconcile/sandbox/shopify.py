"""The Shopify stand-in: `POST /shopify/{store}/admin/api/{version}/graphql.json`.

It serves one field, `orders(first:, after:, query:, sortKey:, reverse:)`, reading arguments
from the literal call or from `variables`, and answers a fixed, complete node shape (see
`order_node`) under both `nodes` and `edges`. `extensions.cost` follows a leaky bucket of
2000 points restoring 100/s per store; a request costing more than is available is THROTTLED.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from datetime import UTC, datetime
from typing import Any

from together_reconcile.sandbox.http import Request, Response, json_response
from together_reconcile.sandbox.searchsyntax import SearchSyntaxError, compile_query
from together_reconcile.sandbox.state import (
    SHOPIFY_BUCKET_SIZE,
    SHOPIFY_RESTORE_RATE,
    ControlError,
    SandboxState,
    ShopifyStore,
)

INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"  # noqa: S105
VERSION_RE = re.compile(r"^(\d{4}-\d{2}|unstable)$")
MAX_FIRST = 250
MAX_QUERY_COST = 1000
DEFAULT_LINE_ITEMS = 10
SORT_KEYS = {"CREATED_AT": "created_at", "PROCESSED_AT": "processed_at", "ID": "id"}
ARG_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<name>[A-Za-z_]\w*)\s*:\s*
      (?P<value>\$[A-Za-z_]\w*|-?\d+|"(?:[^"\\]|\\.)*"|true|false|null|[A-Z_][A-Z0-9_]*)
    )\s*,?""",
    re.VERBOSE,
)


def graphql_error(message: str, code: str, status: int = 200, **extra: Any) -> Response:
    body: dict[str, Any] = {"errors": [{"message": message, "extensions": {"code": code}}]}
    body.update(extra)
    return json_response(status, body)


def throttled_response(store: ShopifyStore | None, requested: int = 0) -> Response:
    available = store.available if store is not None else 0.0
    cost = {
        "requestedQueryCost": requested,
        "actualQueryCost": None,
        "throttleStatus": {
            "maximumAvailable": SHOPIFY_BUCKET_SIZE,
            "currentlyAvailable": int(available),
            "restoreRate": SHOPIFY_RESTORE_RATE,
        },
    }
    return graphql_error("Throttled", "THROTTLED", extensions={"cost": cost})


# ------------------------------------------------------------------ seeding
def normalize_order(raw: Any) -> dict[str, Any]:
    """Check one seeded order and fill defaults; raises ControlError naming the problem."""
    if not isinstance(raw, dict):
        raise ControlError("each order must be a JSON object")
    order = copy.deepcopy(raw)
    if not isinstance(order.get("id"), int) or isinstance(order.get("id"), bool):
        raise ControlError("order.id must be an integer")
    label = f"order {order['id']}"
    for key in ("created_at", "processed_at", "cancelled_at"):
        if order.get(key) is not None:
            try:
                moment = datetime.fromisoformat(str(order[key]).replace("Z", "+00:00"))
            except ValueError:
                raise ControlError(f"{label}: {key} must be an ISO-8601 datetime") from None
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
            order[key] = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if order.get("created_at") is None:
        raise ControlError(f"{label}: created_at is required")
    order.setdefault("processed_at", order["created_at"])
    order.setdefault("cancelled_at", None)
    order.setdefault("name", f"#{order['id']}")
    order.setdefault("email", None)
    order.setdefault("tags", [])
    order.setdefault("total", "0.00")
    order.setdefault("currency", "USD")
    order.setdefault("financial_status", "PAID")
    order.setdefault("fulfillment_status", "UNFULFILLED")
    order.setdefault("line_items", [])
    if not isinstance(order["tags"], list) or not all(isinstance(t, str) for t in order["tags"]):
        raise ControlError(f"{label}: tags must be a list of strings")
    if not isinstance(order["line_items"], list):
        raise ControlError(f"{label}: line_items must be a list")
    return order


def add_orders(state: SandboxState, store: str, orders: Any) -> int:
    if not isinstance(orders, list):
        raise ControlError("orders must be a list")
    normalized = [normalize_order(order) for order in orders]
    with state.lock:
        record = state.store(store)
        known = {order["id"] for order in record.orders}
        for order in normalized:
            if order["id"] in known:
                raise ControlError(f"order {order['id']} already exists in store {store!r}")
            known.add(order["id"])
        record.orders.extend(normalized)
    return len(normalized)


# ------------------------------------------------------------------ rendering
def _money(amount: str, currency: str) -> dict[str, Any]:
    return {"amount": str(amount), "currencyCode": currency}


def order_node(order: dict[str, Any], line_items_first: int) -> dict[str, Any]:
    items = order["line_items"]
    shown = items[:line_items_first]
    money = _money(order["total"], order["currency"])
    return {
        "id": f"gid://shopify/Order/{order['id']}",
        "name": order["name"],
        "email": order["email"],
        "createdAt": order["created_at"],
        "processedAt": order["processed_at"],
        "cancelledAt": order["cancelled_at"],
        "displayFinancialStatus": order["financial_status"],
        "displayFulfillmentStatus": order["fulfillment_status"],
        "tags": list(order["tags"]),
        "totalPriceSet": {"shopMoney": money, "presentmentMoney": dict(money)},
        "lineItems": {
            "nodes": [
                {
                    "id": f"gid://shopify/LineItem/{order['id'] * 1000 + index}",
                    "name": item.get("name"),
                    "title": item.get("name"),
                    "quantity": item.get("quantity", 1),
                    "sku": item.get("sku"),
                    "customAttributes": item.get("custom_attributes", []),
                }
                for index, item in enumerate(shown)
            ],
            "pageInfo": {
                "hasNextPage": len(items) > len(shown),
                "hasPreviousPage": False,
                "endCursor": None,
                "startCursor": None,
            },
        },
    }


def _cursor(order_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"last_id": order_id}).encode()).decode()


def _cursor_id(cursor: str) -> int | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))["last_id"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return value if isinstance(value, int) else None


# ------------------------------------------------------------------ query arguments
def _call_arguments(query: str, field: str) -> str | None:
    """The text between the parentheses of `field(...)`, or "" if called without them."""
    match = re.search(rf"(?<![\w$]){field}\s*(\(|\{{)", query)
    if match is None:
        return None
    if match.group(1) == "{":
        return ""
    depth, start = 0, match.end(1)
    in_string = False
    i = start
    while i < len(query):
        char = query[i]
        if in_string:
            if char == "\\":
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return query[start:i]
            depth -= 1
        i += 1
    return None


def _parse_arguments(text: str, variables: dict[str, Any]) -> dict[str, Any] | str:
    """Literal or `$variable` arguments; an error message string if unparseable."""
    args: dict[str, Any] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = ARG_TOKEN_RE.match(text, position)
        if match is None or match.end() == position:
            return f"cannot parse the arguments near character {position}"
        raw = match.group("value")
        value: Any
        if raw.startswith("$"):
            value = variables.get(raw[1:])
        elif raw.startswith('"'):
            value = json.loads(raw)
        elif raw in ("true", "false", "null"):
            value = {"true": True, "false": False, "null": None}[raw]
        elif raw.lstrip("-").isdigit():
            value = int(raw)
        else:
            value = raw
        args[match.group("name")] = value
        position = match.end()
    return args


# ------------------------------------------------------------------ entry point
def handle(state: SandboxState, request: Request, store_name: str, rest: str) -> Response:
    segments = [s for s in rest.split("/") if s]
    if (
        len(segments) != 4
        or segments[:2] != ["admin", "api"]
        or segments[3] != "graphql.json"
        or not VERSION_RE.match(segments[2])
    ):
        return json_response(404, {"errors": "Not Found"})
    with state.lock:
        store = state.stores.get(store_name)
        if store is None:
            return json_response(404, {"errors": "Not Found"})
        token = request.headers.get("x-shopify-access-token", "")
        if not token or token not in store.tokens:
            return json_response(401, {"errors": INVALID_TOKEN})
    if request.method != "POST":
        return json_response(405, {"errors": "Method Not Allowed"}, {"Allow": "POST"})
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return json_response(400, {"errors": "Bad Request: the body is not valid JSON"})
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return json_response(400, {"errors": "Bad Request: give a JSON object with a query"})
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        return graphql_error("Variables must be a JSON object", "BAD_REQUEST")
    response = _orders(state, store, body["query"], variables)
    response.headers["X-Shopify-API-Version"] = segments[2]
    return response


def _orders(
    state: SandboxState, store: ShopifyStore, query: str, variables: dict[str, Any]
) -> Response:
    text = _call_arguments(query, "orders")
    if text is None:
        return graphql_error("This sandbox only serves the 'orders' field", "UNSUPPORTED")
    args = _parse_arguments(text, variables)
    if isinstance(args, str):
        return graphql_error(f"Syntax error in orders arguments: {args}", "BAD_REQUEST")
    unknown = sorted(set(args) - {"first", "after", "query", "sortKey", "reverse"})
    if unknown:
        return graphql_error(
            f"Field 'orders' doesn't accept argument '{unknown[0]}'", "argumentNotAccepted"
        )
    first = args.get("first")
    if not isinstance(first, int) or isinstance(first, bool) or first < 1:
        return graphql_error("you must provide a positive 'first' argument", "BAD_REQUEST")
    if first > MAX_FIRST:
        return graphql_error(f"The 'first' argument must be at most {MAX_FIRST}", "BAD_REQUEST")
    sort_key = args.get("sortKey") or "PROCESSED_AT"
    if sort_key not in SORT_KEYS:
        return graphql_error(
            f"Argument 'sortKey' must be one of {sorted(SORT_KEYS)}", "BAD_REQUEST"
        )
    search = args.get("query")
    if search is not None and not isinstance(search, str):
        return graphql_error("Argument 'query' must be a string", "BAD_REQUEST")
    try:
        predicate = compile_query(search)
    except SearchSyntaxError as exc:
        return graphql_error(f"Invalid search query: {exc}", "BAD_REQUEST")

    line_items_text = _call_arguments(query, "lineItems")
    line_items_first = DEFAULT_LINE_ITEMS
    if line_items_text:
        li_args = _parse_arguments(line_items_text, variables)
        if isinstance(li_args, dict) and isinstance(li_args.get("first"), int):
            line_items_first = li_args["first"]
    requested = 2 + first * (3 + line_items_first)
    if requested > MAX_QUERY_COST:
        return graphql_error(
            f"Query cost is {requested}, which exceeds the single query max cost limit "
            f"({MAX_QUERY_COST}).",
            "MAX_COST_EXCEEDED",
        )

    with state.lock:
        store.restore(state.clock())
        if requested > store.available:
            return throttled_response(store, requested)
        field = SORT_KEYS[sort_key]
        ordered = sorted(
            store.orders, key=lambda o: (o[field], o["id"]), reverse=bool(args.get("reverse"))
        )
        matching = [order for order in ordered if predicate(order)]
        start = 0
        if args.get("after") is not None:
            after_id = _cursor_id(str(args["after"]))
            positions = [i for i, o in enumerate(matching) if o["id"] == after_id]
            if not positions:
                return graphql_error("Invalid 'after' cursor", "BAD_REQUEST")
            start = positions[0] + 1
        page = matching[start : start + first]
        nodes = [order_node(order, line_items_first) for order in page]
        actual = 2 + sum(3 + len(node["lineItems"]["nodes"]) for node in nodes)
        store.available -= actual
        available = store.available
    edges = [{"cursor": _cursor(o["id"]), "node": n} for o, n in zip(page, nodes, strict=True)]
    page_info = {
        "hasNextPage": start + first < len(matching),
        "hasPreviousPage": start > 0,
        "startCursor": edges[0]["cursor"] if edges else None,
        "endCursor": edges[-1]["cursor"] if edges else None,
    }
    cost = {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": SHOPIFY_BUCKET_SIZE,
            "currentlyAvailable": int(available),
            "restoreRate": SHOPIFY_RESTORE_RATE,
        },
    }
    data = {"orders": {"nodes": nodes, "edges": edges, "pageInfo": page_info}}
    return json_response(200, {"data": data, "extensions": {"cost": cost}})
