"""The answer model and the widget description built from it."""

from __future__ import annotations

from together_reconcile.config import Account
from together_reconcile.events.answer import (
    WIDGET_FIELDS,
    EventAnswer,
    FinalSaleOrder,
    admin_url,
    empty_answer,
    sample_answer,
    summarize_items,
)


def test_sample_answer_round_trips_through_json() -> None:
    answer = sample_answer()
    assert EventAnswer.model_validate_json(answer.model_dump_json()) == answer
    assert answer.final_sale_order_count == len(answer.final_sale_orders) == 2


def test_widget_fields_name_real_answer_keys() -> None:
    answer_keys = set(EventAnswer.model_fields)
    order_keys = set(FinalSaleOrder.model_fields)
    assert WIDGET_FIELDS.top_level and WIDGET_FIELDS.list_item_fields  # else <= proves nothing
    assert {field.key for field in WIDGET_FIELDS.top_level} <= answer_keys
    assert WIDGET_FIELDS.list_path in answer_keys
    assert {field.key for field in WIDGET_FIELDS.list_item_fields} <= order_keys
    assert WIDGET_FIELDS.list_item_title == "{{name}}"


def test_empty_answer_uses_the_account_settings() -> None:
    account = Account(
        shopify_store="acme.myshopify.com", gorgias_account="acme.gorgias.com", lookback_days=30
    )
    assert empty_answer(account).model_dump() == {
        "shopify_store": "acme.myshopify.com",
        "lookback_days": 30,
        "final_sale_order_count": 0,
        "final_sale_orders": [],
    }


def test_admin_url() -> None:
    assert admin_url("acme", 42) == "https://admin.shopify.com/store/acme/orders/42"


def test_items_summary_and_truncation() -> None:
    assert summarize_items([("Blue shirt", 2), ("Hat", 1)]) == "2 × Blue shirt, 1 × Hat"
    assert summarize_items([("Hat", 1)], more=True) == "1 × Hat, …"
    assert summarize_items([("A\n  very\tlong", 1)]) == "1 × A very long"
    long = summarize_items([("x" * 300, 1)])
    assert len(long) == 200
    assert long.endswith("…")
    assert summarize_items([]) == ""
