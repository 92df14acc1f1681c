"""The fast path of `validate`: a quick "surely valid" that never says yes where jsonschema says no.

`fastcheck.surely_valid` lets a valid file skip jsonschema and pydantic. It may say "not sure"
as often as it likes (jsonschema then decides), but a yes for an invalid document would let a
bad file through: every case below is checked against jsonschema itself.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from together_reconcile.config import render_json_schema, validate_paths
from together_reconcile.config.fastcheck import surely_valid
from together_reconcile.config.schema import PACKAGED_SCHEMA_FILE, packaged_schema

ROOT = Path(__file__).resolve().parents[1]
VALID: dict[str, Any] = {
    "shopify_store": "acme.myshopify.com",
    "gorgias_account": "acme.gorgias.com",
    "enabled": True,
    "lookback_days": 30,
    "widget": {"context": "customer", "order": 2, "title": "Final-sale orders"},
    "notes": "linked by support",
}

# (dotted key, replacement values) - each a value of the wrong type, out of range, or odd.
VARIANTS: dict[str, list[Any]] = {
    "shopify_store": ["ACME.MyShopify.com", "acme.myshopify.com\n", "acme", "", 3, None, "a" * 101],
    "gorgias_account": ["acme.gorgias.com ", "x.gorgias.com", "-acme.gorgias.com", True, []],
    "enabled": [False, "false", 0, 1, None],
    "lookback_days": [1, 60, 0, 61, 30.0, 30.5, True, "30", -1],
    "widget.context": ["ticket", "Ticket", "sidebar", 1, None],
    "widget.order": [0, -1, 10**6, 2.0, False, "2"],
    "widget.title": ["", "x" * 100, "x" * 101, 5, None],
    "notes": [None, "", "x" * 2000, "x" * 2001, 12, ["a"]],
}


def with_value(dotted: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    *parents, last = dotted.split(".")
    target = document
    for parent in parents:
        target = target[parent]
    target[last] = value
    return document


def documents() -> list[dict[str, Any]]:
    found = [copy.deepcopy(VALID)]
    for dotted, values in VARIANTS.items():
        found.extend(with_value(dotted, value) for value in values)
    for key in VALID:
        without = copy.deepcopy(VALID)
        del without[key]
        found.append(without)
    found.append({**copy.deepcopy(VALID), "extra": 1})
    found.append({**copy.deepcopy(VALID), "widget": {"colour": "red"}})
    found.append({**copy.deepcopy(VALID), 1: "non-string key"})
    found.append({"shopify_store": "acme.myshopify.com", "gorgias_account": "acme.gorgias.com"})
    return found


def test_the_corpus_has_both_verdicts() -> None:
    verdicts = {surely_valid(packaged_schema(), doc) for doc in documents()}
    assert verdicts == {True, False}


@pytest.mark.parametrize("document", documents(), ids=lambda _: "doc")
def test_surely_valid_never_says_yes_where_jsonschema_says_no(document: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(packaged_schema())
    if surely_valid(packaged_schema(), document):
        assert list(validator.iter_errors(document)) == []


def test_the_common_valid_file_is_surely_valid() -> None:
    assert surely_valid(packaged_schema(), VALID)
    minimal = {"shopify_store": "acme.myshopify.com", "gorgias_account": "acme.gorgias.com"}
    assert surely_valid(packaged_schema(), minimal)


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "array"}, []),
        ({"type": "string", "format": "email"}, "x"),
        ({"oneOf": [{"type": "string"}]}, "x"),
        ({"type": "object", "patternProperties": {"^x": True}}, {}),
    ],
)
def test_an_unknown_keyword_or_type_is_not_sure(schema: dict[str, Any], value: Any) -> None:
    assert surely_valid(schema, value) is False


def test_a_float_where_an_integer_is_expected_is_not_sure() -> None:
    # jsonschema counts 30.0 as an integer; the model does not: the slow path decides.
    assert surely_valid({"type": "integer"}, 30.0) is False
    assert surely_valid({"type": "integer"}, True) is False
    assert surely_valid({"type": "integer", "minimum": 1}, 1) is True


def test_the_packaged_schema_is_the_generated_one() -> None:
    assert PACKAGED_SCHEMA_FILE.read_text(encoding="utf-8") == render_json_schema()
    assert json.loads(render_json_schema()) == packaged_schema()


def test_schema_check_names_a_stale_packaged_copy(tmp_path: Path) -> None:
    """`schema --check` fails when the copy validate applies differs, and says how to fix it."""
    probe = (
        "import sys\n"
        "from together_reconcile.config import schema\n"
        "schema.PACKAGED_SCHEMA_FILE = __import__('pathlib').Path(sys.argv[1])\n"
        "from together_reconcile.cli import main\n"
        "main.main(args=['schema', '--check'], prog_name='together-reconcile')\n"
    )
    stale = tmp_path / "account.schema.json"
    stale.write_text("{}\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", probe, str(stale)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "Error: the schema validate applies (account.schema.json in the package) is stale; "
        "regenerate both copies with: make schema\n"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'gorgias_account: "acme.gorgias.com\\n"',
            'gorgias_account: remove the spaces or line breaks around "acme.gorgias.com"',
        ),
        (
            "gorgias_account: |\n  acme.gorgias.com",
            'gorgias_account: remove the spaces or line breaks around "acme.gorgias.com"',
        ),
        (
            'gorgias_account: " Acme.Gorgias.com"',
            'gorgias_account: remove the spaces or line breaks around "acme.gorgias.com"',
        ),
    ],
)
def test_a_domain_with_a_line_break_gets_the_friendly_message(
    tmp_path: Path, line: str, message: str
) -> None:
    (tmp_path / "acme.yaml").write_text(
        f"shopify_store: acme.myshopify.com\n{line}\n", encoding="utf-8"
    )
    report = validate_paths([], tmp_path)
    assert [(p.line, p.col, p.message) for p in report.problems] == [(2, 18, message)]
