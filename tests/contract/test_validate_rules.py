"""SPEC "Precise rules" — `validate`: paths, cross-file checks, line numbers, strict YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.conftest import Result, run_cli

GOOD = "shopify_store: {s}.myshopify.com\ngorgias_account: {s}.gorgias.com\n"

FILES = {
    "stem.yaml": "shopify_store: stem.myshopify.com\ngorgias_account: other.gorgias.com\n",
    "dupa.yaml": "shopify_store: shared.myshopify.com\ngorgias_account: dupa.gorgias.com\n",
    "dupb.yaml": "gorgias_account: dupb.gorgias.com\nnotes: x\n"
    "shopify_store: shared.myshopify.com\n",
    "empty.yaml": "",
    "missing.yaml": "# a comment\n\ngorgias_account: missing.gorgias.com\n",
    "dupkey.yaml": GOOD.format(s="dupkey") + "lookback_days: 5\nlookback_days: 6\n",
    "multi.yaml": GOOD.format(s="multi") + "---\nnotes: second\n",
    "anchor.yaml": "shopify_store: &s anchor.myshopify.com\ngorgias_account: anchor.gorgias.com\n"
    "notes: *s\n",
    "tagged.yaml": "shopify_store: !!str tagged.myshopify.com\n"
    "gorgias_account: tagged.gorgias.com\n",
    "good.yaml": GOOD.format(s="good"),
}


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("validate")
    folder = root / "accounts"
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def whole_dir(accounts: Path) -> Result:
    """`validate` with no PATH, run from the folder that holds `accounts/` (the default)."""
    return run_cli("validate", cwd=accounts.parent)


def lines_for(result: Result, name: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(f"accounts/{name}:")]


def test_validate_without_path_checks_the_default_accounts_dir(whole_dir: Result) -> None:
    assert whole_dir.code == 1
    assert f"{len(FILES)} files" in whole_dir.stdout


def test_validate_problem_format_is_path_line_col_message(whole_dir: Result) -> None:
    problems = [line for line in whole_dir.stdout.splitlines() if line.startswith("accounts/")]
    assert problems
    for line in problems:
        path, line_no, col, message = line.split(":", 3)
        assert path.endswith(".yaml") and line_no.isdigit() and col.isdigit()
        assert message.startswith(" ") and message.strip()


def test_validate_stem_mismatch_points_at_gorgias_account_line(whole_dir: Result) -> None:
    (line,) = lines_for(whole_dir, "stem.yaml")
    assert line.startswith("accounts/stem.yaml:2:")
    assert "does not match" in line


def test_validate_duplicate_store_points_at_shopify_store_line_of_each_file(
    whole_dir: Result,
) -> None:
    (first,) = lines_for(whole_dir, "dupa.yaml")
    (second,) = lines_for(whole_dir, "dupb.yaml")
    assert first.startswith("accounts/dupa.yaml:1:") and "dupb.yaml" in first
    assert second.startswith("accounts/dupb.yaml:3:") and "dupa.yaml" in second


def test_validate_empty_file_is_an_error_at_line_1(whole_dir: Result) -> None:
    (line,) = lines_for(whole_dir, "empty.yaml")
    assert line.startswith("accounts/empty.yaml:1:")


def test_validate_missing_required_key_is_an_error_at_line_1(whole_dir: Result) -> None:
    (line,) = lines_for(whole_dir, "missing.yaml")
    assert line.startswith("accounts/missing.yaml:1:")
    assert "shopify_store" in line


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("dupkey.yaml", "duplicate key"),
        ("multi.yaml", "several YAML documents"),
        ("anchor.yaml", "anchors are not allowed"),
        ("tagged.yaml", "tags are not allowed"),
    ],
)
def test_validate_duplicate_keys_documents_anchors_tags_are_errors(
    whole_dir: Result, name: str, words: str
) -> None:
    found = lines_for(whole_dir, name)
    assert found, f"no problem reported for {name}"
    assert any(words in line for line in found)


def test_validate_alias_is_an_error(whole_dir: Result) -> None:
    assert any("aliases are not allowed" in line for line in lines_for(whole_dir, "anchor.yaml"))


def test_validate_valid_file_has_no_problem(whole_dir: Result) -> None:
    assert lines_for(whole_dir, "good.yaml") == []


def test_validate_accepts_files_and_folders_and_exits_0_when_valid(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "one.yaml").write_text(GOOD.format(s="one"))
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "two.yaml").write_text(GOOD.format(s="two"))
    done = run_cli("validate", "accounts/one.yaml", "more", cwd=tmp_path)
    assert done.code == 0, done.output
    assert "2 files, 0 problems" in done.stdout


def test_validate_one_file_still_catches_a_store_clash_with_the_whole_dir(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "old.yaml").write_text(
        "shopify_store: same.myshopify.com\ngorgias_account: old.gorgias.com\n"
    )
    (folder / "new.yaml").write_text(
        "shopify_store: SAME.myshopify.com\ngorgias_account: new.gorgias.com\n"
    )
    done = run_cli("validate", "accounts/new.yaml", cwd=tmp_path)
    assert done.code == 1
    assert "accounts/new.yaml:1:" in done.stdout
    assert "old.yaml" in done.stdout


def test_validate_prints_github_annotations_when_github_actions_is_true(
    accounts: Path,
) -> None:
    done = run_cli(
        "validate", "accounts/stem.yaml", cwd=accounts.parent, env={"GITHUB_ACTIONS": "true"}
    )
    assert done.code == 1
    assert "::error file=accounts/stem.yaml,line=2," in done.stdout
    plain = run_cli("validate", "accounts/stem.yaml", cwd=accounts.parent)
    assert "::error" not in plain.stdout
