"""Account files: the model of `accounts/<subdomain>.yaml`, its JSON Schema, and its loader.

An account file links one Shopify store to one Gorgias account. The model here is the single
source of truth: the JSON Schema in `schemas/` is generated from it, and every file is checked
against that schema (the shape, exactly what an editor checks) and then the model (the rest).

Loading is strict and fast: the YAML is composed once with libyaml (node marks give every
problem its line and column), values are resolved with the YAML 1.2 core rules an editor uses,
and anchors, aliases, tags, duplicate keys, several documents, oversized and non-UTF-8 files,
and anything that looks like a secret are problems, each at the line of the offending key or
value.
"""

from __future__ import annotations

import difflib
import gc
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


def _any_case(literal: str) -> str:
    """An ECMA-262 (and Python) pattern matching `literal` in any letter case."""
    parts = []
    for char in literal:
        if char.isalpha():
            parts.append(f"[{char.upper()}{char.lower()}]")
        else:
            parts.append(re.escape(char))
    return "".join(parts)


# Patterns are plain ECMA-262 (no inline flags) so editors understand the generated schema.
SUBDOMAIN_PATTERN = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}"
SHOPIFY_STORE_PATTERN = rf"^{SUBDOMAIN_PATTERN}\.{_any_case('myshopify.com')}$"
GORGIAS_ACCOUNT_PATTERN = rf"^{SUBDOMAIN_PATTERN}\.{_any_case('gorgias.com')}$"
SHOPIFY_STORE_RE = re.compile(SHOPIFY_STORE_PATTERN)
GORGIAS_ACCOUNT_RE = re.compile(GORGIAS_ACCOUNT_PATTERN)
SUBDOMAIN_RE = re.compile(rf"^{SUBDOMAIN_PATTERN}$")
MAX_LOOKBACK_DAYS = 60
DEFAULT_WIDGET_TITLE = "Together"
MAX_FILE_BYTES = 64 * 1024
SCHEMA_ID = "urn:together-reconcile:schemas:account"
SCHEMA_COMMENT = "# yaml-language-server: $schema=../schemas/account.schema.json"
ACCOUNT_FILE_SUFFIXES = (".yaml", ".yml")


class WidgetSettings(BaseModel):
    """Where and how the Together widget shows in the Gorgias sidebar."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="Widget")

    context: Literal["ticket", "customer"] = Field(
        "ticket",
        title="Context",
        description="Sidebar the widget shows in: `ticket` (default) or `customer`.",
    )
    order: Annotated[int, Field(ge=0)] = Field(
        0,
        title="Order",
        description="Position among the sidebar widgets; lower numbers show first. Default 0.",
    )
    title: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        DEFAULT_WIDGET_TITLE,
        title="Title",
        description="Card title agents see above the final-sale orders (at most 100 characters).",
        examples=["Final-sale orders"],
    )


class Account(BaseModel):
    """One link between a Shopify store and a Gorgias account."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        title="Together account",
        json_schema_extra={
            "description": (
                "Links one Shopify store to one Gorgias account. The file name must be "
                "`<gorgias subdomain>.yaml`. Never put tokens or other secrets here."
            )
        },
    )

    shopify_store: str = Field(
        title="Shopify store",
        description=(
            "The store's permanent domain, `<store>.myshopify.com` — only the domain, not a "
            "URL. Each store may appear in only one account file."
        ),
        pattern=SHOPIFY_STORE_PATTERN,
        max_length=100,
        examples=["acme.myshopify.com"],
    )
    gorgias_account: str = Field(
        title="Gorgias account",
        description=(
            "The Gorgias helpdesk domain, `<account>.gorgias.com`. Its subdomain must equal "
            "the file name (`acme.gorgias.com` lives in `accounts/acme.yaml`)."
        ),
        pattern=GORGIAS_ACCOUNT_PATTERN,
        max_length=100,
        examples=["acme.gorgias.com"],
    )
    enabled: bool = Field(
        True,
        title="Enabled",
        description=(
            "`false` removes the Together integration and widget from this Gorgias account "
            "on the next apply. Default `true`. Write `true` or `false` without quotes."
        ),
    )
    lookback_days: Annotated[int, Field(ge=1, le=MAX_LOOKBACK_DAYS)] = Field(
        MAX_LOOKBACK_DAYS,
        title="Lookback days",
        description="Show final-sale orders created within this many days (1 to 60, default 60).",
        examples=[30],
    )
    widget: WidgetSettings = Field(
        default_factory=WidgetSettings,
        title="Widget",
        description="Sidebar widget settings (all optional).",
    )
    notes: str | None = Field(
        None,
        title="Notes",
        description="Free text for support staff; never shown to merchants. No secrets.",
        max_length=2000,
    )

    @field_validator("shopify_store", "gorgias_account")
    @classmethod
    def _lower_case(cls, value: str) -> str:
        return value.lower()

    @property
    def gorgias_subdomain(self) -> str:
        return self.gorgias_account.split(".", 1)[0]

    @property
    def shopify_subdomain(self) -> str:
        return self.shopify_store.split(".", 1)[0]


@dataclass(frozen=True)
class AccountFile:
    """A validated account together with the file it came from (for provenance)."""

    account: Account
    path: Path


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in one file, at a 1-based line and column."""

    path: Path
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"

    def github_annotation(self) -> str:
        """The same problem as a GitHub Actions workflow command."""
        return (
            f"::error file={_escape_property(str(self.path))},line={self.line},"
            f"col={self.col}::{_escape_data(self.message)}"
        )


@dataclass(frozen=True)
class ValidationReport:
    """What `validate` found: how many files it checked and every problem, sorted."""

    files: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        return f"{_plural(self.files, 'file')}, {_plural(len(self.problems), 'problem')}"

    def lines(self, *, github_actions: bool = False) -> list[str]:
        """The report as printed: one line per problem (plus its annotation), then the summary."""
        out: list[str] = []
        for problem in self.problems:
            out.append(str(problem))
            if github_actions:
                out.append(problem.github_annotation())
        out.append(self.summary)
        return out


class ConfigError(Exception):
    """The account files are not valid; `problems` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = "\n".join(str(p) for p in self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n... and {more} more" if more > 0 else ""
        super().__init__(
            f"invalid account files ({_plural(len(self.problems), 'problem')}); "
            f"run `together-reconcile validate`:\n{shown}{tail}"
        )


class AccountInputError(ValueError):
    """A domain given on the command line (e.g. to `new`) is not valid; the message says why."""


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


# --------------------------------------------------------------------------- JSON Schema


def account_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an account file, generated from `Account`.

    The widget settings are inlined (no `$ref`) and `notes` is `string | null`, which reads
    better in an editor's hover and keeps the schema self-contained.
    """
    generated = Account.model_json_schema()
    definitions = generated.pop("$defs")
    properties = generated["properties"]
    widget = properties["widget"]
    reference = widget.pop("$ref")
    properties["widget"] = {**definitions[reference.rsplit("/", 1)[1]], **widget}
    notes = properties["notes"]
    notes.pop("anyOf")
    properties["notes"] = {"type": ["string", "null"], "maxLength": 2000, **notes}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **generated,
        "examples": [
            {"shopify_store": "acme.myshopify.com", "gorgias_account": "acme.gorgias.com"}
        ],
    }


def render_json_schema() -> str:
    """The schema exactly as committed in `schemas/account.schema.json`."""
    return json.dumps(account_json_schema(), indent=2, ensure_ascii=False) + "\n"


_SCALARS = (str, int, float, bool, type(None))
_MEMO_LIMIT = 4096


class _ShapeChecker:
    """The account JSON Schema applied by jsonschema, with one validator built per object level.

    Each level's validator sees its `properties` as `true` (so `additionalProperties` and
    `required` still apply) and each property's subschema has its own pre-built validator:
    the same verdicts as validating the whole schema at once, without jsonschema building a
    sub-validator for every value of every file.

    Validation is a pure function of the instance, and account files repeat themselves
    (`enabled: true`, the same keys in every file), so verdicts are remembered: per object
    level by its keys (the only thing that level's validator looks at), per scalar by its
    type and value. A bounded memo; domains, which never repeat, simply miss.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        properties = schema.get("properties", {})
        own = {**schema, "properties": dict.fromkeys(properties, True)} if properties else schema
        self._validator = jsonschema.Draft202012Validator(own)
        self._children = {key: _ShapeChecker(sub) for key, sub in properties.items()}
        self._memo: dict[object, list[tuple[_KeyPath, jsonschema.ValidationError]]] = {}
        self._surely_valid = _plain_string_check(schema)

    def errors(self, instance: Any) -> list[tuple[_KeyPath, jsonschema.ValidationError]]:
        """Every schema error in `instance`, each with its path relative to `instance`."""
        found = self._own_errors(instance)
        if self._children and isinstance(instance, dict):
            for key, value in instance.items():
                child = self._children.get(key)
                if child is not None:
                    nested = child.errors(value)
                    if nested:
                        found = found + [((key, *path), error) for path, error in nested]
        return found

    def _own_errors(self, instance: Any) -> list[tuple[_KeyPath, jsonschema.ValidationError]]:
        if self._surely_valid is not None and self._surely_valid(instance):
            return []
        memo_key: object = None
        if isinstance(instance, dict):
            memo_key = (dict, *instance)
        elif isinstance(instance, _SCALARS):
            memo_key = (type(instance), instance)
        if memo_key is not None:
            cached = self._memo.get(memo_key)
            if cached is not None:
                return cached
        found = [(tuple(e.absolute_path), e) for e in self._validator.iter_errors(instance)]
        if memo_key is not None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[memo_key] = found
        return found


_ANNOTATIONS = frozenset({"title", "description", "examples", "default"})


def _plain_string_check(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """For a string-with-pattern schema (the two domains): a quick test that says only "valid".

    The domains never repeat, so the memo misses and jsonschema would run for every file.
    This test is stricter than the schema (the whole value must match the pattern, where
    the schema searches it), so a pass is certain; anything else still goes to jsonschema,
    which stays the authority for every value that fails, and for every message.
    """
    if schema.get("type") != "string" or "pattern" not in schema:
        return None
    if not set(schema) <= _ANNOTATIONS | {"type", "pattern", "minLength", "maxLength"}:
        return None
    pattern = re.compile(schema["pattern"])
    shortest = int(schema.get("minLength", 0))
    longest = int(schema.get("maxLength", sys.maxsize))

    def surely_valid(value: Any) -> bool:
        return (
            type(value) is str
            and shortest <= len(value) <= longest
            and pattern.fullmatch(value) is not None
        )

    return surely_valid


@cache
def _shape_checker() -> _ShapeChecker:
    schema = account_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return _ShapeChecker(schema)


# --------------------------------------------------------------------------- secrets

_SECRET_KEY_RE = re.compile(r"token|secret|passw(?:or)?d|api[_-]?key", re.IGNORECASE)
_SECRET_VALUE_RE = re.compile(r"shp(?:at|ca|pa|ss)_[0-9A-Fa-f]|[A-Za-z0-9+/=_-]{32,}")
_DOMAIN_FIELDS = (("shopify_store",), ("gorgias_account",))
_NO_SECRETS_HERE = (
    "secrets never go in account files: remove it "
    "(tokens are stored with `together-reconcile credentials put`)"
)


def looks_like_secret(value: str) -> bool:
    """True if `value` contains a Shopify token prefix or 32+ chars of base64/base64url/hex."""
    return len(value) >= 7 and _SECRET_VALUE_RE.search(value) is not None


def _quote_safely(value: str) -> str:
    """`"value"` if it is safe to show in a message, else nothing (a secret is never echoed)."""
    if len(value) <= 100 and value.isprintable() and not looks_like_secret(value):
        return f' "{value}"'
    return ""


# --------------------------------------------------------------------------- domains

_DomainField = Literal["shopify_store", "gorgias_account"]
_DOMAINS: dict[str, tuple[str, str, re.Pattern[str]]] = {
    "shopify_store": (".myshopify.com", "a Shopify store", SHOPIFY_STORE_RE),
    "gorgias_account": (".gorgias.com", "a Gorgias account", GORGIAS_ACCOUNT_RE),
}


def domain_problem(field_name: _DomainField, value: str, label: str | None = None) -> str | None:
    """Why `value` is not a valid `field_name` domain, or None if it is valid."""
    suffix, what, pattern = _DOMAINS[field_name]
    if len(value) <= 100 and pattern.match(value):
        return None
    label = label or field_name
    example = "acme" + suffix
    if "://" in value or "/" in value:
        host = urlsplit(value if "://" in value else "//" + value).hostname or ""
        if pattern.match(host):
            return f'{label}: write only the domain "{host.lower()}", not a URL'
        return f'{label}: write only the domain, e.g. "{example}", not a URL'
    if not value.lower().endswith(suffix):
        return (
            f"{label}:{_quote_safely(value)} is not {what} domain: "
            f'write <name>{suffix}, e.g. "{example}"'
        )
    return (
        f"{label}:{_quote_safely(value)} has an invalid name before {suffix}: use 1 to 63 "
        "letters, digits or hyphens, starting with a letter or digit"
    )


# --------------------------------------------------------------------------- reading YAML

_KeyPath = tuple[str | int, ...]
_Position = tuple[int, int]  # 1-based line, column


@dataclass
class _Document:
    """The plain data of one file plus where each key and value sits in it."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    key_nodes: dict[_KeyPath, yaml.Node] = field(default_factory=dict)
    value_nodes: dict[_KeyPath, yaml.Node] = field(default_factory=dict)
    quoted: set[_KeyPath] = field(default_factory=set)

    def key_at(self, path: _KeyPath, default: _Position = (1, 1)) -> _Position:
        node = self.key_nodes.get(path)
        return default if node is None else _position(node.start_mark)

    def value_at(self, path: _KeyPath, default: _Position = (1, 1)) -> _Position:
        node = self.value_nodes.get(path)
        return default if node is None else _position(node.start_mark)

    def add(self, position: _Position, message: str) -> None:
        self.problems.append(Problem(self.path, position[0], position[1], message))


def _position(mark: Any) -> _Position:
    return (mark.line + 1, mark.column + 1)


_INT_RE = re.compile(r"[-+]?[0-9]+")
_FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_PLAIN_CONSTANTS: dict[str, Any] = {
    "": None,
    "~": None,
    "null": None,
    "Null": None,
    "NULL": None,
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
}


def _resolve_plain(text: str) -> Any:
    """A plain scalar under the YAML 1.2 core schema (what editors use), not YAML 1.1."""
    if text in _PLAIN_CONSTANTS:
        return _PLAIN_CONSTANTS[text]
    first = text[0]
    if first.isdigit() or first in "+-.":
        if _INT_RE.fullmatch(text):
            return int(text)
        if text.startswith("0o") and re.fullmatch(r"0o[0-7]+", text):
            return int(text[2:], 8)
        if text.startswith("0x") and re.fullmatch(r"0x[0-9a-fA-F]+", text):
            return int(text[2:], 16)
        if _FLOAT_RE.fullmatch(text):
            number = float(text)
            return int(number) if number.is_integer() else number
        if text.lstrip("+-") in (".inf", ".Inf", ".INF"):
            return -math.inf if text.startswith("-") else math.inf
    if text in (".nan", ".NaN", ".NAN"):
        return math.nan
    return text


def _dotted(path: _KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _build(node: yaml.Node, path: _KeyPath, doc: _Document) -> Any:
    """Plain Python data from a composed node, recording positions and key/secret problems."""
    if isinstance(node, yaml.ScalarNode):
        text: str = node.value
        if path not in _DOMAIN_FIELDS and len(text) >= 7 and _SECRET_VALUE_RE.search(text):
            doc.add(
                _position(node.start_mark),
                f"{_dotted(path) or 'value'}: this value looks like a secret (an access token "
                f"or key); {_NO_SECRETS_HERE}",
            )
        if node.style:
            doc.quoted.add(path)
            return text
        return _resolve_plain(text)
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, child in enumerate(node.value):
            child_path = (*path, index)
            doc.value_nodes[child_path] = child
            items.append(_build(child, child_path, doc))
        return items
    mapping: dict[str, Any] = {}
    key_nodes: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            doc.add(
                _position(key_node.start_mark), "a key must be a plain name, not a list or mapping"
            )
            continue
        key: str = key_node.value
        if key in key_nodes:
            doc.add(
                _position(key_node.start_mark),
                f'duplicate key "{_dotted((*path, key))}" (first set on line '
                f"{key_nodes[key].start_mark.line + 1}): keep only one",
            )
            continue
        key_nodes[key] = key_node
        key_path = (*path, key)
        doc.key_nodes[key_path] = key_node
        doc.value_nodes[key_path] = value_node
        if _SECRET_KEY_RE.search(key):
            doc.add(
                _position(key_node.start_mark),
                f'key "{_dotted(key_path)}" looks like a secret; {_NO_SECRETS_HERE}',
            )
            continue
        mapping[key] = _build(value_node, key_path, doc)
    return mapping


def _read_text(path: Path) -> str | Problem:
    """The file's text, or the problem that stops it being read (size, encoding, I/O)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            raw = b"" if size > MAX_FILE_BYTES else handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return Problem(path, 1, 1, f"cannot read the file: {exc.strerror}")
    size = max(size, len(raw))
    if size > MAX_FILE_BYTES:
        return Problem(
            path,
            1,
            1,
            f"file is {size} bytes, over the 64 KiB limit: an account file is a few short lines",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        col = len(raw[line_start : exc.start].decode("utf-8", "replace")) + 1
        return Problem(
            path,
            line,
            col,
            f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x}): save it with UTF-8 encoding",
        )
    return text[1:] if text.startswith("\ufeff") else text


def _yaml_error(path: Path, error: yaml.MarkedYAMLError) -> Problem:
    mark = error.problem_mark or error.context_mark
    line, col = _position(mark) if mark is not None else (1, 1)
    if error.context == "expected a single document in the stream":
        return Problem(
            path,
            line,
            col,
            "several YAML documents in one file: an account file is a single document; "
            'remove the "---" and everything after it (or move it to its own file)',
        )
    detail = error.problem or "cannot parse"
    context = f" ({error.context})" if error.context else ""
    return Problem(path, line, col, f"invalid YAML: {detail}{context}")


_FORBIDDEN = {
    "anchor": "anchors are not allowed in account files (found {found}): write values out in full",
    "alias": "aliases are not allowed in account files (found {found}): write values out in full",
    "tag": "tags are not allowed in account files (found {found}): remove it",
}


def _forbidden_constructs(path: Path, text: str) -> list[Problem]:
    """Anchors, aliases and tags, found on the event stream (so nothing is ever expanded)."""
    hits: dict[str, list[tuple[_Position, str]]] = {kind: [] for kind in _FORBIDDEN}
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        position = _position(event.start_mark)
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent):
            hits["alias"].append((position, f"*{anchor}"))
        elif anchor is not None:
            hits["anchor"].append((position, f"&{anchor}"))
        tag = getattr(event, "tag", None)
        if tag is not None:
            hits["tag"].append((position, str(tag)))
    problems = []
    for kind, found in hits.items():
        if found:
            (line, col), name = found[0]
            shown = f'"{name[:40]}"' + (f", and {len(found) - 1} more" if len(found) > 1 else "")
            problems.append(Problem(path, line, col, _FORBIDDEN[kind].format(found=shown)))
    return problems


def _compose(path: Path, text: str) -> yaml.Node | Problem | list[Problem] | None:
    """The single document's root node (None if empty), or why there is none."""
    try:
        if "&" in text or "*" in text or "!" in text:
            forbidden = _forbidden_constructs(path, text)
            if forbidden:
                return forbidden
        loader = yaml.CSafeLoader(text)
        try:
            node: yaml.Node | None = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        return _yaml_error(path, exc)
    except yaml.YAMLError as exc:
        return Problem(path, 1, 1, f"invalid YAML: {exc}")
    return node


# --------------------------------------------------------------------------- per-file check

_TYPE_WORDS = {
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "object": "a mapping of keys",
    "array": "a list",
    "null": "nothing",
}


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _unquoted_fits(value: Any, expected: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    resolved = _resolve_plain(value)
    types = expected if isinstance(expected, list) else [expected]
    checker = jsonschema.Draft202012Validator.TYPE_CHECKER
    return not isinstance(resolved, str) and any(checker.is_type(resolved, t) for t in types)


@dataclass
class _FileResult:
    path: Path
    problems: list[Problem]
    account: Account | None = None
    store: tuple[str, _Position] | None = None
    gorgias: tuple[str, _Position] | None = None


def _schema_problems(doc: _Document, data: dict[str, Any]) -> None:
    """Shape problems: the JSON Schema, turned into messages that say what to fix."""
    for path, error in _shape_checker().errors(data):
        name = _dotted(path)
        where = doc.value_at(path)
        keyword = error.validator
        schema = error.schema if isinstance(error.schema, dict) else {}
        value: Any = error.instance
        rule: Any = error.validator_value
        if keyword == "additionalProperties":
            known = list(schema.get("properties", {}))
            for key in value:
                if key in known:
                    continue
                position = doc.key_at((*path, key), where)
                inside = f" in {name}" if name else ""
                shown = f'"{key}"' if _quote_safely(key) else "(not shown: looks like a secret)"
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                if close:
                    hint = f'did you mean "{close[0]}"?'
                else:
                    hint = "allowed keys are " + ", ".join(known)
                doc.add(position, f"unknown key {shown}{inside}: {hint}")
        elif keyword == "required":
            present = set(value) if isinstance(value, dict) else set()
            for key in rule:
                if key not in present:
                    inside = f" in {name}" if name else ""
                    doc.add(where if path else (1, 1), f'missing required key "{key}"{inside}')
        elif keyword == "type":
            expected = rule
            words = (
                " or ".join(_TYPE_WORDS[t] for t in expected if t != "null")
                if isinstance(expected, list)
                else _TYPE_WORDS[expected]
            )
            hint = (
                " (remove the quotes)"
                if path in doc.quoted and _unquoted_fits(value, expected)
                else ""
            )
            label = name or "the file"
            if not path:
                doc.add(
                    where,
                    f"expected a mapping with shopify_store and gorgias_account, "
                    f"got {_kind_of(value)}",
                )
            else:
                doc.add(where, f"{label}: expected {words}, got {_kind_of(value)}{hint}")
        elif keyword == "pattern" and path and path[-1] in _DOMAINS and len(path) == 1:
            doc.add(where, domain_problem(path[-1], value) or f"{name}: not a valid domain")  # type: ignore[arg-type]
        elif keyword in ("minimum", "maximum"):
            low, high = schema.get("minimum"), schema.get("maximum")
            allowed = (
                f"between {low} and {high}"
                if low is not None and high is not None
                else (f"{low} or more" if low is not None else f"{high} or less")
            )
            doc.add(where, f"{name}: must be {allowed}, got {value}")
        elif keyword == "maxLength":
            doc.add(
                where,
                f"{name}: too long ({len(value)} characters, at most {rule})",
            )
        elif keyword == "minLength":
            doc.add(where, f"{name}: must not be empty")
        elif keyword == "enum":
            options = " or ".join(f'"{o}"' for o in rule)
            shown = (
                f", got{_quote_safely(value)}"
                if isinstance(value, str) and _quote_safely(value)
                else ""
            )
            doc.add(where, f"{name}: must be {options}{shown}")
        else:
            doc.add(where, f"{name or 'the file'}: does not match the schema ({keyword})")


def _check_text(path: Path, text: str) -> _FileResult:
    """Every problem of one file's text, and its account if there are none."""
    composed = _compose(path, text)
    if isinstance(composed, Problem):
        return _FileResult(path, [composed])
    if isinstance(composed, list):
        return _FileResult(path, composed)
    if composed is None or (
        isinstance(composed, yaml.ScalarNode) and not composed.style and composed.value == ""
    ):
        return _FileResult(
            path, [Problem(path, 1, 1, "file is empty: write shopify_store and gorgias_account")]
        )
    doc = _Document(path)
    doc.value_nodes[()] = composed
    data = _build(composed, (), doc)
    _schema_problems(doc, data)
    result = _FileResult(path, doc.problems)
    if not isinstance(data, dict):
        return result
    store, gorgias = data.get("shopify_store"), data.get("gorgias_account")
    if isinstance(store, str) and domain_problem("shopify_store", store) is None:
        result.store = (store.lower(), doc.value_at(("shopify_store",)))
    if isinstance(gorgias, str) and domain_problem("gorgias_account", gorgias) is None:
        result.gorgias = (gorgias.lower(), doc.value_at(("gorgias_account",)))
        subdomain = result.gorgias[0].split(".", 1)[0]
        if path.stem != subdomain:
            doc.add(
                result.gorgias[1],
                f'file name "{path.name}" does not match gorgias_account "{result.gorgias[0]}": '
                f"rename the file to {subdomain}.yaml or correct gorgias_account",
            )
    if not doc.problems:
        try:
            result.account = Account.model_validate(data)
        except ValidationError as exc:  # the schema and the model disagree: still say where
            for item in exc.errors():
                where = tuple(item["loc"])
                doc.add(doc.value_at(where), f"{_dotted(where)}: {item['msg']}")
    return result


def _check_file(path: Path) -> _FileResult:
    text = _read_text(path)
    if isinstance(text, Problem):
        return _FileResult(path, [text])
    return _check_text(path, text)


def _account_files(folder: Path) -> list[Path]:
    """The account files directly in `folder`, by name (hidden files are skipped)."""
    with os.scandir(folder) as entries:
        names = sorted(
            entry.name
            for entry in entries
            if entry.name.endswith(ACCOUNT_FILE_SUFFIXES)
            and not entry.name.startswith(".")
            and entry.is_file()
        )
    return [folder / name for name in names]


class _Files:
    """Files to check, each once, identified by their normalised absolute path."""

    def __init__(self) -> None:
        self._cwd = os.getcwd()
        self.paths: dict[str, Path] = {}
        self.folders: set[str] = set()

    def key(self, path: Path) -> str:
        return os.path.normpath(os.path.join(self._cwd, path))

    def folder(self, folder: Path) -> dict[str, Path]:
        """The account files of `folder`, keyed (the folder is normalised once, not per file)."""
        folder_key = self.key(folder)
        self.folders.add(folder_key)
        prefix = os.path.join(folder_key, "")
        return {prefix + path.name: path for path in _account_files(folder)}

    def add(self, path: Path) -> None:
        self.paths.setdefault(self.key(path), path)


def _cross_file_problems(
    checked: Iterable[_FileResult], everything: Iterable[_FileResult]
) -> Iterator[Problem]:
    """The same store, or the same Gorgias account, in two files of the whole accounts dir."""
    by_store: dict[str, list[_FileResult]] = {}
    by_account: dict[str, list[_FileResult]] = {}
    for result in everything:
        if result.store is not None:
            by_store.setdefault(result.store[0], []).append(result)
        if result.gorgias is not None:
            by_account.setdefault(result.gorgias[0], []).append(result)
    checked_ids = {id(result) for result in checked}
    for owners, field_name, clash in (
        (by_store, "shopify_store", "is also linked in {}: a store links to one Gorgias account"),
        (by_account, "gorgias_account", "is also configured in {}: keep one file per account"),
    ):
        for domain, results in owners.items():
            if len(results) < 2:
                continue
            for result in results:
                if id(result) not in checked_ids:
                    continue
                others = ", ".join(str(other.path) for other in results if other is not result)
                found = result.store if field_name == "shopify_store" else result.gorgias
                assert found is not None
                (line, col) = found[1]
                message = f'{field_name} "{domain}" ' + clash.format(others)
                yield Problem(result.path, line, col, message)


@dataclass
class _Run:
    report: ValidationReport
    results: list[_FileResult]


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cycle collector while loading many files.

    Loading allocates many small objects and keeps the results alive, so the collector's
    generational passes (which walk every live object) would run over and over for nothing:
    nothing built here forms a reference cycle.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _run(paths: Sequence[Path], accounts_dir: Path) -> _Run:
    with _no_cyclic_gc():
        return _run_checks(paths, accounts_dir)


def _run_checks(paths: Sequence[Path], accounts_dir: Path) -> _Run:
    files = _Files()
    problems: list[Problem] = []
    for path in paths or [accounts_dir]:
        if path.is_dir():
            for key, child in files.folder(path).items():
                files.paths.setdefault(key, child)
        elif path.is_file():
            files.add(path)
        else:
            problems.append(Problem(path, 1, 1, "no such file or folder"))
    checked = {key: _check_file(path) for key, path in files.paths.items()}
    everything = dict(checked)
    if files.key(accounts_dir) not in files.folders and accounts_dir.is_dir():
        for key, path in files.folder(accounts_dir).items():
            if key not in everything:
                everything[key] = _check_file(path)
    for result in checked.values():
        problems.extend(result.problems)
    problems.extend(_cross_file_problems(checked.values(), everything.values()))
    problems.sort()
    return _Run(ValidationReport(len(checked), problems), list(checked.values()))


def validate_paths(paths: Sequence[Path], accounts_dir: Path) -> ValidationReport:
    """Check account files (files or folders; none = `accounts_dir`) and report every problem.

    Cross-file checks (the same store or Gorgias account twice) always cover the whole
    `accounts_dir`, so checking only the changed files still catches a clash with another.
    """
    return _run(paths, accounts_dir).report


def load_accounts(accounts_dir: Path) -> dict[str, AccountFile]:
    """Every account in `accounts_dir`, keyed by Gorgias domain; ConfigError if any is invalid."""
    if not accounts_dir.is_dir():
        raise ConfigError(
            [Problem(accounts_dir, 1, 1, "accounts folder not found: check --accounts-dir")]
        )
    run = _run([accounts_dir], accounts_dir)
    if run.report.problems:
        raise ConfigError(run.report.problems)
    accounts: dict[str, AccountFile] = {}
    for result in run.results:
        assert result.account is not None
        accounts[result.account.gorgias_account] = AccountFile(result.account, result.path)
    return accounts


# --------------------------------------------------------------------------- new account file


def account_file_text(account: Account) -> str:
    """The text `new` writes: the schema comment and the two required keys."""
    return (
        f"{SCHEMA_COMMENT}\n"
        f"shopify_store: {account.shopify_store}\n"
        f"gorgias_account: {account.gorgias_account}\n"
    )


def new_account_file(accounts_dir: Path, subdomain: str, store: str) -> Path:
    """Write `accounts_dir/<subdomain>.yaml` linking `store`; AccountInputError if not valid.

    `subdomain` may be `acme` or `acme.gorgias.com`, any case. Nothing is written unless the
    new file is valid, does not exist yet, and its store is not linked in another file.
    """
    gorgias = subdomain.strip().lower()
    if "." not in gorgias and "/" not in gorgias:
        gorgias += ".gorgias.com"
    store = store.strip()
    for field_name, value, label in (
        ("gorgias_account", gorgias, "SUBDOMAIN"),
        ("shopify_store", store, "--store"),
    ):
        message = domain_problem(field_name, value, label)  # type: ignore[arg-type]
        if message is not None:
            raise AccountInputError(message)
    account = Account(shopify_store=store, gorgias_account=gorgias)
    path = accounts_dir / f"{account.gorgias_subdomain}.yaml"
    for suffix in ACCOUNT_FILE_SUFFIXES:
        existing = path.with_suffix(suffix)
        if existing.exists():
            raise AccountInputError(f"{existing} already exists: edit it instead")
    text = account_file_text(account)
    problems = _check_text(path, text).problems
    if problems:  # cannot happen for valid inputs; never write a file `validate` rejects
        raise AccountInputError("; ".join(problem.message for problem in problems))
    if accounts_dir.is_dir():
        for other in _account_files(accounts_dir):
            linked = _check_file(other).store
            if linked is not None and linked[0] == account.shopify_store:
                raise AccountInputError(
                    f"--store: {account.shopify_store} is already linked in {other}: "
                    "a store links to one Gorgias account"
                )
    accounts_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise AccountInputError(f"{path} already exists: edit it instead") from None
    return path
