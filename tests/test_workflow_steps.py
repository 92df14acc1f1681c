"""The workflows' own shell steps, run against the sandbox with the env each workflow sets.

GitHub itself is not involved: each `run:` script that calls `together-reconcile` is taken
from `.github/workflows/*.yml` as written and run with `bash -eo pipefail` (what `shell: bash`
means on GitHub), with the job's and step's `env:` after `${{ secrets.* }}` / `${{ vars.* }}`
are replaced by sandbox values. So a renamed flag or a changed exit code breaks this test,
not production. Steps that need GitHub (`gh`, the PR comment, the drift issue) are left out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Credential, Store

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
ACCOUNTS = ("acme", "globex", "initech")


@dataclass
class Workspace:
    """A checkout of the repository as the workflows see it, plus the values behind secrets."""

    path: Path
    values: dict[str, str]
    summary: Path
    output: Path


def step(workflow: str, job: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    document = yaml.safe_load((WORKFLOWS / workflow).read_text("utf-8"))
    job_spec = document["jobs"][job]
    (found,) = [s for s in job_spec["steps"] if s.get("name") == name]
    return job_spec, found


def resolve(value: Any, values: dict[str, str]) -> str:
    """`${{ secrets.X }}` / `${{ vars.X }}` / `${{ inputs.x || d }}` as GitHub would fill them."""

    def one(match: re.Match[str]) -> str:
        expression = match.group(1)
        source, _, default = expression.partition("||")
        key = source.strip().split(".", 1)[1]
        if source.strip().startswith(("secrets.", "vars.")):
            return values[key]
        if source.strip().startswith("inputs."):
            return default.strip()
        raise AssertionError(f"unexpected expression in env: {expression}")

    return EXPRESSION.sub(one, str(value))


def run_step(
    workspace: Workspace, workflow: str, job: str, name: str, *, script: str | None = None
) -> subprocess.CompletedProcess[str]:
    job_spec, step_spec = step(workflow, job, name)
    run = script if script is not None else step_spec["run"]
    assert "together-reconcile" in run, f"{workflow} {name} does not run together-reconcile"
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"),
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(workspace.summary),
        "GITHUB_OUTPUT": str(workspace.output),
        "NO_COLOR": "1",
    }
    for scope in (job_spec.get("env") or {}, step_spec.get("env") or {}):
        env.update({key: resolve(value, workspace.values) for key, value in scope.items()})
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", run],
        cwd=workspace.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def workspace(sandbox: RunningSandbox, tmp_path: Path) -> Workspace:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copytree(ROOT / "accounts", checkout / "accounts")
    shutil.copytree(ROOT / "schemas", checkout / "schemas")
    key = generate_key()
    state_url = f"sqlite:///{tmp_path}/state.db"
    with Store.open(state_url, Keyring.from_env(key)) as store:
        for account in ACCOUNTS:
            token = f"workflow-token-{account}"
            sandbox.control.add_gorgias_account(account, token)
            store.put_credential(Credential("gorgias", f"{account}.gorgias.com", token))
    values = {
        "TOGETHER_SECRET_KEYS": key,
        "TOGETHER_STATE_URL": state_url,
        "TOGETHER_PUBLIC_URL": "http://127.0.0.1:9",
        "TOGETHER_GORGIAS_URL": sandbox.gorgias_url_template,
        "TOGETHER_GORGIAS_CLIENT_ID": "workflow-client",
        "TOGETHER_GORGIAS_CLIENT_SECRET": "workflow-client-secret",
    }
    sandbox.control.set_oauth_client("workflow-client", "workflow-client-secret")
    return Workspace(checkout, values, tmp_path / "summary.md", tmp_path / "output.txt")


def drift_status(workspace: Workspace) -> str:
    lines = workspace.output.read_text("utf-8").splitlines()
    return [line for line in lines if line.startswith("status=")][-1]


def test_pull_request_merge_and_nightly_steps_run_against_the_sandbox(
    workspace: Workspace, sandbox: RunningSandbox
) -> None:
    for name in ("Validate account files", "Check the committed JSON Schema is current"):
        done = run_step(workspace, "plan.yml", "validate", name)
        assert done.returncode == 0, done.stdout + done.stderr

    done = run_step(workspace, "plan.yml", "plan", "Plan")
    assert done.returncode == 0, done.stderr
    comment = (workspace.path / "plan.md").read_text("utf-8")
    assert comment.count("create") >= 3
    for account in ACCOUNTS:
        assert f"{account}.gorgias.com" in comment
    assert (workspace.path / "plan.json").is_file()
    assert "acme.gorgias.com" in workspace.summary.read_text("utf-8")

    done = run_step(workspace, "drift.yml", "drift", "Plan")
    assert done.returncode == 0, done.stderr
    assert drift_status(workspace) == "status=2"

    for name in ("Plan", "Apply"):
        done = run_step(workspace, "apply.yml", "apply", name)
        assert done.returncode == 0, done.stdout + done.stderr
    for account in ACCOUNTS:
        assert len(sandbox.control.integrations(account)) == 1
        assert len(sandbox.control.widgets(account)) == 1

    done = run_step(workspace, "drift.yml", "drift", "Plan")
    assert done.returncode == 0, done.stderr
    assert drift_status(workspace) == "status=0"

    every_output = workspace.summary.read_text("utf-8") + (workspace.path / "plan.md").read_text()
    assert workspace.values["TOGETHER_SECRET_KEYS"] not in every_output
    assert "workflow-token-" not in every_output
    assert "workflow-client-secret" not in every_output


def test_a_renamed_flag_in_a_workflow_step_fails_the_step(workspace: Workspace) -> None:
    _, drift = step("drift.yml", "drift", "Plan")
    renamed = drift["run"].replace("--detailed-exitcode", "--detailed-exit-code")
    assert renamed != drift["run"]
    done = run_step(workspace, "drift.yml", "drift", "Plan", script=renamed)
    assert done.returncode == 1
    assert drift_status(workspace) == "status=1"
    assert "Error: No such option '--detailed-exit-code'." in done.stderr


def test_the_validate_job_annotates_a_broken_file(workspace: Workspace) -> None:
    broken = workspace.path / "accounts" / "acme.yaml"
    broken.write_text(broken.read_text("utf-8").replace("enabled", "enabeld") + "enabeld: true\n")
    done = run_step(workspace, "plan.yml", "validate", "Validate account files")
    assert done.returncode == 1
    assert "::error file=accounts/acme.yaml,line=" in done.stdout
    assert 'unknown key "enabeld": did you mean "enabled"?' in done.stdout


def test_apply_step_refuses_a_stale_plan_and_changes_nothing(
    workspace: Workspace, sandbox: RunningSandbox
) -> None:
    for name in ("Plan", "Apply"):
        assert run_step(workspace, "apply.yml", "apply", name).returncode == 0
    (ours,) = sandbox.control.integrations("acme")
    sandbox.control.edit_integration("acme", ours["id"], {"http": {"url": "https://a.example"}})
    done = run_step(workspace, "apply.yml", "apply", "Plan")  # the plan repairs the url...
    assert done.returncode == 0, done.stderr
    sandbox.control.edit_integration("acme", ours["id"], {"http": {"url": "https://b.example"}})
    before = {account: sandbox.control.integrations(account) for account in ACCOUNTS}

    done = run_step(workspace, "apply.yml", "apply", "Apply")  # ...but Gorgias moved since

    assert done.returncode == 3, done.stdout + done.stderr
    assert "stale" in done.stdout + done.stderr
    assert {account: sandbox.control.integrations(account) for account in ACCOUNTS} == before
