"""The whole loop over real sockets: the sandbox Gorgias fires the integration the reconciler
builds (`desired.desired_integration`) at the running handler; the customer ends up with
exactly the right orders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.handler_helpers import SHOPIFY_TOKEN, write_accounts
from tests.serve_helpers import ServedHandler, run_serve
from tests.test_serve import KEYRING, KEYS, order
from together_reconcile.config import load_accounts
from together_reconcile.reconcile.desired import desired_integration
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.store import Credential, Store


@pytest.fixture
def served(tmp_path: Path, sandbox: RunningSandbox) -> Iterator[ServedHandler]:
    state_url = f"sqlite:///{tmp_path}/state.db"
    with Store.open(state_url, KEYRING) as store:
        store.put_credential(Credential("shopify", "acme.myshopify.com", SHOPIFY_TOKEN))
    with run_serve(
        tmp_path,
        accounts_dir=write_accounts(tmp_path / "accounts"),
        state_url=state_url,
        secret_keys=KEYS,
        shopify_url=sandbox.shopify_url_template,
    ) as handler:
        yield handler


def test_fired_integration_keeps_exactly_the_right_orders(
    served: ServedHandler, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    control = sandbox.control
    control.add_gorgias_account("acme", "gorgias-token")
    control.add_shopify_store("acme", SHOPIFY_TOKEN)
    control.add_orders(
        "acme",
        [
            order(1, "jane@example.com", days_ago=2),
            order(2, "jane@example.com", days_ago=10),
            order(3, "jane@example.com", days_ago=90),  # outside the lookback
            order(4, "jane@example.com", tags=("vip",)),  # not final sale
            order(5, "john@example.com"),  # another customer
        ],
    )
    account_file = load_accounts(tmp_path / "accounts")["acme.gorgias.com"]
    body = desired_integration(
        account_file,
        public_url=served.url,
        event_token=KEYRING.event_token("acme.gorgias.com"),
        commit=None,
    )
    integration = control.insert_integration("acme", body)

    fired = control.fire(
        "acme", integration["id"], {"id": 77, "customer": {"email": "Jane@Example.com"}}
    )
    assert fired["status"] == 200, fired

    kept = control.customer_data("acme", "jane@example.com")[str(integration["id"])]
    assert [o["name"] for o in kept["final_sale_orders"]] == ["#1", "#2"]
    assert kept["final_sale_order_count"] == 2
    assert kept["shopify_store"] == "acme.myshopify.com"
    assert control.customer_data("acme", "john@example.com") == {}

    no_email = control.fire("acme", integration["id"], {"id": 78, "customer": {}})
    assert no_email["status"] == 200
    assert no_email["body"] == {}
