"""The committed JSON Schema: generated from the model, usable by jsonschema and editors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jsonschema
from click.testing import CliRunner

from together_reconcile.cli import main
from together_reconcile.config import account_json_schema, render_json_schema

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "schemas" / "account.schema.json"


def test_schema_command_prints_the_committed_file() -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    assert result.output == COMMITTED.read_text(encoding="utf-8")


def test_check_passes_on_the_committed_file() -> None:
    result = CliRunner().invoke(main, ["schema", "--check", "--schema-file", str(COMMITTED)])
    assert result.exit_code == 0, result.output


def test_check_fails_on_a_stale_copy(tmp_path: Path) -> None:
    stale = tmp_path / "account.schema.json"
    shutil.copy(COMMITTED, stale)
    stale.write_text(stale.read_text().replace("Lookback days", "Look-back days"))
    result = CliRunner().invoke(
        main, ["schema", "--check"], env={"TOGETHER_SCHEMA_FILE": str(stale)}
    )
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {stale} is stale; regenerate it with: together-reconcile schema > {stale}\n"
    )


def test_check_fails_when_the_file_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    result = CliRunner().invoke(main, ["schema", "--check", "--schema-file", str(missing)])
    assert result.exit_code == 1
    assert f"cannot read {missing}" in result.output


def test_schema_is_draft_2020_12_with_an_id() -> None:
    schema = json.loads(render_json_schema())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"]
    assert schema["required"] == ["shopify_store", "gorgias_account"]
    assert schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert prop["title"] and prop["description"], name


def test_patterns_are_ecma_compatible_and_case_insensitive() -> None:
    schema = account_json_schema()
    for name in ("shopify_store", "gorgias_account"):
        pattern = schema["properties"][name]["pattern"]
        assert "(?" not in pattern, "inline flags are not ECMA-262"
        domain = "ACME." + ("MyShopify.com" if name == "shopify_store" else "Gorgias.COM")
        assert re.search(pattern, domain)
        assert not re.search(pattern, "https://" + domain)


def test_jsonschema_validates_the_examples_directly() -> None:
    import yaml

    validator = jsonschema.Draft202012Validator(account_json_schema())
    examples = sorted((REPO / "accounts").glob("*.yaml"))
    assert examples, "accounts/ holds the example account files"
    for path in examples:
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path
    bad = {"shopify_store": "acme.myshopify.com", "gorgias_account": "acme.gorgias.com", "x": 1}
    assert not validator.is_valid(bad)


def test_example_files_point_editors_at_the_schema() -> None:
    for path in sorted((REPO / "accounts").glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/account.schema.json"
