"""`together-reconcile demo` as a user runs it: a real process, from the repository root.

Each run gets its own process group, so that any process it started (and left behind) is found
by group id even after the demo itself has exited.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from together_reconcile.demo import order_table
from together_reconcile.secrets import generate_key

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT_S = 30.0

# The SPEC's "looks like a secret" (32+ characters of base64url or hex: the keys and the
# event tokens), without `/`, which paths are full of.
SECRET_LIKE = re.compile(r"[A-Za-z0-9_=-]{32,}")


@dataclass
class DemoRun:
    returncode: int
    output: str
    seconds: float
    pgid: int

    def url(self, label: str) -> tuple[str, int]:
        match = re.search(
            rf"^\s*{re.escape(label)}\s+http://(127\.0\.0\.1):(\d+)", self.output, re.M
        )
        assert match, f"no {label!r} URL in the output:\n{self.output}"
        return match.group(1), int(match.group(2))

    @property
    def temp_dir(self) -> Path:
        match = re.search(r"^\s*account files\s+(\S+)/accounts\b", self.output, re.M)
        assert match, self.output
        return Path(match.group(1))


def demo_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOGETHER_", "GITHUB_"))
    }
    env.update(extra)
    return env


def start_demo(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "together_reconcile", "demo", *args],
        cwd=cwd,
        env=env or demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: see `processes_in_group`
    )


def finish(process: subprocess.Popen[str], started: float, output: str = "") -> DemoRun:
    try:
        rest, _ = process.communicate(timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"the demo did not finish in {TIME_LIMIT_S} s")
    return DemoRun(process.returncode, output + rest, time.monotonic() - started, process.pid)


def run_demo(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> DemoRun:
    started = time.monotonic()
    return finish(start_demo(*args, cwd=cwd, env=env), started)


def processes_in_group(pgid: int) -> list[str]:
    """Every live process of the process group, as "pid command"."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{stat.parent.name} {text[: text.rindex(')') + 1]}")
    return found


def port_is_closed(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) != 0


def assert_nothing_left_behind(run: DemoRun) -> None:
    assert processes_in_group(run.pgid) == []
    for label in ("sandbox Gorgias + Shopify", "event handler"):
        host, port = run.url(label)
        assert port_is_closed(host, port), f"{label} still listens on {port}"
    assert not run.temp_dir.exists()


def lines_after(output: str, heading: str) -> str:
    """The output from a step's heading to the next numbered heading."""
    start = output.index(heading)
    following = re.search(r"^\d+\. ", output[start + len(heading) :], re.M)
    end = start + len(heading) + following.start() if following else len(output)
    return output[start:end]


# ------------------------------------------------------------------------------ the loop


@pytest.fixture(scope="module")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Settings a user may have in their shell: the demo must not use or touch any of them."""
    home = tmp_path_factory.mktemp("user")
    return demo_env(
        TOGETHER_SECRET_KEYS=generate_key(),
        TOGETHER_STATE_URL=f"sqlite:///{home}/user.db",
        TOGETHER_ACCOUNTS_DIR=str(home / "nowhere"),
        TOGETHER_PUBLIC_URL="https://together.example.com",
        TOGETHER_FORMAT="markdown",
        TOGETHER_YES="0",
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(home / "summary.md"),
        GITHUB_SHA="0123456789abcdef0123456789abcdef01234567",
    )


@pytest.fixture(scope="module")
def demo(user_env: dict[str, str]) -> DemoRun:
    return run_demo(env=user_env)


def test_the_demo_exits_0_in_time(demo: DemoRun) -> None:
    assert demo.returncode == 0, demo.output
    assert demo.seconds < TIME_LIMIT_S


def test_it_validates_then_connects_the_merchants(demo: DemoRun) -> None:
    step = lines_after(demo.output, "1. Validate the account files")
    assert "$ together-reconcile validate\n3 files, 0 problems" in step
    step = lines_after(demo.output, "2. Connect the merchants")
    for account in ("acme", "globex", "initech"):
        assert (
            f"   {account}.gorgias.com: install 302 → Gorgias authorize 302 → callback 200: "
            "Gorgias account connected\n"
        ) in step
    assert "$ together-reconcile credentials import - < (tokens as JSON lines)" in step
    assert "imported 3 credentials" in step
    # The OAuth tokens expire (and get refreshed); the Shopify tokens do not.
    for domain in ("acme.gorgias.com", "globex.gorgias.com", "initech.gorgias.com"):
        assert re.search(rf"^gorgias\s+{re.escape(domain)}\s+\d{{4}}-\S+Z\s+ok$", step, re.M)
    for domain in ("acme.myshopify.com", "globex-shop.myshopify.com", "initech.myshopify.com"):
        assert re.search(rf"^shopify\s+{re.escape(domain)}\s+-\s+ok$", step, re.M), step


def test_the_first_plan_creates_three_accounts(demo: DemoRun) -> None:
    step = lines_after(demo.output, "3. Plan")
    assert "$ together-reconcile plan --out " in step
    for account in ("acme", "globex", "initech"):
        assert f"+ {account}.gorgias.com: create" in step
    assert "Plan: 3 to create, 0 to update, 0 to delete, 0 in sync, 0 blocked (3 accounts)." in step
    assert re.search(r'http\.headers\.X-Together-Token = "sha256:[0-9a-f]{8}"', step)


def test_apply_creates_them_and_the_next_plan_is_in_sync(demo: DemoRun) -> None:
    step = lines_after(demo.output, "4. Apply")
    assert re.search(r"^\$ together-reconcile apply \S+/plan\.json --yes$", step, re.M)
    assert "Apply: 3 changed, 0 in sync, 0 failed, 0 not connected (3 accounts)." in step
    step = lines_after(demo.output, "5. Plan again")
    assert "$ together-reconcile plan --detailed-exitcode" in step
    for account in ("acme", "globex", "initech"):
        assert f"= {account}.gorgias.com: in_sync" in step
    assert "Plan: 0 to create, 0 to update, 0 to delete, 3 in sync" in step
    assert "exit status" not in step  # 0: no changes


def test_the_ticket_gets_the_customers_final_sale_orders(demo: DemoRun) -> None:
    step = lines_after(demo.output, "7. The handler answers")
    assert "HTTP 200: 2 final-sale order(s) from acme.myshopify.com in the last 60 days" in step
    table = lines_after(demo.output, "8. What the agent sees in the ticket sidebar")
    rows = [line.split() for line in table.splitlines() if line.strip().startswith("#")]
    # Seeded for jane at acme: #1001 and #1002 are final sale and recent; #1003 is not final
    # sale, #1004 is older than 60 days, #1005 belongs to another customer.
    assert [row[0] for row in rows] == ["#1001", "#1002"]
    assert rows[0][2:6] == ["120.00", "USD", "PAID", "FULFILLED"]
    assert rows[0][6:] == ["2", "×", "Demo", "item", "1"]
    assert rows[1][2:6] == ["45.50", "USD", "PAID", "FULFILLED"]
    assert re.match(r"\d{4}-\d\d-\d\d$", rows[0][1])
    assert "ORDER  CREATED     TOTAL       PAYMENT  FULFILMENT  ITEMS" in table


def test_a_disabled_account_is_removed_and_foreign_objects_stay(demo: DemoRun) -> None:
    step = lines_after(demo.output, "9. An account is disabled: initech")
    assert "- initech.gorgias.com: delete" in step
    assert "Plan: 0 to create, 0 to update, 1 to delete, 2 in sync" in step
    step = lines_after(demo.output, "10. Apply removes it")
    assert "initech.gorgias.com: delete done" in step
    assert "Apply: 1 changed, 2 in sync, 0 failed" in step
    assert 'Integrations left in initech.gorgias.com: "Initech survey" (not ours)' in step


def test_the_demo_leaves_nothing_behind(demo: DemoRun) -> None:
    assert_nothing_left_behind(demo)
    assert demo.output.rstrip().endswith("Next: README.md, section 'Adding an account'.")


def test_no_secret_in_the_output(demo: DemoRun, user_env: dict[str, str]) -> None:
    assert "TOGETHER_SECRET_KEYS" not in demo.output
    assert user_env["TOGETHER_SECRET_KEYS"] not in demo.output
    assert "sandbox-gorgias-" not in demo.output  # the seeded sandbox tokens
    assert "sandbox-shopify-" not in demo.output
    assert "sandbox-client-secret" not in demo.output  # the sandbox's OAuth app
    assert "code=" not in demo.output and "state=" not in demo.output  # OAuth redirects
    assert "jane@example.com" not in demo.output  # a customer's email
    assert SECRET_LIKE.findall(demo.output) == []


def test_the_users_settings_are_neither_used_nor_touched(
    demo: DemoRun, user_env: dict[str, str]
) -> None:
    home = Path(user_env["GITHUB_STEP_SUMMARY"]).parent
    assert sorted(path.name for path in home.iterdir()) == []  # no user.db, no summary.md
    assert "::error" not in demo.output
    assert "together.example.com" not in demo.output
    assert "0123456789abcdef" not in demo.output  # the commit in the descriptions
    assert "### " not in demo.output  # text, not the Markdown of TOGETHER_FORMAT


# ------------------------------------------------------------------------------ stopping


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_it_stops_everything(signum: signal.Signals) -> None:
    started = time.monotonic()
    process = start_demo("--pause", "20")
    assert process.stdout is not None
    seen = ""
    while "TOGETHER_SHOPIFY_URL=" not in seen:  # the end of step 0: both servers run
        line = process.stdout.readline()
        assert line, f"the demo ended early:\n{seen}"
        seen += line
    process.send_signal(signum)
    run = finish(process, started, seen)
    assert run.returncode == 130, run.output
    assert run.output.rstrip().endswith("demo interrupted: everything is stopped and removed")
    assert run.seconds < 15  # the 20 s pause was cut short
    assert_nothing_left_behind(run)


def test_a_failing_step_stops_the_demo_with_the_reason(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    for name, store in (("acme", "acme"), ("globex", "globex-shop"), ("initech", "initech")):
        (accounts / f"{name}.yaml").write_text(
            f"shopify_store: {store}.myshopify.com\ngorgias_account: {name}.gorgias.com\n"
        )
    (accounts / "initech.yaml").write_text(
        "shopify_store: acme.myshopify.com\ngorgias_account: initech.gorgias.com\n"
    )
    run = run_demo(cwd=tmp_path)
    assert run.returncode == 1
    assert re.search(r"/initech\.yaml:1:16: .*acme\.myshopify\.com", run.output), run.output
    assert run.output.rstrip().endswith(
        "Error: the demo stopped: `together-reconcile validate` exited 1, expected 0"
    )
    assert_nothing_left_behind(run)


# ------------------------------------------------------------------------------ the table


def test_order_table_aligns_columns_and_says_when_empty() -> None:
    orders = [
        {
            "name": "#1",
            "created_at": "2026-01-02T03:04:05Z",
            "total": "9.50",
            "currency": "EUR",
            "financial_status": None,
            "fulfillment_status": "UNFULFILLED",
            "items": "1 × Hat",
        }
    ]
    assert order_table(orders) == [
        "ORDER  CREATED     TOTAL     PAYMENT  FULFILMENT   ITEMS",
        "#1     2026-01-02  9.50 EUR  -        UNFULFILLED  1 × Hat",
    ]
    assert order_table([]) == ["(no final-sale orders)"]
