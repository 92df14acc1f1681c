"""apply.yml's support-loop steps, run as written against the sandbox, a real `serve` and the
GitHub stand-in (sandbox/github.py) on loopback ports.

The dispatched run (`apply --account "$ACCOUNT" --only create --yes --verify`) and the hourly run
(`apply --only create --yes --verify`), both from the unattended job `connect`, and the push run
(the saved plan, then `verify`, from the reviewed job `apply`) each end with the job `comment`'s
script posting ONE comment, found by its hidden marker and edited in place, on the
pull request that brought the change: the merge's own for a push, the one that added the
account file for the others (found in a real git history). Each step runs with `bash -eo
pipefail` and the env the workflow gives it, with `github.*`, `inputs.*` and `needs.*` filled as
GitHub would for that event.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.serve_helpers import ServedHandler, run_serve
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.sandbox.github import GitHubStandIn
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Credential, Store

# Slow proofs (real workflow scripts against the sandbox): `make test-slow`.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "apply.yml"
BIN = Path(sys.executable).parent
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
GITHUB_TOKEN = "ghs_" + "7f3e" * 9
MARKER = "<!-- together-reconcile-apply -->"
SHOPIFY_TOKEN = "shpat_" + "1234abcd" * 4


@dataclass
class Repo:
    path: Path
    values: dict[str, str]
    github: GitHubStandIn
    served: ServedHandler
    sandbox: RunningSandbox
    output: Path
    summary: Path

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def add_account(self, sub: str, pull: int, *, connected: bool = True) -> str:
        """The account file lands on main through pull request `pull` (its own commit)."""
        (self.path / "accounts" / f"{sub}.yaml").write_text(
            f"shopify_store: {sub}.myshopify.com\ngorgias_account: {sub}.gorgias.com\n"
        )
        self.git("add", "accounts")
        self.git("commit", "-q", "-m", f"add {sub} (#{pull})")
        sha = self.git("rev-parse", "HEAD")
        self.github.add_pull(sha, pull)
        keyring = Keyring.from_env(self.values["TOGETHER_SECRET_KEYS"])
        with Store.open(self.values["TOGETHER_STATE_URL"], keyring) as store:
            if connected:
                token = f"support-steps-{sub}"
                self.sandbox.control.add_gorgias_account(sub, token)
                store.put_credential(Credential("gorgias", f"{sub}.gorgias.com", token))
            self.sandbox.control.add_shopify_store(sub, SHOPIFY_TOKEN)
            store.put_credential(Credential("shopify", f"{sub}.myshopify.com", SHOPIFY_TOKEN))
        return sha


def job_step(job: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    document = yaml.safe_load(WORKFLOW.read_text("utf-8"))
    spec = document["jobs"][job]
    (found,) = [s for s in spec["steps"] if s.get("name") == name]
    return spec, found


def resolve(value: Any, context: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        """`a || b || 'c'`: the first alternative that is set and not empty, as GitHub does
        (an input left out, or the skipped job's output, is empty)."""
        expression = match.group(1)
        for alternative in (part.strip() for part in expression.split("||")):
            if alternative.startswith(("secrets.", "vars.")):
                value = context[alternative.split(".", 1)[1]]
            elif alternative in context:
                value = context[alternative]
            elif alternative.startswith(("inputs.", "needs.")):
                value = ""
            elif re.fullmatch(r"\d+|'[^']*'", alternative):
                value = alternative.strip("'")
            else:
                raise AssertionError(f"unexpected expression: {expression}")
            if value:
                return value
        return ""

    return EXPRESSION.sub(one, str(value))


def run(
    repo: Repo, job: str, name: str, context: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    spec, found = job_step(job, name)
    env = {
        "PATH": os.pathsep.join([str(BIN), os.environ["PATH"]]),
        "HOME": os.environ.get("HOME", "/root"),
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": repo.github.repository,
        "GITHUB_API_URL": repo.github.url,
        "GITHUB_SHA": context.get("github.sha", repo.git("rev-parse", "HEAD")),
        "GITHUB_OUTPUT": str(repo.output),
        "GITHUB_STEP_SUMMARY": str(repo.summary),
        "NO_COLOR": "1",
    }
    every = {**repo.values, **context}
    for scope in (spec.get("env") or {}, found.get("env") or {}):
        env.update({key: resolve(value, every) for key, value in scope.items()})
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", found["run"]],
        cwd=repo.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def outputs(repo: Repo) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in repo.output.read_text("utf-8").splitlines():
        key, _, value = line.partition("=")
        found[key] = value
    return found


def context_for(event: str, **extra: str) -> dict[str, str]:
    return {
        "github.event_name": event,
        "github.token": GITHUB_TOKEN,
        "github.server_url": "https://github.com",
        "github.repository": "together/accounts",
        "github.run_id": "4242",
        **extra,
    }


def job_for(context: dict[str, str]) -> str:
    """The job apply.yml runs for this event (tests/test_workflows.py checks each `if:`)."""
    if context["github.event_name"] == "schedule" or context.get("inputs.account"):
        return "connect"
    return "apply"


def run_apply_job(repo: Repo, context: dict[str, str], steps: tuple[str, ...]) -> dict[str, str]:
    repo.output.write_text("", "utf-8")
    for name in steps:
        done = run(repo, job_for(context), name, context)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
    return outputs(repo)


def run_comment_job(repo: Repo, context: dict[str, str], outcome: str) -> str:
    """The job `comment` after whichever job ran; the other's outcome is empty (skipped)."""
    done = run(
        repo,
        "comment",
        "Comment on the pull request",
        {**context, f"needs.{job_for(context)}.outputs.outcome": outcome},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def repo(sandbox: RunningSandbox, tmp_path: Path) -> Iterator[Repo]:
    if shutil.which("jq") is None or shutil.which("curl") is None:
        pytest.fail("jq and curl are needed (both are on GitHub's runners)")
    checkout = tmp_path / "checkout"
    (checkout / "accounts").mkdir(parents=True)
    shutil.copytree(ROOT / "schemas", checkout / "schemas")
    key = generate_key()
    state_url = f"sqlite:///{tmp_path}/state.db"
    Store.open(state_url, Keyring.from_env(key)).close()
    subprocess.run(["git", "init", "-q", "-b", "main", str(checkout)], check=True)
    for setting in (("user.name", "support"), ("user.email", "support@example.com")):
        subprocess.run(["git", "-C", str(checkout), "config", *setting], check=True)
    with (
        GitHubStandIn(GITHUB_TOKEN) as github,
        run_serve(
            tmp_path,
            accounts_dir=checkout / "accounts",
            state_url=state_url,
            secret_keys=key,
            shopify_url=sandbox.shopify_url_template,
        ) as served,
    ):
        values = {
            "TOGETHER_SECRET_KEYS": key,
            "TOGETHER_STATE_URL": state_url,
            "TOGETHER_PUBLIC_URL": served.url,
            "TOGETHER_GORGIAS_URL": sandbox.gorgias_url_template,
            "TOGETHER_GORGIAS_CLIENT_ID": "support-client",
            "TOGETHER_GORGIAS_CLIENT_SECRET": "support-client-secret",
        }
        yield Repo(
            checkout, values, github, served, sandbox, tmp_path / "out.txt", tmp_path / "summary.md"
        )


def the_comment(repo: Repo, pull: int) -> str:
    (comment,) = repo.github.comments_on(pull)
    assert comment["body"].startswith(MARKER)
    return str(comment["body"])


def test_a_dispatched_run_goes_live_and_answers_the_pull_request_that_added_the_file(
    repo: Repo,
) -> None:
    repo.add_account("late", pull=7)
    repo.add_account("other", pull=8)  # a later merge: its pull request must not hear of `late`
    context = context_for("workflow_dispatch", **{"inputs.account": "late.gorgias.com"})
    found = run_apply_job(repo, context, ("Plan", "Apply", "Outcome"))
    assert repo.sandbox.control.integrations("late") and not repo.sandbox.control.integrations(
        "other"
    )
    outcome = json.loads(found["outcome"])
    assert [entry["gorgias_account"] for entry in outcome] == ["late.gorgias.com"]
    run_comment_job(repo, context, found["outcome"])
    body = the_comment(repo, 7)
    assert "live and verified" in body and "late.gorgias.com" in body
    assert repo.github.comments_on(8) == []
    assert "late.gorgias.com" in repo.summary.read_text("utf-8")
    # the comment requests carried the job's token, and nothing printed it
    calls = [r for r in repo.github.requests if "/issues/" in r.path]
    assert calls and all(r.headers["authorization"] == f"Bearer {GITHUB_TOKEN}" for r in calls)


def test_the_comment_is_updated_in_place_and_keeps_the_other_accounts(repo: Repo) -> None:
    """A push merged #9 with two accounts, one not connected yet; the merchant connects later
    and the dispatched run updates the same comment."""
    repo.add_account("ready", pull=9)
    (repo.path / "accounts" / "waits.yaml").write_text(
        "shopify_store: waits.myshopify.com\ngorgias_account: waits.gorgias.com\n"
    )
    repo.git("add", "accounts")
    repo.git("commit", "-q", "--amend", "--no-edit")
    sha = repo.git("rev-parse", "HEAD")
    repo.github.add_pull(sha, 9)
    push = context_for("push", **{"github.sha": sha})
    found = run_apply_job(repo, push, ("Plan", "Apply", "Verify", "Outcome"))
    run_comment_job(repo, push, found["outcome"])
    body = the_comment(repo, 9)
    assert "✅ **ready.gorgias.com**: live and verified" in body
    assert "⏳ **waits.gorgias.com**: waiting for the merchant to connect" in body
    assert f"{repo.served.url}/oauth/gorgias/install?account=waits" in body

    # the merchant connects; the handler dispatches; the run answers the same comment
    keyring = Keyring.from_env(repo.values["TOGETHER_SECRET_KEYS"])
    repo.sandbox.control.add_gorgias_account("waits", "support-steps-waits")
    repo.sandbox.control.add_shopify_store("waits", SHOPIFY_TOKEN)
    with Store.open(repo.values["TOGETHER_STATE_URL"], keyring) as store:
        store.put_credential(Credential("gorgias", "waits.gorgias.com", "support-steps-waits"))
        store.put_credential(Credential("shopify", "waits.myshopify.com", SHOPIFY_TOKEN))
    dispatched = context_for("workflow_dispatch", **{"inputs.account": "waits.gorgias.com"})
    found = run_apply_job(repo, dispatched, ("Plan", "Apply", "Outcome"))
    run_comment_job(repo, dispatched, found["outcome"])
    body = the_comment(repo, 9)  # still exactly one comment
    assert "✅ **waits.gorgias.com**: live and verified" in body
    assert "✅ **ready.gorgias.com**: live and verified" in body
    assert "waiting for the merchant" not in body


def test_the_hourly_run_creates_only_and_comments_on_what_it_created(repo: Repo) -> None:
    repo.add_account("hourly", pull=11)
    context = context_for("schedule")
    found = run_apply_job(repo, context, ("Plan", "Apply", "Outcome"))
    assert repo.sandbox.control.integrations("hourly")
    run_comment_job(repo, context, found["outcome"])
    assert "live and verified" in the_comment(repo, 11)
    # an hour later nothing is left to create: no outcome, no comment job
    found = run_apply_job(repo, context, ("Plan", "Apply", "Outcome"))
    assert found["outcome"] == "[]"


def test_a_failed_verification_fails_the_dispatched_run_and_says_what_to_do(
    repo: Repo,
) -> None:
    repo.add_account("broken", pull=12)
    keyring = Keyring.from_env(repo.values["TOGETHER_SECRET_KEYS"])
    with Store.open(repo.values["TOGETHER_STATE_URL"], keyring) as store:
        store.delete_credential("shopify", "broken.myshopify.com")
    context = context_for("workflow_dispatch", **{"inputs.account": "broken.gorgias.com"})
    repo.output.write_text("", "utf-8")
    assert run(repo, "connect", "Plan", context).returncode == 0
    applied = run(repo, "connect", "Apply", context)
    assert applied.returncode == 1
    assert "broken.gorgias.com: FAILED shopify_not_connected" in applied.stdout
    assert run(repo, "connect", "Outcome", context).returncode == 0
    run_comment_job(repo, context, outputs(repo)["outcome"])
    body = the_comment(repo, 12)
    assert "❌ **broken.gorgias.com**: store_shopify_token" in body


def test_the_unattended_runs_never_update_or_delete(repo: Repo) -> None:
    """A merged change not yet approved for `production` (one account's widget changed, another
    disabled) stays untouched by the hourly run and by a dispatched run of the job `connect`
    (no reviewer): each is shown as skipped, and waits for the reviewed job `apply`."""
    repo.add_account("changes", pull=14)
    repo.add_account("leaves", pull=15)
    push = context_for("push", **{"github.sha": repo.git("rev-parse", "HEAD")})
    run_apply_job(repo, push, ("Plan", "Apply"))
    (repo.path / "accounts" / "changes.yaml").write_text(
        "shopify_store: changes.myshopify.com\ngorgias_account: changes.gorgias.com\n"
        "widget:\n  title: Final sale orders\n"
    )
    (repo.path / "accounts" / "leaves.yaml").write_text(
        "shopify_store: leaves.myshopify.com\ngorgias_account: leaves.gorgias.com\nenabled: false\n"
    )
    repo.git("add", "accounts")
    repo.git("commit", "-q", "-m", "change both (#16)")
    control = repo.sandbox.control
    before = {
        sub: (control.integrations(sub), control.widgets(sub)) for sub in ("changes", "leaves")
    }
    assert all(integrations and widgets for integrations, widgets in before.values())

    hourly = context_for("schedule")
    repo.output.write_text("", "utf-8")
    assert run(repo, "connect", "Plan", hourly).returncode == 0
    applied = run(repo, "connect", "Apply", hourly)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "changes.gorgias.com: update skipped" in applied.stdout
    assert "leaves.gorgias.com: delete skipped" in applied.stdout
    assert run(repo, "connect", "Outcome", hourly).returncode == 0
    assert outputs(repo)["outcome"] == "[]"  # nothing created: no comment

    dispatched = context_for("workflow_dispatch", **{"inputs.account": "changes.gorgias.com"})
    repo.output.write_text("", "utf-8")
    assert run(repo, "connect", "Plan", dispatched).returncode == 0
    applied = run(repo, "connect", "Apply", dispatched)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "changes.gorgias.com: update skipped" in applied.stdout
    after = {
        sub: (control.integrations(sub), control.widgets(sub)) for sub in ("changes", "leaves")
    }
    assert after == before

    # the reviewed path then applies both
    run_apply_job(repo, context_for("push"), ("Plan", "Apply"))
    assert control.integrations("leaves") == [] and control.widgets("leaves") == []
    assert control.widgets("changes") != before["changes"][1]
