"""Unit tests of the sandbox's Shopify search-syntax evaluator."""

from __future__ import annotations

from typing import Any

import pytest

from together_reconcile.sandbox.searchsyntax import SearchSyntaxError, compile_query, quote


def order(oid: int, email: str, created: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": oid,
        "email": email,
        "created_at": created,
        "tags": tags or [],
        "name": f"#{oid}",
    }


ORDERS = [
    order(1, "jane@example.com", "2026-11-20T10:00:00Z", ["together-final-sale"]),
    order(2, "jane@example.com", "2026-08-01T10:00:00Z", ["together-final-sale", "vip"]),
    order(3, "john@example.com", "2026-11-21T10:00:00Z", ["vip"]),
    order(4, "Jane@Example.com", "2026-11-22T00:00:00Z"),
]


def ids(query: str, orders: list[dict[str, Any]] = ORDERS) -> list[int]:
    predicate = compile_query(query)
    return [o["id"] for o in orders if predicate(o)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [1, 2, 3, 4]),
        ("email:jane@example.com", [1, 2, 4]),
        ('email:"JANE@example.com"', [1, 2, 4]),
        ("email:'jane@example.com'", [1, 2, 4]),
        ("tag:together-final-sale", [1, 2]),
        ("tag:VIP", [2, 3]),
        ("tag_not:vip", [1, 4]),
        ('created_at:>="2026-11-01"', [1, 3, 4]),
        ("created_at:>2026-11-21", [4]),
        ("created_at:<2026-11-21", [1, 2]),
        ("created_at:<=2026-11-21", [1, 2, 3]),
        ("created_at:2026-11-21", [3]),
        ('created_at:>="2026-11-21T10:00:00Z"', [3, 4]),
        ('created_at:>"2026-11-21T10:00:00Z"', [4]),
        ("created_at:>='2026-11-21T11:00:00+01:00'", [3, 4]),
        ('email:"jane@example.com" created_at:>="2026-11-01" tag:"together-final-sale"', [1]),
        ("email:jane@example.com AND tag:vip", [2]),
        ("tag:vip OR created_at:>2026-11-21", [2, 3, 4]),
        ("email:john@example.com OR email:jane@example.com tag:vip", [2, 3]),
        ("(email:john@example.com OR email:jane@example.com) tag:vip", [2, 3]),
        ("-tag:vip", [1, 4]),
        ("NOT tag:vip", [1, 4]),
        ("NOT (tag:vip OR tag:together-final-sale)", [4]),
        ("email:jane@example.com -(tag:vip)", [1, 4]),
        ("id:>2", [3, 4]),
        ("jane@example.com", []),  # a bare word matches nothing
        ("vip OR tag:vip", [2, 3]),
    ],
)
def test_queries(query: str, expected: list[int]) -> None:
    assert ids(query) == expected


TRICKY = [
    'jane"doe@example.com',
    "jane\\doe@example.com",
    "jane OR email:john@example.com",
    "*",
    "jane*@example.com",
    "a) OR (tag:vip",
    "x:y@example.com",
    "'single'@example.com",
    " ",
]


@pytest.mark.parametrize("email", TRICKY)
def test_quoted_tricky_email_matches_only_itself(email: str) -> None:
    orders = [*ORDERS, order(9, email, "2026-11-25T00:00:00Z")]
    assert ids(f"email:{quote(email)}", orders) == [9]
    assert ids(f"email:{quote(email)} tag:vip", orders) == []


def test_unquoted_backslash_escapes() -> None:
    orders = [order(9, "a:b(c)@example.com", "2026-11-25T00:00:00Z")]
    assert ids(r"email:a\:b\(c\)@example.com", orders) == [9]


def test_star_is_literal() -> None:
    assert ids("email:jane*") == []
    assert ids("email:*") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('email:"jane@example.com', "unterminated quoted value starting at position 6"),
        ("email:", "missing value for the field at position 0"),
        ("(tag:vip", "unclosed parenthesis at position 0"),
        ("tag:vip)", "unexpected ')' at position 7"),
        ("tag:vip OR", "the query ends where a term was expected"),
        ("AND tag:vip", "unexpected AND at position 0"),
        ("colour:red", "unknown search field 'colour' at position 0"),
        ("email:>a", "comparator not supported for field 'email' at position 0"),
        ("created_at:>=yesterday", "a date value is not an ISO-8601 date or datetime"),
        ("email:abc\\", "dangling backslash at position 9"),
        ('email:ab"c', "unexpected quote at position 8"),
    ],
)
def test_unparseable_queries(query: str, message: str) -> None:
    with pytest.raises(SearchSyntaxError) as caught:
        compile_query(query)
    assert str(caught.value) == message


def test_error_never_repeats_a_value() -> None:
    with pytest.raises(SearchSyntaxError) as caught:
        compile_query('email:"secret.person@example.com')
    assert "secret" not in str(caught.value)
