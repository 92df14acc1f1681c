"""Reading one account file: its text, and its YAML composed with the position of every node.

The YAML is composed once with libyaml (node marks give every problem its line and column),
values are resolved with the YAML 1.2 core rules an editor uses, and anchors, aliases, tags,
duplicate keys, several documents, oversized and non-UTF-8 files, and keys or values that look
like secrets are problems, each at the line of the offending key or value.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from together_reconcile.config.problems import KeyPath, Position, Problem
from together_reconcile.config.rules import MAX_FILE_BYTES
from together_reconcile.config.secretscan import NO_SECRETS_HERE, SECRET_KEY_RE, SECRET_VALUE_RE

DOMAIN_FIELDS = (("shopify_store",), ("gorgias_account",))  # checked as domains, not secrets
SYMLINK_PROBLEM = (
    "is a symbolic link: an account file must be a regular file in the accounts folder; "
    "replace the link with the file itself"
)


@dataclass
class Document:
    """The plain data of one file plus where each key and value sits in it."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    key_nodes: dict[KeyPath, yaml.Node] = field(default_factory=dict)
    value_nodes: dict[KeyPath, yaml.Node] = field(default_factory=dict)
    quoted: set[KeyPath] = field(default_factory=set)

    def key_at(self, path: KeyPath, default: Position = (1, 1)) -> Position:
        node = self.key_nodes.get(path)
        return default if node is None else _position(node.start_mark)

    def value_at(self, path: KeyPath, default: Position = (1, 1)) -> Position:
        node = self.value_nodes.get(path)
        return default if node is None else _position(node.start_mark)

    def add(self, position: Position, message: str) -> None:
        self.problems.append(Problem(self.path, position[0], position[1], message))


def _position(mark: Any) -> Position:
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


class LongNumber(int):
    """A whole number too long to show (or, past 4,300 digits, to convert: Python refuses).

    It compares as a number past every bound of an account file, so the schema reports it as
    out of range like any other number, and it prints as its length, never its digits.
    """

    digits: int

    def __new__(cls, text: str, base: int = 10) -> LongNumber:
        digits = text.lstrip("+-")
        sign = -1 if text.startswith("-") else 1
        value = int(digits, base) if len(digits) <= 4000 else 10**4000
        number = super().__new__(cls, sign * value)
        number.digits = len(digits)
        return number

    def __str__(self) -> str:
        return f"a {self.digits}-digit number"

    __repr__ = __str__


MAX_SHOWN_DIGITS = 18


def _whole_number(text: str, base: int = 10) -> int:
    if len(text.lstrip("+-")) > MAX_SHOWN_DIGITS:
        return LongNumber(text, base)
    return int(text, base)


def resolve_plain(text: str) -> Any:
    """A plain scalar under the YAML 1.2 core schema (what editors use), not YAML 1.1."""
    if text in _PLAIN_CONSTANTS:
        return _PLAIN_CONSTANTS[text]
    first = text[0]
    if first.isdigit() or first in "+-.":
        if _INT_RE.fullmatch(text):
            return _whole_number(text)
        if text.startswith("0o") and re.fullmatch(r"0o[0-7]+", text):
            return _whole_number(text[2:], 8)
        if text.startswith("0x") and re.fullmatch(r"0x[0-9a-fA-F]+", text):
            return _whole_number(text[2:], 16)
        if _FLOAT_RE.fullmatch(text):
            number = float(text)
            return int(number) if number.is_integer() else number
        if text.lstrip("+-") in (".inf", ".Inf", ".INF"):
            return -math.inf if text.startswith("-") else math.inf
    if text in (".nan", ".NaN", ".NAN"):
        return math.nan
    return text


def dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def build(node: yaml.Node, path: KeyPath, doc: Document) -> Any:
    """Plain Python data from a composed node, recording positions and key/secret problems."""
    if isinstance(node, yaml.ScalarNode):
        text: str = node.value
        plain_number = not node.style and _INT_RE.fullmatch(text) is not None
        if (
            path not in DOMAIN_FIELDS
            and not plain_number  # a number (never shown in full): its range is the problem
            and len(text) >= 7
            and SECRET_VALUE_RE.search(text)
        ):
            doc.add(
                _position(node.start_mark),
                f"{dotted(path) or 'value'}: this value looks like a secret (an access token "
                f"or key); {NO_SECRETS_HERE}",
            )
        if node.style:
            doc.quoted.add(path)
            return text
        return resolve_plain(text)
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, child in enumerate(node.value):
            child_path = (*path, index)
            doc.value_nodes[child_path] = child
            items.append(build(child, child_path, doc))
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
                f'duplicate key "{dotted((*path, key))}" (first set on line '
                f"{key_nodes[key].start_mark.line + 1}): keep only one",
            )
            continue
        key_nodes[key] = key_node
        key_path = (*path, key)
        doc.key_nodes[key_path] = key_node
        doc.value_nodes[key_path] = value_node
        if SECRET_KEY_RE.search(key):
            doc.add(
                _position(key_node.start_mark),
                f'key "{dotted(key_path)}" looks like a secret; {NO_SECRETS_HERE}',
            )
            continue
        mapping[key] = build(value_node, key_path, doc)
    return mapping


def _read_at_most(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes, reading until the end of the file (no buffered file object: a
    `validate` of thousands of files spends less on each)."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_text(path: Path) -> str | Problem:
    """The file's text, or the problem that stops it being read (size, encoding, I/O)."""
    try:
        # O_NOFOLLOW: a link (`acme.yaml -> ../docs/acme.yaml`) would let edits to a file
        # outside accounts/ change an account without touching accounts/.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            size = os.fstat(fd).st_size
            raw = b"" if size > MAX_FILE_BYTES else _read_at_most(fd, MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        if os.path.islink(path):
            return Problem(path, 1, 1, SYMLINK_PROBLEM)
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
    hits: dict[str, list[tuple[Position, str]]] = {kind: [] for kind in _FORBIDDEN}
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


def compose(path: Path, text: str) -> yaml.Node | Problem | list[Problem] | None:
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
