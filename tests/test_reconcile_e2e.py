"""End to end: `plan` and `apply` against the sandbox over loopback, with a real SQLite store.

Most runs go through the real CLI in-process (click's runner); the ones where a process
matters (the acceptance loop, SIGKILL mid-apply, two applies at once) run it as subprocesses.
Every output of every run is kept, and each test checks that no secret appears in it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from together_reconcile.cli import main
from together_reconcile.reconcile.desired import OWNERSHIP_MARKER
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Credential, Store

ALL_OUTPUT: list[str] = []
ALL_SECRETS: set[str] = set()


@dataclass
class Run:
    exit_code: int
    output: str

    def json(self) -> Any:
        return json.loads(self.output)


@dataclass
class World:
    """A sandbox, an accounts folder, a SQLite store and the environment the CLI runs with."""

    sandbox: RunningSandbox
    root: Path
    keys: str = field(default_factory=lambda: f"{generate_key()},{generate_key()}")
    outputs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.accounts_dir = self.root / "accounts"
        self.accounts_dir.mkdir()
        self.state_url = f"sqlite:///{self.root}/state.db"
        self.keyring = Keyring.from_env(self.keys)
        self.secrets: set[str] = set(self.keys.split(","))

    @property
    def env(self) -> dict[str, str]:
        return {
            "TOGETHER_SECRET_KEYS": self.keys,
            "TOGETHER_PUBLIC_URL": "https://together.example.com",
            "TOGETHER_GORGIAS_URL": self.sandbox.gorgias_url_template,
            "TOGETHER_STATE_URL": self.state_url,
            "TOGETHER_ACCOUNTS_DIR": str(self.accounts_dir),
            "NO_COLOR": "1",
        }

    def write_account(self, sub: str, *, enabled: bool = True) -> None:
        text = f"shopify_store: {sub}-shop.myshopify.com\ngorgias_account: {sub}.gorgias.com\n"
        if not enabled:
            text += "enabled: false\n"
        (self.accounts_dir / f"{sub}.yaml").write_text(text)

    def connect(self, sub: str, *, store_token: str | None = None) -> str:
        """Register the account in the sandbox and store its token; returns the token."""
        token = f"tok-{sub}-{generate_key()[:20]}"
        self.sandbox.control.add_gorgias_account(sub, token)
        with Store.open(self.state_url, self.keyring) as store:
            store.put_credential(Credential("gorgias", f"{sub}.gorgias.com", store_token or token))
        self.secrets |= {token, self.keyring.event_token(f"{sub}.gorgias.com")}
        if store_token:
            self.secrets.add(store_token)
        return token

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Run:
        result = CliRunner().invoke(main, list(args), env=env or self.env, catch_exceptions=False)
        output = result.output
        self._keep(output)
        return Run(result.exit_code, output)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "together_reconcile", *args]

    def process_env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("TOGETHER_")}
        return {**keep, **self.env}

    def run(self, *args: str, timeout: float = 60) -> Run:
        done = subprocess.run(
            self.command(*args),
            env=self.process_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        output = done.stdout + done.stderr
        self._keep(output)
        return Run(done.returncode, output)

    def _keep(self, output: str) -> None:
        self.outputs.append(output)
        ALL_OUTPUT.append(output)

    def ours(self, sub: str) -> list[dict[str, Any]]:
        return [
            i
            for i in self.sandbox.control.integrations(sub)
            if OWNERSHIP_MARKER in (i.get("description") or "")
        ]

    def writes(self) -> list[dict[str, Any]]:
        return [r for r in self.sandbox.control.requests() if r["method"] != "GET"]


@pytest.fixture
def world(sandbox: RunningSandbox, tmp_path: Path) -> Iterator[World]:
    made = World(sandbox, tmp_path)
    yield made
    ALL_SECRETS.update(made.secrets)
    for output in made.outputs:
        for secret in made.secrets:
            assert secret not in output, "a secret appeared in CLI output"


def three_accounts(world: World) -> None:
    for sub in ("acme", "beta", "gamma"):
        world.write_account(sub)
        world.connect(sub)


def actions(run: Run) -> dict[str, str]:
    return {a["gorgias_account"]: a["action"] for a in run.json()["accounts"]}


# -- the acceptance loop -----------------------------------------------------------------


def test_plan_apply_in_sync_then_disable_removes_only_ours(world: World) -> None:
    three_accounts(world)
    plan = world.run("plan", "--json")
    assert plan.exit_code == 0, plan.output
    assert actions(plan) == {
        "acme.gorgias.com": "create",
        "beta.gorgias.com": "create",
        "gamma.gorgias.com": "create",
    }
    applied = world.run("apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert "Apply: 3 changed" in applied.output
    for sub in ("acme", "beta", "gamma"):
        (integration,) = world.ours(sub)
        (widget,) = world.sandbox.control.widgets(sub)
        assert widget["integration_id"] == integration["id"]
    assert world.run("plan", "--detailed-exitcode").exit_code == 0

    foreign = world.sandbox.control.insert_integration(
        "beta", {"name": "Together", "type": "http", "description": "made by hand"}
    )
    world.write_account("beta", enabled=False)
    plan = world.run("plan", "--detailed-exitcode", "--json")
    assert plan.exit_code == 2
    beta = next(a for a in plan.json()["accounts"] if a["gorgias_account"] == "beta.gorgias.com")
    assert beta["action"] == "delete"
    assert "left alone" in beta["notes"][0]
    assert world.run("apply", "--yes").exit_code == 0
    assert world.ours("beta") == []
    assert world.sandbox.control.widgets("beta") == []
    assert [i["id"] for i in world.sandbox.control.integrations("beta")] == [foreign["id"]]
    assert len(world.ours("acme")) == len(world.ours("gamma")) == 1
    assert world.run("plan", "--detailed-exitcode").exit_code == 0


def test_rerun_of_a_finished_apply_makes_no_write_request(world: World) -> None:
    three_accounts(world)
    assert world.cli("apply", "--yes").exit_code == 0
    world.sandbox.control.clear_requests()
    again = world.cli("apply", "--yes")
    assert again.exit_code == 0
    assert world.writes() == []
    gets = world.sandbox.control.requests()
    assert len(gets) <= 2 * 3


def test_plan_out_file_holds_no_secret_and_applies_when_fresh(world: World) -> None:
    three_accounts(world)
    out = world.root / "plan.json"
    assert world.cli("plan", "--out", str(out)).exit_code == 0
    saved = out.read_text()
    for secret in world.secrets:
        assert secret not in saved
    assert set(json.loads(saved)["observed"]) == {
        "acme.gorgias.com",
        "beta.gorgias.com",
        "gamma.gorgias.com",
    }
    applied = world.cli("apply", str(out), "--yes")
    assert applied.exit_code == 0, applied.output
    assert all(len(world.ours(sub)) == 1 for sub in ("acme", "beta", "gamma"))


def test_stale_saved_plan_is_refused_and_nothing_written(world: World) -> None:
    three_accounts(world)
    assert world.cli("apply", "--yes").exit_code == 0
    (integration,) = world.ours("acme")
    world.sandbox.control.edit_integration("acme", integration["id"], {"name": "Renamed"})
    out = world.root / "plan.json"
    assert world.cli("plan", "--out", str(out)).exit_code == 0
    world.sandbox.control.edit_integration("acme", integration["id"], {"name": "Again"})
    world.sandbox.control.clear_requests()
    refused = world.cli("apply", str(out), "--yes")
    assert refused.exit_code == 3
    assert "plan is stale" in refused.output
    assert world.writes() == []


# -- drift and repairs --------------------------------------------------------------------


def test_ui_edit_drift_is_shown_and_restored_in_place(world: World) -> None:
    world.write_account("acme")
    world.connect("acme")
    assert world.cli("apply", "--yes").exit_code == 0
    (integration,) = world.ours("acme")
    world.sandbox.control.edit_integration(
        "acme",
        integration["id"],
        {
            "http": {
                "url": "https://elsewhere.example.com/hook",
                "triggers": {"ticket-message-created": True},
            }
        },
    )
    plan = world.cli("plan", "--json", "--detailed-exitcode")
    assert plan.exit_code == 2
    (account,) = plan.json()["accounts"]
    fields = {d["field"] for d in account["resources"][0]["diff"]}
    assert {"http.url", "http.triggers.ticket-message-created"} <= fields
    assert world.cli("apply", "--yes").exit_code == 0
    (restored,) = world.ours("acme")
    assert restored["id"] == integration["id"]
    assert restored["http"]["url"] == "https://together.example.com/gorgias/events"
    assert not restored["http"]["triggers"].get("ticket-message-created")
    assert world.cli("plan", "--detailed-exitcode").exit_code == 0


def test_deactivated_integration_is_reactivated_and_deleted_widget_recreated(
    world: World,
) -> None:
    world.write_account("acme")
    world.connect("acme")
    assert world.cli("apply", "--yes").exit_code == 0
    (integration,) = world.ours("acme")
    (widget,) = world.sandbox.control.widgets("acme")
    world.sandbox.control.edit_integration(
        "acme", integration["id"], {"deactivated_datetime": "2026-03-01T00:00:00"}
    )
    world.sandbox.control.remove_widget("acme", widget["id"])
    plan = world.cli("plan", "--json")
    (account,) = plan.json()["accounts"]
    assert [(r["kind"], r["action"]) for r in account["resources"]] == [
        ("integration", "reactivate"),
        ("widget", "create"),
    ]
    assert world.cli("apply", "--yes").exit_code == 0
    (again,) = world.ours("acme")
    assert again["id"] == integration["id"]
    assert again["deactivated_datetime"] is None
    (new_widget,) = world.sandbox.control.widgets("acme")
    assert new_widget["integration_id"] == integration["id"]


# -- blocked accounts and safety rules ----------------------------------------------------


def test_gorgias_401_blocks_that_account_only(world: World) -> None:
    three_accounts(world)
    world.write_account("delta")
    world.connect("delta", store_token="tok-delta-revoked-by-the-merchant")
    world.write_account("omega")  # never connected
    plan = world.cli("plan", "--json", "--detailed-exitcode")
    assert plan.exit_code == 2
    by_domain = {a["gorgias_account"]: a for a in plan.json()["accounts"]}
    assert by_domain["delta.gorgias.com"]["reason"] == "credentials_rejected"
    assert by_domain["omega.gorgias.com"]["reason"] == "not_connected"
    applied = world.cli("apply", "--yes")
    assert applied.exit_code == 1
    assert "delta.gorgias.com" in applied.output.split("Failed:")[1]
    assert all(len(world.ours(sub)) == 1 for sub in ("acme", "beta", "gamma"))
    # a blocked account never changes plan's exit status
    assert world.cli("plan", "--detailed-exitcode").exit_code == 0


def test_not_connected_alone_does_not_fail_apply(world: World) -> None:
    world.write_account("acme")
    world.connect("acme")
    world.write_account("omega")
    applied = world.cli("apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert "1 not connected" in applied.output


def test_over_the_delete_cap_changes_nothing_and_exits_3(world: World) -> None:
    for sub in ("a1", "a2", "a3", "a4"):
        world.write_account(sub)
        world.connect(sub)
    assert world.cli("apply", "--yes").exit_code == 0
    for sub in ("a1", "a2", "a3", "a4"):
        (world.accounts_dir / f"{sub}.yaml").unlink()  # removed files: managed → delete
    world.sandbox.control.clear_requests()
    refused = world.cli("apply", "--yes")
    assert refused.exit_code == 3
    assert refused.output.endswith(
        "the plan deletes 4 (accounts losing their integration and widget, plus extra "
        "duplicates), over the cap of 3; nothing was changed. Check the plan, then raise the cap "
        "with --max-deletes 4 (or TOGETHER_MAX_DELETES)\n"
    )
    assert world.writes() == []
    done = world.cli("apply", "--yes", "--max-deletes", "4")
    assert done.exit_code == 0, done.output
    assert all(world.ours(sub) == [] for sub in ("a1", "a2", "a3", "a4"))
    with Store.open(world.state_url, world.keyring) as store:
        assert store.list_managed() == {}


def test_extra_duplicate_is_removed_keeping_the_oldest(world: World) -> None:
    world.write_account("acme")
    world.connect("acme")
    assert world.cli("apply", "--yes").exit_code == 0
    (kept,) = world.ours("acme")
    copy = {k: v for k, v in kept.items() if k not in ("id", "uri")}
    world.sandbox.control.insert_integration("acme", copy)
    plan = world.cli("plan", "--json")
    (account,) = plan.json()["accounts"]
    assert ("integration", "delete") in [(r["kind"], r["action"]) for r in account["resources"]]
    assert world.cli("apply", "--yes").exit_code == 0
    assert [i["id"] for i in world.ours("acme")] == [kept["id"]]


def test_missing_settings_exit_1_with_a_clear_message_and_write_nothing(world: World) -> None:
    world.write_account("acme")
    state_file = world.root / "state.db"
    for missing, message in (
        (
            "TOGETHER_PUBLIC_URL",
            "Error: TOGETHER_PUBLIC_URL is not set: set it to the public base URL of the event "
            "handler (e.g. https://together.example.com); the integration calls "
            "{TOGETHER_PUBLIC_URL}/gorgias/events\n",
        ),
        (
            "TOGETHER_SECRET_KEYS",
            'Error: TOGETHER_SECRET_KEYS is not set: run "together-reconcile keygen" and export '
            "TOGETHER_SECRET_KEYS=<key>\n",
        ),
    ):
        env = {k: v for k, v in world.env.items() if k != missing}
        for command in (("plan",), ("apply", "--yes")):
            run = world.cli(*command, env={**env, missing: ""})
            assert run.exit_code == 1
            assert run.output == message
    assert not state_file.exists()
    assert world.sandbox.control.requests() == []


def test_apply_without_yes_refuses_when_not_a_terminal(world: World) -> None:
    world.write_account("acme")
    world.connect("acme")
    run = world.run("apply")
    assert run.exit_code == 1
    assert "--yes" in run.output
    assert world.writes() == []


# -- faults -------------------------------------------------------------------------------


def test_429_storms_still_converge(world: World) -> None:
    three_accounts(world)
    world.sandbox.control.set_rate_limit(2, 1.0)
    world.sandbox.control.add_fault(kind="status", status=429, count=None, rate=0.3)
    assert world.cli("apply", "--yes", "--concurrency", "3").exit_code == 0
    assert any(r["status"] == 429 for r in world.sandbox.control.requests())
    world.sandbox.control.clear_faults()
    assert world.cli("plan", "--detailed-exitcode").exit_code == 0


def test_faults_and_lost_writes_converge_without_duplicates(world: World) -> None:
    subs = [f"f{n}" for n in range(6)]
    for sub in subs:
        world.write_account(sub)
        world.connect(sub)
    world.sandbox.control.add_fault(kind="write_then_fail", method="POST", count=None, rate=0.25)
    world.sandbox.control.add_fault(kind="status", status=503, count=None, rate=0.25)
    world.sandbox.control.add_fault(kind="drop", count=None, rate=0.1)
    for _ in range(6):
        world.cli("apply", "--yes")
        for sub in subs:
            assert len(world.ours(sub)) <= 1, "two integrations for one account"
    lost_creates = [
        r
        for r in world.sandbox.control.requests()
        if r["method"] == "POST" and r["status"] in (0, 502)
    ]
    assert lost_creates, "the faults never hit a create: the test proves nothing"
    world.sandbox.control.clear_faults()
    assert world.cli("apply", "--yes").exit_code == 0
    assert world.cli("plan", "--detailed-exitcode").exit_code == 0
    for sub in subs:
        (integration,) = world.ours(sub)
        (widget,) = world.sandbox.control.widgets(sub)
        assert widget["integration_id"] == integration["id"]


def test_sigkill_between_integration_and_widget_then_adopt(world: World) -> None:
    world.write_account("acme")
    world.connect("acme")
    # The held widget POST must never be answered while this test runs: a sandbox thread that
    # woke up after the kill would create a second widget behind the adopting apply's back (the
    # sandbox is shared by the session; its request threads are daemons, so none outlives it).
    world.sandbox.control.add_fault(
        kind="slow", method="POST", path_contains="/widgets", delay_s=3600, count=1
    )
    (held,) = world.sandbox.state.faults
    process = subprocess.Popen(
        world.command("apply", "--yes"),
        env=world.process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and held.remaining != 0 and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "apply ended before it could be killed"
    assert held.remaining == 0, "the widget POST never reached the sandbox"
    process.send_signal(signal.SIGKILL)
    output, _ = process.communicate(timeout=10)
    world._keep(output.decode())
    assert len(world.ours("acme")) == 1, "killed before the integration was created"
    assert world.sandbox.control.widgets("acme") == []
    world.sandbox.control.clear_faults()
    again = world.run("apply", "--yes")
    assert again.exit_code == 0, again.output
    (integration,) = world.ours("acme")
    (widget,) = world.sandbox.control.widgets("acme")
    assert widget["integration_id"] == integration["id"]


def test_two_applies_at_once_never_interleave(world: World) -> None:
    world.write_account("acme")
    world.connect("acme")
    world.sandbox.control.set_latency(gorgias_ms=800)
    env = world.process_env()
    first = subprocess.Popen(
        world.command("apply", "--yes", "--lock-timeout", "0.5"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    # apply takes the lock before its first Gorgias request: once the sandbox has answered one,
    # the first holds the lock with at least two slow writes still to make. A fixed sleep here
    # raced the first's interpreter start-up on a loaded machine.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not world.sandbox.control.requests():
        assert first.poll() is None, "the first apply ended before making any request"
        time.sleep(0.05)
    assert world.sandbox.control.requests(), "the first apply never reached Gorgias"
    second = world.cli("apply", "--yes", "--lock-timeout", "0.5")  # in-process: starts at once
    output, _ = first.communicate(timeout=60)
    world._keep(output.decode())
    assert first.returncode == 0, output.decode()
    assert second.exit_code == 3
    assert second.output.startswith(
        f"Error: another apply holds the lock on the state database at {world.state_url} "
    )
    assert "waited 0.5 s. Try again when it has finished" in second.output
    assert len(world.ours("acme")) == 1


def test_zz_no_secret_in_any_captured_output() -> None:
    """All CLI output of this module, against every secret any test used."""
    if not ALL_OUTPUT:
        pytest.skip("run with the other tests of this module")
    assert ALL_SECRETS
    joined = "\n".join(ALL_OUTPUT)
    leaked = [s for s in ALL_SECRETS if s in joined]
    assert leaked == []


# -- command-line options -----------------------------------------------------------------


def test_account_filter_markdown_and_step_summary(world: World) -> None:
    three_accounts(world)
    summary = world.root / "summary.md"
    env = {**world.env, "GITHUB_STEP_SUMMARY": str(summary)}
    run = world.cli("plan", "--account", "BETA.gorgias.com", "--format", "markdown", env=env)
    assert run.exit_code == 0, run.output
    assert "| `beta.gorgias.com` | create |" in run.output
    assert "acme.gorgias.com" not in run.output
    assert "| `beta.gorgias.com` | create |" in summary.read_text()
    only = world.cli("plan", "--json", "--account", "acme.gorgias.com")
    assert list(actions(only)) == ["acme.gorgias.com"]


def test_unknown_account_filter_is_an_error(world: World) -> None:
    world.write_account("acme")
    run = world.cli("plan", "--account", "nobody.gorgias.com")
    assert run.exit_code == 1
    assert "unknown account(s): nobody.gorgias.com" in run.output


def test_malformed_secret_key_names_its_position_not_its_value(world: World) -> None:
    world.write_account("acme")
    bad = "not-a-valid-key-value"
    run = world.cli("plan", env={**world.env, "TOGETHER_SECRET_KEYS": f"{generate_key()},{bad}"})
    assert run.exit_code == 1
    assert run.output == (
        "Error: entry 2 of TOGETHER_SECRET_KEYS is not a valid key (expected the url-safe "
        'base64 of 32 bytes, as printed by "together-reconcile keygen")\n'
    )
    assert not (world.root / "state.db").exists()


def test_invalid_account_files_stop_plan_with_the_problems(world: World) -> None:
    (world.accounts_dir / "acme.yaml").write_text("shopify_store: nope\n")
    run = world.cli("plan")
    assert run.exit_code == 1
    assert "acme.yaml:1:" in run.output
    assert not (world.root / "state.db").exists()


def test_unreachable_state_database_is_a_clear_error(world: World) -> None:
    world.write_account("acme")
    env = {**world.env, "TOGETHER_STATE_URL": "postgresql://nobody:hunter2@127.0.0.1:1/none"}
    for command in (("plan",), ("apply", "--yes")):
        run = world.cli(*command, env=env)
        assert run.exit_code == 1
        assert run.output == (
            "Error: cannot reach the state database at postgresql://nobody:***@127.0.0.1:1/none: "
            "connection refused\n"
        )


def test_read_only_state_database_plans_but_apply_refuses_before_any_write(world: World) -> None:
    world.write_account("acme")
    world.connect("acme")
    path = world.root / "state.db"
    env = {**world.env, "TOGETHER_STATE_URL": f"sqlite:///file:{path}?mode=ro&uri=true"}
    plan = world.cli("plan", env=env)
    assert plan.exit_code == 0, plan.output
    assert "Plan: 1 to create, 0 to update, 0 to delete" in plan.output
    applied = world.cli("apply", "--yes", env=env)
    assert applied.exit_code == 1
    assert applied.output == (
        f"Error: the state database at sqlite:///file:{path} is read-only: use a writable file "
        "or database for TOGETHER_STATE_URL\n"
    )
    assert world.writes() == []
    assert world.ours("acme") == []


def test_half_applied_account_whose_file_is_removed_is_still_cleaned_up(world: World) -> None:
    world.write_account("acme")
    world.connect("acme")
    world.sandbox.control.add_fault(
        kind="status", status=400, method="POST", path_contains="/widgets"
    )
    failed = world.cli("apply", "--yes")
    assert failed.exit_code == 1
    assert len(world.ours("acme")) == 1  # the integration was made, the widget was refused
    (world.accounts_dir / "acme.yaml").unlink()
    plan = world.cli("plan", "--json")
    assert actions(plan) == {"acme.gorgias.com": "delete"}
    assert world.cli("apply", "--yes").exit_code == 0
    assert world.ours("acme") == []


# -- the update cap (SPEC "Updates") -----------------------------------------------------------

UPDATE_CAP_REFUSAL = (
    "Error: the plan updates 4 accounts, over the cap of 3; 4 of them change integration "
    "http.url; nothing was changed. Check the plan (a wrong TOGETHER_PUBLIC_URL changes every "
    "integration's http.url), then allow it with --max-updates 4 (or TOGETHER_MAX_UPDATES; in "
    "the apply workflow, its max_updates input)\n"
)
UPDATE_CAP_WARNING = (
    "Warning: apply would refuse this plan: it updates 4 accounts, over the cap of 3 (4 change "
    "integration http.url); if that is intended, apply with --max-updates 4"
)


def four_applied_accounts(world: World) -> list[str]:
    subs = ["a1", "a2", "a3", "a4"]
    for sub in subs:
        world.write_account(sub)
        world.connect(sub)
    assert world.cli("apply", "--yes").exit_code == 0
    return subs


def test_a_changed_public_url_over_the_update_cap_changes_nothing_and_exits_3(
    world: World,
) -> None:
    subs = four_applied_accounts(world)
    before = {sub: world.ours(sub) for sub in subs}
    wrong = {**world.env, "TOGETHER_PUBLIC_URL": "https://wrong.example.com"}

    plan = world.cli("plan", env=wrong)
    assert plan.exit_code == 0
    assert plan.output.endswith("(4 accounts).\n" + UPDATE_CAP_WARNING + "\n")
    markdown = world.cli("plan", "--format", "markdown", env=wrong)
    assert f"> **Warning:** {UPDATE_CAP_WARNING.removeprefix('Warning: ')}\n" in markdown.output
    as_json = CliRunner().invoke(main, ["plan", "--json"], env=wrong)
    assert json.loads(as_json.stdout)["summary"]["update"] == 4  # stdout: the document only
    assert as_json.stderr == UPDATE_CAP_WARNING + "\n"

    world.sandbox.control.clear_requests()
    refused = world.cli("apply", "--yes", env=wrong)
    assert refused.exit_code == 3
    assert refused.output == UPDATE_CAP_REFUSAL
    assert world.writes() == []
    assert {sub: world.ours(sub) for sub in subs} == before

    allowed = world.cli("apply", "--yes", "--max-updates", "4", env=wrong)
    assert allowed.exit_code == 0, allowed.output
    assert "Apply: 4 changed" in allowed.output
    for sub in subs:
        (integration,) = world.ours(sub)
        assert integration["id"] == before[sub][0]["id"]  # updated in place
        assert integration["http"]["url"] == "https://wrong.example.com/gorgias/events"
    by_env = world.cli("plan", env={**wrong, "TOGETHER_MAX_UPDATES": "4"})
    assert "Warning" not in by_env.output


def test_updates_at_the_default_cap_pass_and_an_explicit_cap_refuses_above_it(world: World) -> None:
    subs = four_applied_accounts(world)
    wrong = {**world.env, "TOGETHER_PUBLIC_URL": "https://wrong.example.com"}
    for sub in subs[:3]:  # 3 updates: at the cap, not over it
        (world.accounts_dir / f"{sub}.yaml").write_text(
            (world.accounts_dir / f"{sub}.yaml").read_text() + "widget:\n  order: 7\n"
        )
    plan = world.cli("plan")
    assert "Warning" not in plan.output
    assert world.cli("apply", "--yes").exit_code == 0
    assert world.cli("apply", "--yes", "--max-updates", "3", env=wrong).exit_code == 3


def test_key_rotation_steps_from_the_readme_pass_the_update_cap(world: World) -> None:
    subs = four_applied_accounts(world)
    new_key = generate_key()
    rotating = {**world.env, "TOGETHER_SECRET_KEYS": f"{new_key},{world.keys}"}
    new_keyring = Keyring.from_env(new_key)
    world.secrets |= {new_key, *(new_keyring.event_token(f"{s}.gorgias.com") for s in subs)}

    # 2. Apply, as the apply workflow does: plan --out, then apply exactly that plan.
    out = world.root / "plan.json"
    plan = world.cli("plan", "--format", "markdown", "--out", str(out), env=rotating)
    assert plan.exit_code == 0
    assert "Warning" not in plan.output
    assert "http.headers.X-Together-Token" in plan.output
    applied = world.cli("apply", str(out), "--yes", "--max-deletes", "3", env=rotating)
    assert applied.exit_code == 0, applied.output
    assert "Apply: 4 changed" in applied.output
    # 3. Re-encrypt the stored tokens; 4. drop the old keys: nothing left to change.
    assert world.cli("credentials", "rotate", env=rotating).exit_code == 0
    done = {**world.env, "TOGETHER_SECRET_KEYS": new_key}
    assert world.cli("plan", "--detailed-exitcode", env=done).exit_code == 0
