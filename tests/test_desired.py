"""Desired state: the integration and the widget an enabled account should hold."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from together_reconcile.config import Account, AccountFile
from together_reconcile.events.answer import sample_answer
from together_reconcile.reconcile.desired import (
    OWNERSHIP_MARKER,
    check_public_url,
    description_identity,
    desired_integration,
    desired_widget,
    is_ours,
)

ACME = AccountFile(
    Account(shopify_store="acme.myshopify.com", gorgias_account="acme.gorgias.com"),
    Path("accounts/acme.yaml"),
)


def integration(commit: str | None = "abc123") -> dict[str, Any]:
    return desired_integration(
        ACME, public_url="https://together.example.com/", event_token="tok-1", commit=commit
    )


def test_integration_calls_the_event_handler_with_the_account_token_and_form() -> None:
    body = integration()
    assert body["name"] == "Together"
    assert body["type"] == "http"
    http = body["http"]
    assert http["url"] == "https://together.example.com/gorgias/events"
    assert http["method"] == "POST"
    assert http["request_content_type"] == http["response_content_type"] == "application/json"
    assert http["headers"] == {"X-Together-Token": "tok-1"}
    assert http["form"] == {
        "ticket_id": "{{ticket.id}}",
        "account_domain": "acme.gorgias.com",
        "customer_email": "{{ticket.customer.email}}",
    }
    assert http["triggers"] == {"ticket-created": True, "ticket-updated": True}


def test_description_carries_marker_file_and_commit() -> None:
    body = integration()
    assert OWNERSHIP_MARKER in body["description"]
    assert "accounts/acme.yaml" in body["description"]
    assert "commit abc123" in body["description"]
    assert is_ours(body)
    assert not is_ours({"name": "Together", "description": "made by hand"})
    assert not is_ours({"name": "Together", "description": None})


def test_a_new_commit_alone_does_not_change_the_description_identity() -> None:
    assert integration("abc123")["description"] != integration("def456")["description"]
    assert description_identity(integration("abc123")["description"]) == description_identity(
        integration(None)["description"]
    )
    assert description_identity("something else") != description_identity(
        integration()["description"]
    )


def test_widget_is_bound_to_the_integration_with_the_account_settings() -> None:
    account = Account.model_validate(
        {
            "shopify_store": "acme.myshopify.com",
            "gorgias_account": "acme.gorgias.com",
            "widget": {"context": "customer", "order": 3, "title": "Final sale"},
        }
    )
    widget = desired_widget(account, 42)
    assert widget["type"] == "http"
    assert widget["context"] == "customer"
    assert widget["order"] == 3
    assert widget["integration_id"] == 42
    card = widget["template"]["widgets"][0]
    assert widget["template"]["type"] == "wrapper"
    assert card["title"] == "Final sale"
    assert card["path"] == ""


def _paths(node: dict[str, Any], data: Any, seen: list[str]) -> None:
    """Walk the template like Gorgias does: each path is relative to its parent's data."""
    path = node.get("path")
    if node["type"] == "list":
        assert isinstance(data, dict) and isinstance(data[path], list), path
        seen.append(path)
        for item in data[path]:
            for child in node["widgets"]:
                _paths(child, item, seen)
        return
    if node["type"] in ("wrapper", "card"):
        inner = data[path] if path else data
        for child in node.get("widgets", []):
            _paths(child, inner, seen)
        return
    assert isinstance(data, dict) and path in data, f"template path {path!r} not in the answer"
    seen.append(path)


def test_every_template_path_exists_in_the_sample_answer() -> None:
    widget = desired_widget(ACME.account, 1)
    seen: list[str] = []
    answer = sample_answer().model_dump()
    assert answer["final_sale_orders"], "the sample needs orders to check the list's paths"
    _paths(widget["template"], answer, seen)
    assert {"shopify_store", "final_sale_orders", "admin_url", "created_at"} <= set(seen)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://together.example.com/", "https://together.example.com"),
        ("  https://together.example.com/base  ", "https://together.example.com/base"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://localhost:8000/", "http://localhost:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_public_url_accepts_https_and_loopback_http(value: str, expected: str) -> None:
    assert check_public_url(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://together.example.com", "must use https"),
        ("http://10.0.0.5:8000", "must use https"),
        ("ftp://together.example.com", "must be an http(s) URL"),
        ("together.example.com", "must be an http(s) URL"),
        ("https://", "must be an http(s) URL"),
        ("https://user:pw@together.example.com", "no user, password, query or fragment"),
        ("https://together.example.com/?x=1", "no user, password, query or fragment"),
        ("https://together.example.com/#top", "no user, password, query or fragment"),
        ("https://together.example.com:notaport", "is not a valid URL"),
    ],
)
def test_public_url_refuses_what_would_leak_or_break(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        check_public_url(value)
    assert "pw" not in str(caught.value)
