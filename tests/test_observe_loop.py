"""`make_plan` observes on one asyncio event loop against the real sandbox; worker threads only
for what may block (a proxy, a client or kind that cannot list on the loop)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from together_reconcile.reconcile import observe as observe_module
from together_reconcile.reconcile.apply import Applier
from together_reconcile.reconcile.observe import Session, make_plan, open_session
from together_reconcile.reconcile.render import render_json
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import generate_key
from together_reconcile.store import Credential

ACCOUNTS = [f"shop{n:02d}" for n in range(12)]


@pytest.fixture
def session(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_proxy: None
) -> Iterator[Session]:
    """Twelve accounts applied once: every one in sync."""
    folder = tmp_path / "accounts"
    folder.mkdir()
    env = {
        "TOGETHER_SECRET_KEYS": generate_key(),
        "TOGETHER_PUBLIC_URL": "https://together.example.com",
        "TOGETHER_GORGIAS_URL": sandbox.gorgias_url_template,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    state_url = f"sqlite:///{tmp_path}/state.db"
    credentials = []
    for sub in ACCOUNTS:
        sandbox.control.add_gorgias_account(sub, f"token-{sub}")
        credentials.append(Credential("gorgias", f"{sub}.gorgias.com", f"token-{sub}"))
        (folder / f"{sub}.yaml").write_text(
            f"shopify_store: {sub}.myshopify.com\ngorgias_account: {sub}.gorgias.com\n"
        )
    first = open_session(folder, state_url)
    with first.store:
        first.store.import_credentials(credentials)
    opened = open_session(folder, state_url)
    plan = make_plan(opened.reconciler, opened.reconciler.scope())
    report = Applier(opened.reconciler, opened.store, commit=None).apply(plan, concurrency=4)
    assert not report.failures
    yield opened
    opened.store.close()


def never_in_a_thread(*_args: Any) -> Any:
    raise AssertionError("observed in a worker thread")


def test_a_plan_lists_every_account_on_the_event_loop(
    session: Session, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(observe_module, "observe", never_in_a_thread)  # the threads' way
    sandbox.control.clear_requests()
    plan = make_plan(session.reconciler, session.reconciler.scope(), concurrency=5)
    assert plan.summary["in_sync"] == len(ACCOUNTS)
    assert len(sandbox.control.requests()) == 2 * len(ACCOUNTS)


PLAN_PROBE = """
import sys
from together_reconcile.cli import run
try:
    run()
except SystemExit as exit_:
    sys.stderr.write(f"\\nEXIT {exit_.code} HTTPX {'httpx' in sys.modules}\\n")
"""


def test_the_plan_command_never_loads_httpx_when_no_token_needs_a_refresh(
    session: Session, tmp_path: Path
) -> None:
    """httpx is for token requests (and proxies) only: a plan whose stored tokens need no
    refresh runs in a process that never imports it."""
    folders = ["--accounts-dir", str(tmp_path / "accounts")]
    store = ["--state-url", f"sqlite:///{tmp_path}/state.db"]
    result = subprocess.run(
        [sys.executable, "-c", PLAN_PROBE, *folders, *store, "plan", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stderr.endswith("\nEXIT 0 HTTPX False\n"), result.stderr
    assert json.loads(result.stdout)["summary"]["in_sync"] == len(ACCOUNTS)


def test_behind_a_proxy_the_accounts_are_observed_in_threads_through_httpx(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only httpx knows proxies: with one set, each account is observed in a worker thread
    (here NO_PROXY lets httpx reach the loopback sandbox directly)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    observed_in: list[str] = []
    real_observe = observe_module.observe

    def spy(client: Any, kinds: Any) -> Any:
        observed_in.append(threading.current_thread().name)
        return real_observe(client, kinds)

    monkeypatch.setattr(observe_module, "observe", spy)
    reconciler = observe_module.Reconciler(
        session.reconciler.desired,
        session.reconciler.managed,
        session.reconciler.auth,
        observe_module.SharedTransportClientFactory(),  # a new one: reads the proxy
    )
    plan = make_plan(reconciler, reconciler.scope(), concurrency=3)
    assert plan.summary["in_sync"] == len(ACCOUNTS)
    assert len(observed_in) == len(ACCOUNTS)
    assert all(name.startswith("observe") for name in observed_in)


# -- an in-sync account in one round trip (the last apply's integration id as a guess) ---------


def reopened(tmp_path: Path) -> Session:
    """The session a later run opens: the store now holds the ids the apply recorded."""
    return open_session(tmp_path / "accounts", f"sqlite:///{tmp_path}/state.db")


def test_the_widgets_of_the_recorded_integration_are_listed_while_integrations_are(
    session: Session, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """The integrations list of shop00 is held 0.5 s: its widgets list, sent at the same time
    for the integration the last apply recorded, is answered (and logged) first."""
    later = reopened(tmp_path)
    try:
        assert set(later.reconciler.last_applied) == {f"{sub}.gorgias.com" for sub in ACCOUNTS}
        sandbox.control.clear_requests()
        sandbox.control.add_fault(
            target="gorgias",
            kind="slow",
            method="GET",
            path_contains="/api/integrations",
            account="shop00",
            delay_s=0.5,
        )
        plan = make_plan(later.reconciler, ["shop00.gorgias.com"])
    finally:
        later.store.close()
    assert plan.summary["in_sync"] == 1
    logged = [entry["path"] for entry in sandbox.control.requests()]
    assert logged == ["/gorgias/shop00/api/widgets", "/gorgias/shop00/api/integrations"]


def test_a_wrong_guess_is_not_used_and_the_plan_is_the_same(
    session: Session, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """An integration id that is no longer ours (recreated by hand, say): its early widget
    list goes out (the integrations lists are held 0.2 s, so it is answered first) but is
    not used; the widgets of the integration actually observed are listed after."""
    later = reopened(tmp_path)
    try:
        reconciler = later.reconciler
        domains = reconciler.scope()
        guessed_wrong = replace(
            reconciler, last_applied={domain: {"integration": 987654} for domain in domains}
        )
        sandbox.control.clear_requests()
        sandbox.control.add_fault(
            target="gorgias",
            kind="slow",
            method="GET",
            path_contains="/api/integrations",
            count=None,
            delay_s=0.2,
        )
        wrong = make_plan(guessed_wrong, domains)
        sandbox.control.clear_faults()
        requests = sandbox.control.requests()
        right = make_plan(reconciler, domains)
    finally:
        later.store.close()
    assert render_json(wrong) == render_json(right)
    assert wrong.summary["in_sync"] == len(ACCOUNTS)
    for sub in ACCOUNTS:
        asked = [
            (entry["path"].rsplit("/", 1)[-1], "987654" in entry["query"])
            for entry in requests
            if entry["account"] == sub
        ]
        assert asked == [("widgets", True), ("integrations", False), ("widgets", False)], sub


@pytest.mark.parametrize(
    ("recorded", "shop03_asked"),
    [
        (False, [("integrations", 401)]),
        (True, [("widgets", 401), ("integrations", 401)]),  # the early list is refused first
    ],
    ids=["no-guess", "early-widgets-list"],
)
def test_a_401_blocks_only_that_account_on_the_loop(
    session: Session,
    sandbox: RunningSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recorded: bool,
    shop03_asked: list[tuple[str, int]],
) -> None:
    """shop03's token is refused (its integrations list held 0.3 s). With its integration id
    recorded, its early widgets list is refused first: the account is blocked all the same,
    nothing is asked again, and every other account is in sync."""
    monkeypatch.setattr(observe_module, "observe", never_in_a_thread)
    later = reopened(tmp_path)
    try:
        domains = later.reconciler.scope()
        credentials = dict(later.store.get_credentials("gorgias", domains))
        credentials["shop03.gorgias.com"] = Credential("gorgias", "shop03.gorgias.com", "revoked")
        reconciler = replace(
            later.reconciler,
            auth=observe_module.GorgiasAuthProvider(credentials),
            last_applied=later.reconciler.last_applied if recorded else {},
        )
        sandbox.control.clear_requests()
        sandbox.control.add_fault(
            target="gorgias",
            kind="slow",
            method="GET",
            path_contains="/api/integrations",
            account="shop03",
            delay_s=0.3,
        )
        plan = make_plan(reconciler, domains)
    finally:
        later.store.close()
    blocked = [(a.gorgias_account, a.reason) for a in plan.accounts if a.action == "blocked"]
    assert blocked == [("shop03.gorgias.com", "credentials_rejected")]
    assert plan.summary["in_sync"] == len(ACCOUNTS) - 1
    asked = [
        (entry["path"].rsplit("/", 1)[-1], entry["status"])
        for entry in sandbox.control.requests()
        if entry["account"] == "shop03"
    ]
    assert asked == shop03_asked
