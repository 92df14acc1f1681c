"""Desired state: the edges the first tests left open (issue 16).

The whole integration body and widget template are pinned by the golden files of
tests/test_known_answers.py; this file pins the public-URL rules and the small helpers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from together_reconcile.config import Account, AccountFile
from together_reconcile.reconcile.desired import (
    check_public_url,
    description_identity,
    desired_integration,
    desired_widget,
    events_url,
    integration_description,
    is_ours,
)

ACME = Account(shopify_store="acme.myshopify.com", gorgias_account="acme.gorgias.com")
PLAIN = "must be a plain base URL: no user, password, query or fragment"
HTTPS = (
    "must use https (Gorgias sends the event token and customer emails to it); "
    "plain http is only for loopback addresses"
)
SCHEME = "must be an http(s) URL such as https://together.example.com"


@pytest.mark.parametrize(
    "value",
    [
        "https://user@together.example.com",
        "https://:pw@together.example.com",
        "https://user:@together.example.com",
        "https://together.example.com/path?q",
        "https://together.example.com/#top",
    ],
)
def test_a_user_alone_or_an_empty_password_or_query_is_refused(value: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_public_url(value)
    assert str(raised.value) in (PLAIN, "is not a valid URL")


@pytest.mark.parametrize("value", ["https://together.example.com/?", "https://t.example.com/#"])
def test_an_empty_query_or_fragment_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        check_public_url(value)


def test_user_without_password_names_the_rule() -> None:
    with pytest.raises(ValueError) as raised:
        check_public_url("https://user@together.example.com")
    assert str(raised.value) == PLAIN
    assert raised.value.__cause__ is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://together.example.com", HTTPS),
        ("http://localhost.example.com:8000", HTTPS),
        ("http://127.0.0.1.example.com", HTTPS),
        ("http://10.0.0.1", HTTPS),
        ("ftp://together.example.com", SCHEME),
        ("HTTPS-ish://together.example.com", SCHEME),
        ("https:///path-only", SCHEME),
        ("https://together.example.com:99999", "is not a valid URL"),
        ("http://[::1", "is not a valid URL"),
    ],
)
def test_refusals_carry_their_exact_message(value: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_public_url(value)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.2:9000/", "http://127.0.0.2:9000"),
        ("http://LOCALHOST:8000", "http://LOCALHOST:8000"),
        ("HTTPS://Together.Example.com//", "HTTPS://Together.Example.com"),
        ("https://together.example.com/base/", "https://together.example.com/base"),
        ("\thttps://together.example.com\n", "https://together.example.com"),
    ],
)
def test_accepted_urls_are_trimmed_of_spaces_and_trailing_slashes(
    value: str, expected: str
) -> None:
    assert check_public_url(value) == expected


def test_events_url_joins_without_doubling_the_slash() -> None:
    assert events_url("https://t.example.com/") == "https://t.example.com/gorgias/events"
    assert events_url("https://t.example.com/base") == "https://t.example.com/base/gorgias/events"


def test_description_names_the_file_and_commit_or_unknown() -> None:
    in_folder = AccountFile(ACME, Path("/repo/accounts/acme.yaml"))
    bare = AccountFile(ACME, Path("acme.yaml"))
    assert integration_description(in_folder, "abc123") == (
        "[managed-by: together-reconcile] Shows Together final-sale orders. Managed from git "
        "(accounts/acme.yaml, commit abc123); edits made here are overwritten."
    )
    assert integration_description(bare, None) == (
        "[managed-by: together-reconcile] Shows Together final-sale orders. Managed from git "
        "(acme.yaml, commit unknown); edits made here are overwritten."
    )
    assert integration_description(bare, "") == integration_description(bare, None)


def test_description_identity_blanks_only_the_commit() -> None:
    assert description_identity("(a.yaml, commit abc123); x") == "(a.yaml, commit); x"
    assert description_identity("commit abc) commit def") == "commit) commit"
    assert description_identity("committed here") == "committed here"
    assert description_identity(None) is None
    assert description_identity(42) == 42


def test_is_ours_needs_the_marker_in_a_string_description() -> None:
    assert is_ours({"description": "x [managed-by: together-reconcile] y"})
    assert not is_ours({"description": "[managed-by: together-reconcile"})
    assert not is_ours({"description": ["[managed-by: together-reconcile]"]})
    assert not is_ours({})


def test_integration_uses_the_given_token_url_and_account_domain() -> None:
    body = desired_integration(
        AccountFile(ACME, Path("accounts/acme.yaml")),
        public_url="https://t.example.com/",
        event_token="v1.abc",
        commit=None,
    )
    assert body["http"]["url"] == "https://t.example.com/gorgias/events"
    assert body["http"]["headers"] == {"X-Together-Token": "v1.abc"}
    assert body["http"]["form"]["account_domain"] == "acme.gorgias.com"
    assert "commit unknown" in body["description"]


def test_widget_before_the_integration_exists_is_unbound() -> None:
    widget = desired_widget(ACME, None)
    assert widget["integration_id"] is None
    assert (widget["type"], widget["context"], widget["order"]) == ("http", "ticket", 0)
    card = widget["template"]["widgets"][0]
    assert card["meta"] == {"displayCard": True}
    assert card["widgets"][-1]["meta"] == {"limit": 10}


def test_only_slashes_are_trimmed_from_the_end() -> None:
    # a path or host may end in any letter: only '/' goes
    assert check_public_url("https://t.example.com/BOX/") == "https://t.example.com/BOX"
    assert check_public_url("https://t.example.com/XX") == "https://t.example.com/XX"
    assert events_url("https://t.example.com/BOX") == "https://t.example.com/BOX/gorgias/events"
