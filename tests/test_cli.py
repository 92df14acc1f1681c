"""The root command: exit codes that scripts and workflows rely on."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from together_reconcile.cli import main


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--no-such-flag"], "Error: No such option '--no-such-flag'."),
        (["plan", "--no-such-flag"], "Error: No such option '--no-such-flag'."),
        (
            ["apply", "--max-deletes", "many"],
            "Error: Invalid value for '--max-deletes': 'many' is not a valid integer range.",
        ),
        (["nope"], "Error: No such command 'nope'."),
    ],
)
def test_usage_error_exits_1_not_2(args: list[str], error: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Usage:" in result.output
    assert result.output.splitlines()[-1] == error


def test_help_and_version_exit_0() -> None:
    assert CliRunner().invoke(main, ["--help"]).exit_code == 0
    version = CliRunner().invoke(main, ["--version"])
    assert version.exit_code == 0
    assert "0.1.0" in version.output


def test_python_dash_m_runs_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "together_reconcile", "plan", "--no-such-flag"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "No such option" in done.stderr


def test_serve_help_states_the_defaults_serve_really_uses() -> None:
    from together_reconcile.events import serve

    help_text = " ".join(CliRunner().invoke(main, ["serve", "--help"]).output.split())
    defaults = serve.ServeOptions()
    for value in (defaults.host, defaults.port, defaults.workers, defaults.threads):
        assert f"[default: {value}]" in help_text


GC_PROBE = """
import atexit, gc, sys
from together_reconcile.cli import run
atexit.register(lambda: sys.stderr.write(f"\\nGC {gc.isenabled()} {gc.get_threshold()}\\n"))
run()
"""


PYTHONS_OWN = "Python's own"


@pytest.mark.parametrize(
    ("args", "thresholds"),
    [
        (["keygen"], "(200000, 30, 30)"),  # a command that runs once: rare collections
        (["serve", "--help"], PYTHONS_OWN),  # a server keeps Python's usual short pauses
        (["--help"], PYTHONS_OWN),  # no command loaded: nothing changed
    ],
)
def test_the_program_paces_garbage_collection_by_command(args: list[str], thresholds: str) -> None:
    if thresholds == PYTHONS_OWN:
        fresh = [sys.executable, "-c", "import gc; print(gc.get_threshold())"]
        thresholds = subprocess.run(fresh, capture_output=True, text=True, check=True).stdout
        thresholds = thresholds.strip()
        assert thresholds != "(200000, 30, 30)"
    result = subprocess.run(
        [sys.executable, "-c", GC_PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith(f"\nGC True {thresholds}\n")
