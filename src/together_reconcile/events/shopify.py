"""The final-sale orders lookup: one Admin GraphQL query and the client that runs it.

Every lookup runs against a deadline (the handler gives it 5 s): each HTTP request gets the
time that is left, and a spent budget is a `ShopifyTimeout` (504). Every other failure is a
`ShopifyError` with a code that says which (502). No message ever contains the access token
or the customer's email.
"""

from __future__ import annotations

import json
import os
import re
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from together_reconcile.events.answer import FinalSaleOrder, admin_url, summarize_items
from together_reconcile.http import CookielessClient, PerThreadTransport

# 2026-04 is the version of the schema file the contract test validates the query against
# (tests/fixtures/shopify-admin-2026-04.schema.graphql); it is supported until mid-2027.
# Move this, the schema file and its test together. `TOGETHER_SHOPIFY_API_VERSION` overrides.
DEFAULT_API_VERSION = "2026-04"
DEFAULT_URL_TEMPLATE = "https://{store}.myshopify.com"
FINAL_SALE_TAG = "together-final-sale"
MAX_ORDERS = 50
PAGE_SIZE = 25
LINE_ITEMS_SHOWN = 5
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
DEFAULT_THROTTLE_WAIT_S = 1.0
MIN_REQUEST_TIME_S = 0.1

FINAL_SALE_ORDERS_QUERY = """
query FinalSaleOrders($query: String!, $first: Int!, $after: String) {
  orders(first: $first, after: $after, query: $query, sortKey: CREATED_AT, reverse: true) {
    nodes {
      id
      name
      email
      createdAt
      displayFinancialStatus
      displayFulfillmentStatus
      tags
      totalPriceSet { shopMoney { amount currencyCode } }
      lineItems(first: 5) { nodes { name quantity } pageInfo { hasNextPage } }
    }
    pageInfo { hasNextPage endCursor }
  }
}
""".strip()

_ORDER_GID_RE = re.compile(r"^gid://shopify/Order/([0-9]{1,20})$")
_SEARCH_SPECIAL = re.compile(r'([\\":()])')


# -- Errors ---------------------------------------------------------------------------------


class ShopifyError(Exception):
    """A failed lookup. `code` and `http_status` are what the handler answers with."""

    code = "shopify_error"
    http_status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ShopifyTimeout(ShopifyError):
    code = "shopify_timeout"
    http_status = 504


class ShopifyUnavailable(ShopifyError):
    code = "shopify_unavailable"


class ShopifyUnauthorized(ShopifyError):
    code = "shopify_unauthorized"


class ShopifyThrottled(ShopifyError):
    code = "shopify_throttled"


class ShopifyBadResponse(ShopifyError):
    code = "shopify_bad_response"


# -- The search string ----------------------------------------------------------------------


def escape_search_value(value: str) -> str:
    """Quote `value` for Shopify's search syntax so that it is one literal term.

    Backslash, double quote, colon and parentheses are backslash-escaped inside the quotes;
    control characters are refused (no plausible email has them).
    """
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError("search value contains a control character")
    return '"' + _SEARCH_SPECIAL.sub(r"\\\1", value) + '"'


def format_utc(moment: datetime) -> str:
    """ISO-8601 UTC with a `Z`, to the second: `2026-11-01T12:00:00Z`."""
    if moment.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_search_query(email: str, cutoff: datetime) -> str:
    """`email:"…" created_at:>="…" tag:"together-final-sale"` — every value quoted.

    Only the email comes from outside; it is escaped. The date and the tag are ours and have
    no character that needs escaping inside quotes.
    """
    return (
        f"email:{escape_search_value(email)} "
        f'created_at:>="{format_utc(cutoff)}" '
        f'tag:"{FINAL_SALE_TAG}"'
    )


# -- Response shapes ------------------------------------------------------------------------


class _Money(BaseModel):
    amount: str
    currency_code: str = Field(alias="currencyCode")


class _MoneyBag(BaseModel):
    shop_money: _Money = Field(alias="shopMoney")


class _LineItem(BaseModel):
    name: str
    quantity: int


class _PageInfo(BaseModel):
    has_next_page: bool = Field(alias="hasNextPage")
    end_cursor: str | None = Field(None, alias="endCursor")


class _LineItemPageInfo(BaseModel):
    has_next_page: bool = Field(False, alias="hasNextPage")


class _LineItems(BaseModel):
    nodes: list[_LineItem]
    page_info: _LineItemPageInfo = Field(default_factory=_LineItemPageInfo, alias="pageInfo")


class _OrderNode(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str
    email: str | None
    created_at: datetime = Field(alias="createdAt")
    display_financial_status: str | None = Field(alias="displayFinancialStatus")
    display_fulfillment_status: str = Field(alias="displayFulfillmentStatus")
    tags: list[str]
    total_price_set: _MoneyBag = Field(alias="totalPriceSet")
    line_items: _LineItems = Field(alias="lineItems")


class _OrdersConnection(BaseModel):
    nodes: list[_OrderNode]
    page_info: _PageInfo = Field(alias="pageInfo")


class _OrdersData(BaseModel):
    orders: _OrdersConnection


# -- The client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopifySettings:
    url_template: str = DEFAULT_URL_TEMPLATE
    api_version: str = DEFAULT_API_VERSION

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ShopifySettings:
        return cls(
            url_template=environ.get("TOGETHER_SHOPIFY_URL") or DEFAULT_URL_TEMPLATE,
            api_version=environ.get("TOGETHER_SHOPIFY_API_VERSION") or DEFAULT_API_VERSION,
        )

    def endpoint(self, store_domain: str) -> str:
        subdomain = store_domain.split(".", 1)[0]
        base = self.url_template.format(store=subdomain).rstrip("/")
        return f"{base}/admin/api/{self.api_version}/graphql.json"


def new_http_client() -> httpx.Client:
    """A keep-alive client; one per process, shared by all threads (a small pool per thread,
    no cookie jar: see `httppool`)."""
    return CookielessClient(
        transport=PerThreadTransport(keepalive_expiry=30),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        follow_redirects=False,
    )


class ShopifyClient:
    """Runs `FINAL_SALE_ORDERS_QUERY` for one customer within a deadline. Thread-safe."""

    def __init__(
        self,
        settings: ShopifySettings | None = None,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or ShopifySettings.from_env()
        self._http = http
        self._http_lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            with self._http_lock:
                if self._http is None:
                    self._http = new_http_client()
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def final_sale_orders(
        self,
        store_domain: str,
        access_token: str,
        email: str,
        cutoff: datetime,
        *,
        deadline: float,
    ) -> list[FinalSaleOrder]:
        """The customer's final-sale orders since `cutoff`, newest first, at most 50."""
        search = build_search_query(email, cutoff)
        wanted_email = ascii_lower(email)
        subdomain = store_domain.split(".", 1)[0]
        found: list[FinalSaleOrder] = []
        seen: set[str] = set()
        after: str | None = None
        retry_left = 1
        while len(found) < MAX_ORDERS:
            variables = {"query": search, "first": PAGE_SIZE, "after": after}
            try:
                connection = self._fetch_page(store_domain, access_token, variables, deadline)
            except _Throttled as throttled:
                wait = throttled.wait_s
                if retry_left and self._clock() + wait + MIN_REQUEST_TIME_S < deadline:
                    retry_left -= 1
                    self._sleep(wait)
                    continue
                raise ShopifyThrottled(
                    "Shopify throttled the orders query and the time budget does not allow "
                    "another try"
                ) from None
            for node in connection.nodes:
                if node.id in seen or not _matches(node, wanted_email, cutoff):
                    continue
                seen.add(node.id)
                found.append(_to_order(node, subdomain))
            if not connection.page_info.has_next_page or not connection.page_info.end_cursor:
                break
            after = connection.page_info.end_cursor
        found.sort(key=lambda order: order.created_at, reverse=True)
        return found[:MAX_ORDERS]

    def _fetch_page(
        self,
        store_domain: str,
        access_token: str,
        variables: dict[str, Any],
        deadline: float,
    ) -> _OrdersConnection:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ShopifyTimeout("Shopify did not answer within the time budget")
        body = json.dumps({"query": FINAL_SALE_ORDERS_QUERY, "variables": variables})
        try:
            with self.http.stream(
                "POST",
                self.settings.endpoint(store_domain),
                content=body.encode(),
                headers={"X-Shopify-Access-Token": access_token},
                timeout=httpx.Timeout(remaining),
            ) as response:
                raw = self._read_limited(response, deadline)
        except httpx.TimeoutException:
            raise ShopifyTimeout("Shopify did not answer within the time budget") from None
        except httpx.TransportError as error:
            raise ShopifyUnavailable(f"could not reach Shopify ({type(error).__name__})") from None
        return _parse_page(response, raw)

    def _read_limited(self, response: httpx.Response, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ShopifyBadResponse("Shopify's answer is larger than expected")
            if self._clock() > deadline:
                raise ShopifyTimeout("Shopify did not answer within the time budget")
            chunks.append(chunk)
        return b"".join(chunks)


class _Throttled(Exception):
    def __init__(self, wait_s: float) -> None:
        super().__init__("throttled")
        self.wait_s = wait_s


def _parse_page(response: httpx.Response, raw: bytes) -> _OrdersConnection:
    status = response.status_code
    if status in (401, 403):
        raise ShopifyUnauthorized(
            f"Shopify refused the store's access token (HTTP {status}); the merchant may need "
            "to reconnect the store"
        )
    document: Any = None
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        document = None
    if status == 429 or _is_throttled(document):
        raise _Throttled(_throttle_wait(response, document))
    if status >= 500 or status in (402, 404, 423):
        raise ShopifyUnavailable(f"Shopify answered HTTP {status}")
    if status != 200:
        raise ShopifyError(f"Shopify answered HTTP {status} to the orders query")
    if not isinstance(document, dict):
        raise ShopifyBadResponse("Shopify's answer is not a JSON object")
    errors = document.get("errors")
    if errors:
        codes = sorted(_error_codes(errors)) or ["unknown"]
        raise ShopifyError(f"Shopify answered the orders query with errors: {', '.join(codes)}")
    try:
        return _OrdersData.model_validate(document.get("data")).orders
    except ValidationError as error:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in error.errors()})[:3]
        raise ShopifyBadResponse(
            f"Shopify's answer does not have the expected shape (at {', '.join(fields)})"
        ) from None


def _error_codes(errors: Any) -> set[str]:
    codes: set[str] = set()
    if isinstance(errors, list):
        for error in errors:
            extensions = error.get("extensions") if isinstance(error, dict) else None
            code = extensions.get("code") if isinstance(extensions, dict) else None
            if isinstance(code, str) and re.fullmatch(r"[A-Z_]{1,40}", code):
                codes.add(code)
    return codes


def _is_throttled(document: Any) -> bool:
    return isinstance(document, dict) and "THROTTLED" in _error_codes(document.get("errors"))


def _throttle_wait(response: httpx.Response, document: Any) -> float:
    retry_after = response.headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    try:
        cost = document["extensions"]["cost"]
        status = cost["throttleStatus"]
        needed = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
        return max(0.0, needed / float(status["restoreRate"]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return DEFAULT_THROTTLE_WAIT_S


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_lower(email: str) -> str:
    """`email` with only the ASCII letters A-Z lower-cased: the one folding the exact match
    allows. Unicode folding would merge addresses that differ (`casefold()` makes `straße`
    `strasse`, and the Kelvin sign `K` a `k`), handing one customer another's orders."""
    return email.translate(_ASCII_LOWER)


def _matches(node: _OrderNode, wanted_email: str, cutoff: datetime) -> bool:
    """Search is an index, not an exact match: re-check every order we were given."""
    if node.email is None or ascii_lower(node.email) != wanted_email:
        return False
    created = node.created_at
    if created.tzinfo is None:
        return False
    if created < cutoff:
        return False
    return any(tag.strip().lower() == FINAL_SALE_TAG for tag in node.tags)


def _to_order(node: _OrderNode, store_subdomain: str) -> FinalSaleOrder:
    match = _ORDER_GID_RE.match(node.id)
    if match is None:
        raise ShopifyBadResponse("Shopify returned an order id of an unexpected form")
    money = node.total_price_set.shop_money
    try:
        total = Decimal(money.amount)
    except InvalidOperation:
        raise ShopifyBadResponse("Shopify returned an order total that is not a number") from None
    if not total.is_finite():
        raise ShopifyBadResponse("Shopify returned an order total that is not a number")
    items = [(item.name, item.quantity) for item in node.line_items.nodes[:LINE_ITEMS_SHOWN]]
    more = node.line_items.page_info.has_next_page or len(node.line_items.nodes) > len(items)
    return FinalSaleOrder(
        name=node.name,
        created_at=format_utc(node.created_at),
        admin_url=admin_url(store_subdomain, int(match.group(1))),
        total=str(total),
        currency=money.currency_code,
        financial_status=node.display_financial_status,
        fulfillment_status=node.display_fulfillment_status,
        items=summarize_items(items, more=more),
    )
