"""Each command loads only what it uses: the light commands never import the heavy parts.

Every pre-commit hook and pull-request check runs `validate`; it must not pay for the store,
the HTTP clients, the crypto library, the server or the reconciler. Each case runs the real
command line in a fresh interpreter and reads `sys.modules` when the command is done.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from together_reconcile.cli import COMMANDS, load_command

ROOT = Path(__file__).resolve().parents[1]

HEAVY = (
    "sqlalchemy",
    "httpx",
    "cryptography",
    "gunicorn",
    "psycopg",
    "prometheus_client",
    "together_reconcile.reconcile",
    "together_reconcile.store",
    "together_reconcile.events",
    "together_reconcile.gorgias",
    "together_reconcile.sandbox",
)

PROBE = """
import json, sys
from together_reconcile.cli import main
try:
    main.main(args=sys.argv[1:], prog_name="together-reconcile")
except SystemExit as exit_:
    code = exit_.code
heavy = sorted({name.split(".")[0] if not name.startswith("together_reconcile.") else
                ".".join(name.split(".")[:2]) for name in sys.modules})
sys.stderr.write("\\nMODULES " + json.dumps(heavy) + " EXIT " + repr(code) + "\\n")
"""


def loaded_after(*args: str, cwd: Path = ROOT) -> tuple[set[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    marker = result.stderr.rindex("\nMODULES ")
    payload, _, exit_text = result.stderr[marker + len("\nMODULES ") :].partition(" EXIT ")
    return set(json.loads(payload)), exit_text.strip()


@pytest.mark.parametrize(
    ("args", "expected_exit"),
    [
        (("validate", "accounts/acme.yaml"), "0"),
        (("validate",), "0"),
        (("schema",), "0"),
        (("schema", "--check"), "0"),
        (("keygen",), "0"),
        (("--help",), "0"),
        (("validate", "--help"), "0"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else value,
)
def test_light_commands_import_nothing_heavy(args: tuple[str, ...], expected_exit: str) -> None:
    loaded, exit_code = loaded_after(*args)
    assert exit_code == expected_exit
    assert sorted(loaded & set(HEAVY)) == []
    assert "together_reconcile.config" in loaded or args[-1] in ("--help", "keygen")


def test_new_imports_nothing_heavy(tmp_path: Path) -> None:
    loaded, exit_code = loaded_after(
        "--accounts-dir", str(tmp_path), "new", "acme", "--store", "acme.myshopify.com"
    )
    assert exit_code == "0"
    assert (tmp_path / "acme.yaml").is_file()
    assert sorted(loaded & set(HEAVY)) == []


def test_a_failing_validate_imports_nothing_heavy_either(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text("shopify_store: nope\n", encoding="utf-8")
    loaded, exit_code = loaded_after("--accounts-dir", str(tmp_path), "validate")
    assert exit_code == "1"
    assert sorted(loaded & set(HEAVY)) == []


def test_plan_does_load_the_reconciler() -> None:
    """The probe can see a heavy import: `plan --help` loads the reconciler's module."""
    loaded, exit_code = loaded_after("plan", "--help")
    assert exit_code == "0"
    assert "together_reconcile.reconcile" in loaded


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_table_summary_is_the_docstring_first_paragraph(name: str) -> None:
    command = load_command(name)
    assert command.help is not None
    first_paragraph = " ".join(command.help.split("\n\n")[0].split())
    assert COMMANDS[name][1] == first_paragraph
    assert command.name == name


def test_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "together_reconcile", "nosuch"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Error: No such command 'nosuch'." in result.stderr


def test_validate_of_a_valid_file_loads_neither_pydantic_nor_jsonschema() -> None:
    """The fast path (config.fastcheck): a valid file needs only YAML and the packaged schema."""
    loaded, exit_code = loaded_after("validate", "accounts/acme.yaml")
    assert exit_code == "0"
    assert sorted(loaded & {"pydantic", "pydantic_core", "jsonschema"}) == []
