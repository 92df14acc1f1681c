"""`together-reconcile validate`: output format, exit status, GitHub annotations, real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from together_reconcile.cli import main

REPO = Path(__file__).resolve().parents[1]
GOOD = "shopify_store: acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"


@pytest.fixture
def accounts(tmp_path: Path) -> Path:
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "acme.yaml").write_text(GOOD)
    return folder


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"GITHUB_ACTIONS": "", **(env or {})})
    return result.exit_code, result.output


def test_valid_folder_exits_0(accounts: Path) -> None:
    assert run("--accounts-dir", str(accounts), "validate") == (0, "1 file, 0 problems\n")


def test_accounts_dir_from_environment(accounts: Path) -> None:
    assert run("validate", env={"TOGETHER_ACCOUNTS_DIR": str(accounts)}) == (
        0,
        "1 file, 0 problems\n",
    )


def test_problems_then_summary_exit_1(accounts: Path) -> None:
    bad = accounts / "beta.yaml"
    bad.write_text("shopify_store: acme.myshopify.com\ngorgias_account: beta.gorgias.com\n")
    code, output = run("--accounts-dir", str(accounts), "validate", str(bad))
    assert code == 1
    assert output == (
        f'{bad}:1:16: shopify_store "acme.myshopify.com" is also linked in '
        f"{accounts / 'acme.yaml'}: a store links to one Gorgias account\n"
        "1 file, 1 problem\n"
    )


def test_github_annotations(accounts: Path) -> None:
    bad = accounts / "acme.yaml"
    bad.write_text(GOOD + "lookback_days: 61\n")
    code, output = run("--accounts-dir", str(accounts), "validate", env={"GITHUB_ACTIONS": "true"})
    assert code == 1
    assert output.splitlines() == [
        f"{bad}:3:16: lookback_days: must be between 1 and 60, got 61",
        f"::error file={bad},line=3,col=16::lookback_days: must be between 1 and 60, got 61",
        "1 file, 1 problem",
    ]


def test_no_annotations_outside_github(accounts: Path) -> None:
    (accounts / "acme.yaml").write_text("")
    code, output = run("--accounts-dir", str(accounts), "validate")
    assert code == 1
    assert "::error" not in output


def test_installed_console_script_as_a_real_process(accounts: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("together-reconcile")
    (accounts / "globex.yaml").write_text("shopify_store: globex.myshopify.com\n")
    env = {**os.environ, "TOGETHER_ACCOUNTS_DIR": str(accounts), "GITHUB_ACTIONS": "false"}
    done = subprocess.run(
        [str(script), "validate"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f'{accounts / "globex.yaml"}:1:1: missing required key "gorgias_account"',
        "2 files, 1 problem",
    ]


def test_example_accounts_validate_as_a_real_process() -> None:
    script = Path(sys.executable).with_name("together-reconcile")
    env = {k: v for k, v in os.environ.items() if k != "TOGETHER_ACCOUNTS_DIR"}
    done = subprocess.run(
        [str(script), "validate"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "3 files, 0 problems\n")
