"""Demo data for `together-reconcile sandbox` and `together-reconcile demo`.

The tokens are sandbox-only placeholders, not secrets: they open nothing but this stand-in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from together_reconcile.sandbox.control import SandboxController

FINAL_SALE_TAG = "together-final-sale"
DEMO_GORGIAS_ACCOUNTS = ("acme", "globex", "initech")
DEMO_SHOPIFY_STORES = ("acme", "globex-shop", "initech")


def gorgias_token(account: str) -> str:
    return f"sandbox-gorgias-{account}"


def shopify_token(store: str) -> str:
    return f"sandbox-shopify-{store}"


def demo_orders(store_index: int, now: datetime) -> list[dict[str, Any]]:
    """Five orders: two final-sale for jane, one plain, one too old, one for someone else."""
    base = 1000 * (store_index + 1)

    def order(n: int, email: str, days_ago: int, tags: list[str], total: str) -> dict[str, Any]:
        created = (now - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "id": base + n,
            "name": f"#{base + n}",
            "email": email,
            "created_at": created,
            "tags": tags,
            "total": total,
            "currency": "USD",
            "financial_status": "PAID",
            "fulfillment_status": "FULFILLED",
            "line_items": [{"name": f"Demo item {n}", "quantity": 1 + n % 2}],
        }

    return [
        order(1, "jane@example.com", 3, [FINAL_SALE_TAG], "120.00"),
        order(2, "jane@example.com", 20, [FINAL_SALE_TAG, "vip"], "45.50"),
        order(3, "jane@example.com", 10, ["vip"], "19.99"),
        order(4, "jane@example.com", 75, [FINAL_SALE_TAG], "310.00"),
        order(5, "john@example.com", 5, [FINAL_SALE_TAG], "80.00"),
    ]


def seed_demo(controller: SandboxController, *, now: datetime | None = None) -> dict[str, Any]:
    """Seed the demo accounts, stores and orders; returns what was seeded (sandbox tokens)."""
    moment = now or datetime.now(UTC)
    for account in DEMO_GORGIAS_ACCOUNTS:
        controller.add_gorgias_account(account, gorgias_token(account))
    for index, store in enumerate(DEMO_SHOPIFY_STORES):
        controller.add_shopify_store(store, shopify_token(store))
        controller.add_orders(store, demo_orders(index, moment))
    return {
        "gorgias_accounts": {a: gorgias_token(a) for a in DEMO_GORGIAS_ACCOUNTS},
        "shopify_stores": {s: shopify_token(s) for s in DEMO_SHOPIFY_STORES},
    }
