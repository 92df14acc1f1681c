"""A small, strict evaluator for Shopify's search syntax, as used in `orders(query:)`.

Grammar (implicit AND binds tighter than OR)::

    query   := or_expr
    or_expr := and_expr ("OR" and_expr)*
    and_expr:= unary (["AND"] unary)*
    unary   := ("NOT" | "-") unary | "(" or_expr ")" | term
    term    := FIELD ":" [ "<" | "<=" | ">" | ">=" ] VALUE  |  BAREWORD

VALUE is an unquoted run (backslash escapes `\\:`, `\\(`, `\\)`, `\\\\`, `\\ `...) or a
single- or double-quoted string with backslash escapes. Fields: `email` (case-insensitive and
loose, like an index: `straße` finds `strasse`, the Kelvin sign finds `k`), `tag` /
`tag_not` (exact tag, case-insensitive), `created_at` /
`processed_at` (dates, with comparators), `name`, `financial_status`, `fulfillment_status`,
`id`. A bare word without a field matches nothing (strict); an unknown field or an
unparseable query raises `SearchSyntaxError` whose message never repeats the query's values.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

Order = dict[str, Any]
Predicate = Callable[[Order], bool]

STRING_FIELDS = ("email", "name", "financial_status", "fulfillment_status")
DATE_FIELDS = ("created_at", "processed_at")
TAG_FIELDS = ("tag", "tag_not")
FIELDS = (*STRING_FIELDS, *DATE_FIELDS, *TAG_FIELDS, "id")
COMPARATORS = ("<=", ">=", "<", ">")
SPECIAL = "()"


class SearchSyntaxError(ValueError):
    """The query cannot be parsed; the message gives the position, never the values."""


@dataclass(frozen=True)
class Token:
    kind: str  # "(" | ")" | "word" | "term"
    position: int
    text: str = ""  # bare word text (decoded) or field name
    comparator: str = ""
    value: str = ""
    quoted: bool = False


def _read_value(query: str, i: int) -> tuple[str, bool, int]:
    """Decode a value starting at i: (value, quoted, next index)."""
    if i < len(query) and query[i] in "\"'":
        quote = query[i]
        start = i
        i += 1
        out: list[str] = []
        while i < len(query):
            char = query[i]
            if char == "\\":
                if i + 1 >= len(query):
                    raise SearchSyntaxError(f"dangling backslash at position {i}")
                out.append(query[i + 1])
                i += 2
                continue
            if char == quote:
                return "".join(out), True, i + 1
            out.append(char)
            i += 1
        raise SearchSyntaxError(f"unterminated quoted value starting at position {start}")
    out = []
    while i < len(query) and not query[i].isspace() and query[i] not in SPECIAL:
        char = query[i]
        if char == "\\":
            if i + 1 >= len(query):
                raise SearchSyntaxError(f"dangling backslash at position {i}")
            out.append(query[i + 1])
            i += 2
            continue
        if char in "\"'":
            raise SearchSyntaxError(f"unexpected quote at position {i}")
        out.append(char)
        i += 1
    return "".join(out), False, i


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(query):
        char = query[i]
        if char.isspace():
            i += 1
            continue
        if char in SPECIAL:
            tokens.append(Token(char, i))
            i += 1
            continue
        if char == "-" and (i + 1 < len(query) and not query[i + 1].isspace()):
            tokens.append(Token("word", i, "NOT"))
            i += 1
            continue
        start = i
        j = i
        while j < len(query) and (query[j].isalnum() or query[j] in "_.$"):
            j += 1
        if j > i and j < len(query) and query[j] == ":":
            field = query[i:j]
            j += 1
            comparator = next((c for c in COMPARATORS if query.startswith(c, j)), "")
            j += len(comparator)
            value, quoted, j = _read_value(query, j)
            if not value and not quoted:
                raise SearchSyntaxError(f"missing value for the field at position {start}")
            tokens.append(Token("term", start, field, comparator, value, quoted))
            i = j
            continue
        value, quoted, j = _read_value(query, i)
        if j == i:
            raise SearchSyntaxError(f"unexpected character at position {i}")
        kind = "word" if not quoted and value in ("AND", "OR", "NOT") else "bare"
        tokens.append(Token(kind, start, value))
        i = j
    return tokens


def _parse_datetime(value: str) -> tuple[datetime, datetime]:
    """A date or datetime as a [start, end) interval in UTC."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day, time(), tzinfo=UTC)
            return start, start + timedelta(days=1)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SearchSyntaxError("a date value is not an ISO-8601 date or datetime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment, moment + timedelta(microseconds=1)


def _order_datetime(order: Order, field: str) -> datetime | None:
    raw = order.get(field) or (order.get("created_at") if field == "processed_at" else None)
    if not raw:
        return None
    moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _term(token: Token) -> Predicate:
    field, comparator, value = token.text, token.comparator, token.value
    if field not in FIELDS:
        raise SearchSyntaxError(f"unknown search field {field!r} at position {token.position}")
    if comparator and field not in (*DATE_FIELDS, "id"):
        raise SearchSyntaxError(
            f"comparator not supported for field {field!r} at position {token.position}"
        )
    if field in DATE_FIELDS:
        start, end = _parse_datetime(value)

        def check_date(order: Order) -> bool:
            moment = _order_datetime(order, field)
            if moment is None:
                return False
            return {
                "": start <= moment < end,
                "<": moment < start,
                "<=": moment < end,
                ">": moment >= end,
                ">=": moment >= start,
            }[comparator]

        return check_date
    if field == "id":
        try:
            wanted = int(value.rsplit("/", 1)[-1])
        except ValueError:
            raise SearchSyntaxError(f"id must be an integer at position {token.position}") from None
        ops: dict[str, Callable[[int], bool]] = {
            "": lambda v: v == wanted,
            "<": lambda v: v < wanted,
            "<=": lambda v: v <= wanted,
            ">": lambda v: v > wanted,
            ">=": lambda v: v >= wanted,
        }
        op = ops[comparator]
        return lambda order: op(int(order["id"]))
    if field in TAG_FIELDS:
        wanted_tag = value.casefold()

        def has_tag(order: Order) -> bool:
            return any(str(tag).casefold() == wanted_tag for tag in order.get("tags") or ())

        return has_tag if field == "tag" else (lambda order: not has_tag(order))
    if field == "email":  # an index, like Shopify's: near-misses come back too
        wanted_email = _loose(value)
        return lambda order: _loose(str(order.get(field) or "")) == wanted_email
    wanted_text = value.casefold()
    return lambda order: str(order.get(field) or "").casefold() == wanted_text


def _loose(text: str) -> str:
    """Compatibility forms and case folded away: `straße` and `strasse`, the Kelvin sign and
    `k`, full-width letters and ASCII all look alike to the email search. A caller must
    re-check what it gets (the handler compares exactly)."""
    return unicodedata.normalize("NFKC", text).casefold()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text == word

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.is_word("OR"):
            self.take()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda order: any(part(order) for part in parts)

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while True:
            token = self.peek()
            if token is None or token.kind == ")" or self.is_word("OR"):
                break
            if self.is_word("AND"):
                self.take()
            parts.append(self.unary())
        if len(parts) == 1:
            return parts[0]
        return lambda order: all(part(order) for part in parts)

    def unary(self) -> Predicate:
        token = self.peek()
        if token is None:
            raise SearchSyntaxError("the query ends where a term was expected")
        if token.kind == "word" and token.text == "NOT":
            self.take()
            inner = self.unary()
            return lambda order: not inner(order)
        if token.kind == "word":
            raise SearchSyntaxError(f"unexpected {token.text} at position {token.position}")
        if token.kind == "(":
            self.take()
            inner = self.or_expr()
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise SearchSyntaxError(f"unclosed parenthesis at position {token.position}")
            self.take()
            return inner
        if token.kind == ")":
            raise SearchSyntaxError(f"unexpected ')' at position {token.position}")
        self.take()
        if token.kind == "bare":
            return lambda order: False
        return _term(token)


def compile_query(query: str | None) -> Predicate:
    """A predicate over sandbox orders; an empty or missing query matches every order."""
    if query is None or not query.strip():
        return lambda order: True
    parser = _Parser(tokenize(query))
    predicate = parser.or_expr()
    leftover = parser.peek()
    if leftover is not None:
        what = "')'" if leftover.kind == ")" else "token"
        raise SearchSyntaxError(f"unexpected {what} at position {leftover.position}")
    return predicate


def quote(value: str) -> str:
    """Quote a value for a search term: `"` + value with `\\` and `"` escaped + `"`."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
