"""SPEC: "No output of any command ever contains a secret". Every output of this suite is checked
against every secret it used (conftest `no_secret_in_any_output`); these tests aim at the places
a secret is most likely to slip out: error messages about inputs that hold one."""

from __future__ import annotations

import json
from pathlib import Path

from tests.contract.conftest import Scenario, remember_secret, run_cli
from together_reconcile.secrets import generate_key

TOKEN = "very-secret-token-" + "ab" * 16


def env_for(tmp_path: Path) -> dict[str, str]:
    key = generate_key()
    remember_secret(key, TOKEN)
    return {"TOGETHER_SECRET_KEYS": key, "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/s.db"}


def test_no_secret_in_credentials_put_errors(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    cases = [
        ("gorgias", "acme.gorgias.com", '{"access_token": "' + TOKEN + '", "expires_in": "x"}'),
        ("gorgias", "acme.gorgias.com", '{"access_token": "' + TOKEN + '"'),  # broken JSON
        ("shopify", "acme", json.dumps({"access_token": TOKEN})),
        ("gorgias", "acme.gorgias.com", json.dumps({"access_token": TOKEN, "extra": TOKEN})),
    ]
    for kind, domain, stdin in cases:
        done = run_cli("credentials", "put", kind, domain, env=env, stdin=stdin)
        assert TOKEN not in done.output


def test_no_secret_in_credentials_import_errors(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    lines = [
        json.dumps({"kind": "gorgias", "domain": "a.gorgias.com", "access_token": TOKEN}),
        json.dumps({"kind": "nope", "domain": "b.gorgias.com", "access_token": TOKEN}),
        '{"kind": "shopify", "access_token": "' + TOKEN + '" oops',
    ]
    for bad in lines[1:]:
        done = run_cli("credentials", "import", "-", env=env, stdin=lines[0] + "\n" + bad + "\n")
        assert done.code == 1
        assert "line 2" in done.output
        assert TOKEN not in done.output


def test_no_secret_in_a_wrong_key_error(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    stdin = json.dumps({"access_token": TOKEN})
    assert (
        run_cli("credentials", "put", "shopify", "a.myshopify.com", env=env, stdin=stdin).code == 0
    )
    other = generate_key()
    remember_secret(other)
    done = run_cli("credentials", "rotate", env={**env, "TOGETHER_SECRET_KEYS": other})
    assert done.code == 1
    assert TOKEN not in done.output and env["TOGETHER_SECRET_KEYS"] not in done.output


def test_no_secret_in_plan_text_markdown_json_or_apply_output(scenario: Scenario) -> None:
    """The scenario holds a changed token header; every rendering shows fingerprints only."""
    for args in (("plan",), ("plan", "--format", "markdown"), ("plan", "--json")):
        done = scenario.world.cli(*args)
        assert "sha256:" in done.stdout
    # the conftest check runs over these outputs against the keys, tokens and header values
