"""Desired state: the one integration and the one widget each enabled account should hold.

Pure functions: no I/O, no clock. The widget template is built from `answer.WIDGET_FIELDS`,
the same definition the event handler answers with, so the widget's paths always exist.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from together_reconcile.config import Account, AccountFile
from together_reconcile.events.answer import WIDGET_FIELDS, WidgetField

OWNERSHIP_MARKER = "[managed-by: together-reconcile]"
INTEGRATION_NAME = "Together"
EVENTS_PATH = "/gorgias/events"
TOKEN_HEADER = "X-Together-Token"  # noqa: S105 - a header name, not a secret
JSON_CONTENT_TYPE = "application/json"
TRIGGERS_ON = ("ticket-created", "ticket-updated")
LIST_LIMIT = 10
UNKNOWN_COMMIT = "unknown"

_COMMIT_RE = re.compile(r"commit [^\s)]*")


def check_public_url(value: str) -> str:
    """The handler's public base URL, normalised; ValueError saying what to fix otherwise.

    Gorgias sends the event token and the customer's email to it, so it must be HTTPS; plain
    HTTP is allowed only on loopback (the sandbox and the demo).
    """
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError("must be an http(s) URL such as https://together.example.com")
    stripped = value.strip()
    bare_marker = "?" in stripped or "#" in stripped  # an empty query or fragment too
    if parts.username is not None or parts.password is not None or bare_marker:
        raise ValueError("must be a plain base URL: no user, password, query or fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(
            "must use https (Gorgias sends the event token and customer emails to it); "
            "plain http is only for loopback addresses"
        )
    return value.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_ours(integration: dict[str, Any]) -> bool:
    """True when the integration carries our ownership marker (we created it)."""
    description = integration.get("description")
    return isinstance(description, str) and OWNERSHIP_MARKER in description


def integration_description(account_file: AccountFile, commit: str | None) -> str:
    """Marker + provenance: which file (relative to the repo) and which commit wrote it."""
    path = account_file.path
    source = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    return (
        f"{OWNERSHIP_MARKER} Shows Together final-sale orders. Managed from git "
        f"({source}, commit {commit or UNKNOWN_COMMIT}); edits made here are overwritten."
    )


def description_identity(description: object) -> object:
    """A description with its commit blanked: a new commit alone is not a change."""
    if not isinstance(description, str):
        return description
    return _COMMIT_RE.sub("commit", description)


def events_url(public_url: str) -> str:
    return public_url.rstrip("/") + EVENTS_PATH


def desired_integration(
    account_file: AccountFile, *, public_url: str, event_token: str, commit: str | None
) -> dict[str, Any]:
    """The HTTP integration Gorgias calls on ticket events for this account."""
    account = account_file.account
    return {
        "name": INTEGRATION_NAME,
        "type": "http",
        "description": integration_description(account_file, commit),
        "http": {
            "url": events_url(public_url),
            "method": "POST",
            "request_content_type": JSON_CONTENT_TYPE,
            "response_content_type": JSON_CONTENT_TYPE,
            "headers": {TOKEN_HEADER: event_token},
            "form": {
                "ticket_id": "{{ticket.id}}",
                "account_domain": account.gorgias_account,
                "customer_email": "{{ticket.customer.email}}",
            },
            "triggers": {trigger: True for trigger in TRIGGERS_ON},
        },
    }


def _leaf(field: WidgetField) -> dict[str, Any]:
    return {"type": field.type, "path": field.key, "title": field.title}


def widget_template(title: str) -> dict[str, Any]:
    """The sidebar template: a card of top-level leaves and one card per final-sale order."""
    layout = WIDGET_FIELDS
    order_card = {
        "type": "card",
        "title": layout.list_item_title,
        "widgets": [_leaf(field) for field in layout.list_item_fields],
    }
    orders = {
        "type": "list",
        "path": layout.list_path,
        "meta": {"limit": LIST_LIMIT},
        "widgets": [order_card],
    }
    return {
        "type": "wrapper",
        "widgets": [
            {
                "type": "card",
                "path": "",
                "title": title,
                "meta": {"displayCard": True},
                "widgets": [*(_leaf(field) for field in layout.top_level), orders],
            }
        ],
    }


def desired_widget(account: Account, integration_id: int | None) -> dict[str, Any]:
    """The HTTP widget bound to our integration (`None` until the integration exists)."""
    return {
        "type": "http",
        "context": account.widget.context,
        "order": account.widget.order,
        "integration_id": integration_id,
        "template": widget_template(account.widget.title),
    }
