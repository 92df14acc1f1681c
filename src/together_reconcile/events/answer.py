"""The event handler's JSON answer: the one definition shared by `handler` and the widget.

Gorgias keeps the handler's JSON answer on the customer and the widget template (built by
`desired` from `WIDGET_FIELDS`) shows it in the sidebar. Both sides import this module, so a
field renamed here is renamed everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from together_reconcile.config import Account

ITEMS_SUMMARY_MAX_CHARS = 200
ADMIN_URL_TEMPLATE = "https://admin.shopify.com/store/{subdomain}/orders/{order_id}"


class FinalSaleOrder(BaseModel):
    """One final-sale order as the agent sees it in the sidebar."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description='Order name as the merchant sees it, e.g. "#1001".')
    created_at: str = Field(description='ISO-8601 UTC, e.g. "2026-11-01T12:00:00Z".')
    admin_url: str = Field(description="https://admin.shopify.com/store/<sub>/orders/<id>")
    total: str = Field(description='Order total as a decimal string, e.g. "49.90".')
    currency: str = Field(description='ISO 4217 code, e.g. "EUR".')
    financial_status: str | None = Field(description="Shopify's displayFinancialStatus.")
    fulfillment_status: str = Field(description="Shopify's displayFulfillmentStatus.")
    items: str = Field(description='Short summary, e.g. "2 × Blue shirt, 1 × Hat".')


class EventAnswer(BaseModel):
    """The whole answer to one Gorgias event (HTTP 200 body)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shopify_store: str
    lookback_days: int
    final_sale_order_count: int
    final_sale_orders: list[FinalSaleOrder]


def empty_answer(account: Account) -> EventAnswer:
    """The whole shape with no order: the answer to the reserved verification event only
    (`together_reconcile.verification`); any other event without an order answers `{}`."""
    return EventAnswer(
        shopify_store=account.shopify_store,
        lookback_days=account.lookback_days,
        final_sale_order_count=0,
        final_sale_orders=[],
    )


def admin_url(store_subdomain: str, order_id: int) -> str:
    """The Shopify admin link to one order."""
    return ADMIN_URL_TEMPLATE.format(subdomain=store_subdomain, order_id=order_id)


def summarize_items(
    items: Iterable[tuple[str, int]],
    *,
    more: bool = False,
    max_chars: int = ITEMS_SUMMARY_MAX_CHARS,
) -> str:
    """`"2 × Blue shirt, 1 × Hat"`; `…` marks items left out (by the caller or by length)."""
    parts = [f"{quantity} × {' '.join(name.split())}" for name, quantity in items]
    summary = ", ".join(parts)
    if more and summary:
        summary += ", …"
    if len(summary) > max_chars:
        summary = summary[: max_chars - 1].rstrip(" ,") + "…"
    return summary


# -- The widget template is built from these (see `desired`) -------------------------------

WidgetFieldType = Literal["text", "date", "url"]


@dataclass(frozen=True)
class WidgetField:
    """One leaf shown in the widget: the answer's key, how Gorgias renders it, its label."""

    key: str
    type: WidgetFieldType
    title: str


@dataclass(frozen=True)
class WidgetLayout:
    """What the sidebar shows: top-level leaves, then one card per order of `list_path`."""

    top_level: tuple[WidgetField, ...]
    list_path: str
    list_item_title: str
    list_item_fields: tuple[WidgetField, ...]


WIDGET_FIELDS = WidgetLayout(
    top_level=(
        WidgetField("shopify_store", "text", "Store"),
        WidgetField("final_sale_order_count", "text", "Final-sale orders"),
    ),
    list_path="final_sale_orders",
    list_item_title="{{name}}",
    list_item_fields=(
        WidgetField("created_at", "date", "Created"),
        WidgetField("admin_url", "url", "Open in Shopify"),
        WidgetField("total", "text", "Total"),
        WidgetField("currency", "text", "Currency"),
        WidgetField("financial_status", "text", "Payment"),
        WidgetField("fulfillment_status", "text", "Fulfilment"),
        WidgetField("items", "text", "Items"),
    ),
)


def sample_answer() -> EventAnswer:
    """A realistic answer, for tests and for previewing the widget."""
    orders = [
        FinalSaleOrder(
            name="#1002",
            created_at="2026-11-01T12:00:00Z",
            admin_url=admin_url("acme", 5_551_234_002),
            total="89.00",
            currency="EUR",
            financial_status="PAID",
            fulfillment_status="UNFULFILLED",
            items=summarize_items([("Blue shirt", 2), ("Hat", 1)]),
        ),
        FinalSaleOrder(
            name="#1001",
            created_at="2026-10-12T08:30:00Z",
            admin_url=admin_url("acme", 5_551_234_001),
            total="19.90",
            currency="EUR",
            financial_status=None,
            fulfillment_status="FULFILLED",
            items=summarize_items([("Socks", 1)]),
        ),
    ]
    return EventAnswer(
        shopify_store="acme.myshopify.com",
        lookback_days=60,
        final_sale_order_count=len(orders),
        final_sale_orders=orders,
    )
