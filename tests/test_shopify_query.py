"""The orders query against the real Admin schema, and the search string it sends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLSchema, build_schema, parse, validate

from together_reconcile.events.shopify import (
    FINAL_SALE_ORDERS_QUERY,
    build_search_query,
    escape_search_value,
)

SCHEMA_PATH = Path(__file__).parent / "fixtures" / "shopify-admin-2026-04.schema.graphql"
CUTOFF = datetime(2026, 9, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def admin_schema() -> GraphQLSchema:
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


def errors_of(schema: GraphQLSchema, query: str) -> list[Any]:
    return validate(schema, parse(query))


def test_query_is_valid_against_the_pinned_schema(admin_schema: GraphQLSchema) -> None:
    assert errors_of(admin_schema, FINAL_SALE_ORDERS_QUERY) == []


def test_schema_check_rejects_a_broken_query(admin_schema: GraphQLSchema) -> None:
    broken = FINAL_SALE_ORDERS_QUERY.replace("displayFulfillmentStatus", "fulfilmentStatusX")
    messages = [error.message for error in errors_of(admin_schema, broken)]
    assert any("fulfilmentStatusX" in message for message in messages)
    wrong_type = FINAL_SALE_ORDERS_QUERY.replace("$first: Int!", "$first: String!")
    assert errors_of(admin_schema, wrong_type) != []


def test_search_string_shape() -> None:
    assert build_search_query("jane@example.com", CUTOFF) == (
        'email:"jane@example.com" created_at:>="2026-09-02T12:00:00Z" tag:"together-final-sale"'
    )


@pytest.mark.parametrize(
    ("email", "quoted"),
    [
        ('ja"ne@example.com', r'"ja\"ne@example.com"'),
        ("a b@example.com", '"a b@example.com"'),
        ("x@example.com OR email:*", r'"x@example.com OR email\:*"'),
        ("*", '"*"'),
        ("back\\slash@example.com", r'"back\\slash@example.com"'),
        ('\\" OR tag:x', r'"\\\" OR tag\:x"'),
        ("(x)@example.com", r'"\(x\)@example.com"'),
        ("jörg@exämple.com", '"jörg@exämple.com"'),
    ],
)
def test_values_are_quoted_and_escaped(email: str, quoted: str) -> None:
    assert escape_search_value(email) == quoted


@pytest.mark.parametrize("value", ["a\nb@example.com", "a\x00@x.com", "tab\t@x.com", "\x7f"])
def test_control_characters_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        escape_search_value(value)


@pytest.mark.parametrize(
    "email",
    ['a"b@x.com', 'x" OR "y', "\\", '\\"', '""', 'a\\\\"b', "x) OR (y", "x:y"],
)
def test_no_value_can_end_its_quotes_early(email: str) -> None:
    """Walk the quoted term like Shopify's tokenizer: the only unescaped quote is the last."""
    quoted = escape_search_value(email)
    assert quoted.startswith('"')
    index = 1
    while quoted[index] != '"':
        index += 2 if quoted[index] == "\\" else 1
    assert index == len(quoted) - 1
