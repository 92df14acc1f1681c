"""The domain values' quick check never disagrees with the JSON Schema (the editor's verdict).

`validate` tests the two domain values with its own compiled regex first and calls jsonschema
only when that quick test fails; the JSON Schema stays the authority. These tests prove the
editor (plain jsonschema on the committed schema) and the CLI agree on good and bad values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from together_reconcile.config import account_json_schema, validate_paths
from together_reconcile.config import schema as account_schema

GOOD = "acme.myshopify.com", "acme.gorgias.com"
LABEL_63 = "a" * 63
LABEL_64 = "a" * 64


def corpus(suffix: str) -> list[Any]:
    return [
        # valid
        f"acme{suffix}",
        f"ACME{suffix.upper()}",
        f"Acme-Shop{suffix}",
        f"a{suffix}",
        f"0{suffix}",
        f"a-b-c-9{suffix}",
        f"{LABEL_63}{suffix}",
        # invalid, or valid only by the schema's search semantics
        "",
        "acme",
        suffix,
        f"-acme{suffix}",
        f"{LABEL_64}{suffix}",
        f"acme{suffix}\n",
        f" acme{suffix}",
        f"acme{suffix} ",
        f"acme{suffix}.evil.com",
        f"https://acme{suffix}",
        f"acme{suffix}/admin",
        f"ac_me{suffix}",
        f"acmé{suffix}",
        f"\u0663{suffix}",
        f"acme{suffix[:-1]}",
        f"acme.example.com{suffix}",
        "x" * 101,
        # not strings
        123,
        1.5,
        None,
        True,
        [f"acme{suffix}"],
        {"domain": f"acme{suffix}"},
    ]


def editor_errors(data: dict[str, Any]) -> set[tuple[tuple[Any, ...], str]]:
    validator = jsonschema.Draft202012Validator(account_json_schema())
    return {(tuple(e.absolute_path), str(e.validator)) for e in validator.iter_errors(data)}


def cli_errors(data: dict[str, Any]) -> set[tuple[tuple[Any, ...], str]]:
    return {
        (path, str(error.validator)) for path, error in account_schema.shape_checker().errors(data)
    }


@pytest.mark.parametrize("field", ["shopify_store", "gorgias_account"])
def test_editor_and_cli_agree_on_every_domain_value(field: str) -> None:
    suffix = ".myshopify.com" if field == "shopify_store" else ".gorgias.com"
    for value in corpus(suffix):
        data = {"shopify_store": GOOD[0], "gorgias_account": GOOD[1], field: value}
        assert cli_errors(data) == editor_errors(data), repr(value)


def test_the_corpus_has_both_verdicts() -> None:
    verdicts = {
        not editor_errors({"shopify_store": value, "gorgias_account": GOOD[1]})
        for value in corpus(".myshopify.com")
    }
    assert verdicts == {True, False}


def test_a_valid_domain_does_not_reach_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    checker = account_schema.shape_checker()._children["gorgias_account"]

    class Refusing:
        def iter_errors(self, instance: Any) -> Any:
            raise AssertionError(f"jsonschema called for {instance!r}")

    monkeypatch.setattr(checker, "_validator", Refusing())
    assert checker.errors("fresh-account-1234.gorgias.com") == []
    with pytest.raises(AssertionError, match="jsonschema called"):
        checker.errors("not a domain, never seen before 7f3a")


@pytest.mark.parametrize(
    "value",
    ["acme.myshopify.com", "ACME.MYSHOPIFY.COM", "acme", "https://acme.myshopify.com", "-a.b.c"],
)
def test_validate_files_agree_with_the_editor(tmp_path: Path, value: str) -> None:
    (tmp_path / "acme.yaml").write_text(
        f'shopify_store: "{value}"\ngorgias_account: acme.gorgias.com\n', encoding="utf-8"
    )
    report = validate_paths([tmp_path], tmp_path)
    editor_ok = not editor_errors({"shopify_store": value, "gorgias_account": "acme.gorgias.com"})
    assert report.ok == editor_ok, report.problems
