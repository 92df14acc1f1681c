"""The reserved verification event: what `verify` sends and how the handler answers it.

`verify` makes the call Gorgias makes (SPEC "The support loop"): `POST
{TOGETHER_PUBLIC_URL}/gorgias/events` with the account's `X-Together-Token` and this body. The
handler treats it as any other event (token, account, Shopify token, the Shopify search), with
one difference in the answer's shape: an ordinary event with no matching order answers `{}`
(the sidebar then shows no Together card), which cannot tell "Shopify was asked and found
nothing" from "Shopify was never asked". For the reserved verification address the handler
answers the whole shape instead (`{"shopify_store", "lookback_days",
"final_sale_order_count": 0, "final_sale_orders": []}`), and only after the Shopify search
answered. So a 200 with that shape proves the handler knows the account, holds a Shopify
token Shopify accepts, and reaches Shopify; `{}` is a `bad_answer` (a handler that did not
ask Shopify). The address is under `.invalid` (RFC 2606): no real customer has it.

Shared by the handler (`events`) and the verifier (`reconcile.verify`), which may not import
each other.
"""

from __future__ import annotations

from typing import Any, Final

VERIFY_TICKET_ID: Final = "together-verify"
VERIFY_EMAIL: Final = "verify@together-reconcile.invalid"


def verification_body(account_domain: str) -> dict[str, Any]:
    """The body `verify` posts for one account (SPEC: "Verification request")."""
    return {
        "ticket_id": VERIFY_TICKET_ID,
        "account_domain": account_domain,
        "customer_email": VERIFY_EMAIL,
    }


def is_verification(ticket_id: object, email: str | None) -> bool:
    """True for the reserved verification event (both the ticket id and the address)."""
    return ticket_id == VERIFY_TICKET_ID and (email or "").strip().lower() == VERIFY_EMAIL
