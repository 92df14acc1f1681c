"""The workflows' own shell steps, run against the sandbox with the env each workflow sets.

GitHub itself is not involved: each `run:` script that calls `together-reconcile` is taken
from `.github/workflows/*.yml` as written and run with `bash -eo pipefail` (what `shell: bash`
means on GitHub), with the job's and step's `env:` after `${{ secrets.* }}` / `${{ vars.* }}`
are replaced by sandbox values, in the step's `working-directory`. So a renamed flag or a
changed exit code breaks this test, not production.

The workspace is laid out as the jobs see it: main's files at the top, and for plan.yml the
pull request's `accounts/` and `schemas/` in `pr/` (checked out as data). The PR comment needs
GitHub and is left out; the drift issue steps run against a stand-in `gh` that answers from a
list of issues, to show that only an issue the bot opened is ever edited or closed.
"""

from __future__ import annotations

import json
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

# Slow proofs (real workflow scripts against the sandbox): `make test-slow`.
pytestmark = pytest.mark.slow

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
    """`${{ secrets.X }}` / `${{ vars.X }}` / `${{ inputs.x || d }}` / `${{ github.x }}` as
    GitHub would fill them."""

    def one(match: re.Match[str]) -> str:
        expression = match.group(1)
        source, _, default = expression.partition("||")
        key = source.strip().split(".", 1)[1]
        if source.strip().startswith(("secrets.", "vars.")):
            return values[key]
        if source.strip().startswith("inputs."):
            return default.strip()
        if source.strip().startswith("github."):
            return f"github-{key}"
        raise AssertionError(f"unexpected expression in env: {expression}")

    return EXPRESSION.sub(one, str(value))


def run_step(
    workspace: Workspace,
    workflow: str,
    job: str,
    name: str,
    *,
    script: str | None = None,
    path: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run one step; `path` goes in front of PATH (a stand-in `gh`)."""
    job_spec, step_spec = step(workflow, job, name)
    run = script if script is not None else step_spec["run"]
    env = {
        "PATH": os.pathsep.join(filter(None, [path, str(BIN), os.environ["PATH"]])),
        "HOME": os.environ.get("HOME", "/root"),
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "together/accounts",
        "GITHUB_STEP_SUMMARY": str(workspace.summary),
        "GITHUB_OUTPUT": str(workspace.output),
        "NO_COLOR": "1",
    }
    for scope in (job_spec.get("env") or {}, step_spec.get("env") or {}):
        env.update({key: resolve(value, workspace.values) for key, value in scope.items()})
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", run],
        cwd=workspace.path / step_spec.get("working-directory", "."),
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
    for folder in ("accounts", "schemas"):
        shutil.copytree(ROOT / folder, checkout / folder)  # main
        shutil.copytree(ROOT / folder, checkout / "pr" / folder)  # the pull request's, as data
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
    """Main's CLI run inside pr/: the annotation names the pull request's own path."""
    broken = workspace.path / "pr" / "accounts" / "acme.yaml"
    broken.write_text(broken.read_text("utf-8").replace("enabled", "enabeld") + "enabeld: true\n")
    done = run_step(workspace, "plan.yml", "validate", "Validate account files")
    assert done.returncode == 1
    assert "::error file=accounts/acme.yaml,line=" in done.stdout
    assert 'unknown key "enabeld": did you mean "enabled"?' in done.stdout
    assert "pr/accounts" not in done.stdout


def test_the_pull_request_plan_reads_the_pull_requests_files_not_mains(
    workspace: Workspace,
) -> None:
    (workspace.path / "accounts" / "initech.yaml").unlink()  # on main: not there yet
    done = run_step(workspace, "plan.yml", "plan", "Plan")
    assert done.returncode == 0, done.stderr
    comment = (workspace.path / "plan.md").read_text("utf-8")
    assert "initech.gorgias.com" in comment  # the pull request adds it
    assert not (workspace.path / "pr" / "plan.md").exists()  # nothing written into the data


@pytest.mark.parametrize("job", ["validate", "plan"])
def test_a_symbolic_link_in_the_pull_request_stops_both_jobs(
    workspace: Workspace, job: str
) -> None:
    assert run_step(workspace, "plan.yml", job, "Refuse symbolic links").returncode == 0
    (workspace.path / "pr" / "accounts" / "zz.yaml").symlink_to("/proc/self/environ")
    done = run_step(workspace, "plan.yml", job, "Refuse symbolic links")
    assert done.returncode == 1
    assert done.stdout.startswith("::error::the pull request adds a symbolic link")
    assert "environ" not in done.stdout + done.stderr


STAND_IN_GH = """#!/usr/bin/env bash
# A stand-in for the GitHub CLI: logs each call; `issue list` answers from $GH_ISSUES through
# the caller's own --jq filter (the real one filters the same JSON the same way).
printf '%s\\n' "$*" >> "$GH_LOG"
if [ "$1 $2" = "issue list" ]; then
  while [ "$#" -gt 0 ]; do
    if [ "$1" = "--jq" ]; then jq -r "$2" "$GH_ISSUES"; fi
    shift
  done
fi
"""
BOT = {"login": "app/github-actions", "is_bot": True}  # how gh prints the Actions bot


def drift_issue_calls(
    workspace: Workspace, tmp_path: Path, name: str, issues: list[dict[str, Any]]
) -> list[str]:
    if shutil.which("jq") is None:
        pytest.fail("jq is needed (it is on GitHub's runners): apt-get install jq")
    stand_in = tmp_path / "bin"
    stand_in.mkdir(exist_ok=True)
    (stand_in / "gh").write_text(STAND_IN_GH, "utf-8")
    (stand_in / "gh").chmod(0o755)
    (tmp_path / "issues.json").write_text(json.dumps(issues), "utf-8")
    log = tmp_path / "gh.log"
    log.write_text("", "utf-8")
    (workspace.path / "drift.md").write_text("drift plan\n", "utf-8")
    _, step_spec = step("drift.yml", "drift", name)
    script = f"export GH_ISSUES={tmp_path}/issues.json GH_LOG={log}\n" + step_spec["run"]
    done = run_step(workspace, "drift.yml", "drift", name, script=script, path=str(stand_in))
    assert done.returncode == 0, done.stdout + done.stderr
    calls = log.read_text("utf-8").splitlines()
    assert "--author app/github-actions" in calls[0]
    return calls[1:]


OPEN = 'Open or update the "Drift detected" issue'
CLOSE = 'Close the "Drift detected" issue once in sync'


def test_drift_updates_only_the_issue_the_bot_opened(workspace: Workspace, tmp_path: Path) -> None:
    issues = [
        {"number": 5, "title": "Drift detected", "author": {"login": "mallory", "is_bot": False}},
        {"number": 6, "title": "Drift detected", "author": {"login": "app/evil", "is_bot": True}},
        {"number": 7, "title": "Drift detected", "author": BOT},
        {"number": 8, "title": "Drift detected?", "author": BOT},
    ]
    (edit,) = drift_issue_calls(workspace, tmp_path, OPEN, issues)
    assert edit.startswith("issue edit 7 ")
    (close,) = drift_issue_calls(workspace, tmp_path, CLOSE, issues)
    assert close.startswith("issue close 7 ")


def test_an_issue_someone_else_titled_drift_detected_never_gets_the_plan(
    workspace: Workspace, tmp_path: Path
) -> None:
    """Anyone may open an issue called "Drift detected"; the plan must not land in it."""
    issues = [
        {"number": 5, "title": "Drift detected", "author": {"login": "mallory", "is_bot": False}},
        {"number": 6, "title": "Drift detected", "author": {"login": "github-actions"}},
    ]
    (create,) = drift_issue_calls(workspace, tmp_path, OPEN, issues)
    assert create.startswith("issue create ") and "--title Drift detected" in create
    assert drift_issue_calls(workspace, tmp_path, CLOSE, issues) == []


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
