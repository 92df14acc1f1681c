"""Apply's writes and a 401: one forced refresh and one retry of that call, then blocked.

Over real sockets: the sandbox issues OAuth tokens (authorize + code exchange), the plan is
made with a token Gorgias still accepts, and the sandbox then expires it before apply writes.
The store is a SQLite file or a PostgreSQL schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.oauth_helpers import sandbox_tokens
from together_reconcile.reconcile.apply import Applier, ApplyReport
from together_reconcile.reconcile.observe import Session, make_plan, open_session
from together_reconcile.reconcile.plan import Plan
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import generate_key
from together_reconcile.store import Credential

CLIENT_ID = "together-app"
CLIENT_SECRET = "sandbox-client-secret"
DOMAIN = "acme.gorgias.com"
REDIRECT = "https://together.example.com/oauth/gorgias/callback"


@dataclass
class World:
    sandbox: RunningSandbox
    accounts: Path
    state_url: str
    env: dict[str, str]

    def connect(self) -> Credential:
        """Tokens from a real authorize + code exchange, stored as valid for 20 hours."""
        with httpx.Client(timeout=10) as http:
            tokens = sandbox_tokens(
                self.sandbox,
                http,
                account="acme",
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                redirect_uri=REDIRECT,
            )
        credential = Credential(
            "gorgias",
            DOMAIN,
            tokens["access_token"],
            tokens["refresh_token"],
            datetime.now(UTC) + timedelta(hours=20),
        )
        with self.session() as session:
            session.store.put_credential(credential)
        return credential

    def session(self) -> _OpenSession:
        return _OpenSession(open_session(self.accounts, self.state_url, environ=self.env))

    def refreshes(self) -> int:
        return int(self.sandbox.control.oauth_status("acme")["refresh_grants"])

    def plan_then_apply(self, between: list[str]) -> tuple[Plan, ApplyReport]:
        """Plan (the token works), run `between` on the sandbox, then apply that plan."""
        with self.session() as session:
            plan = make_plan(session.reconciler, session.reconciler.scope())
            for call in between:
                if call == "refuse_two_posts":
                    self.sandbox.control.add_fault(
                        "gorgias", status=401, method="POST", path_contains="/api/", count=2
                    )
                else:
                    getattr(self.sandbox.control, call)("acme")
            report = Applier(session.reconciler, session.store, commit=None).apply(plan)
        return plan, report

    def writes(self) -> list[str]:
        return [
            f"{r['method']} {r['status']}"
            for r in self.sandbox.control.requests()
            if r["method"] != "GET" and "/oauth/" not in r["path"]
        ]


class _OpenSession:
    def __init__(self, session: Session) -> None:
        self.session = session

    def __enter__(self) -> Session:
        return self.session

    def __exit__(self, *exc: object) -> None:
        self.session.store.close()


@pytest.fixture
def world(sandbox: RunningSandbox, state_url: str, tmp_path: Path) -> Iterator[World]:
    sandbox.control.add_gorgias_account("acme", "unused-pasted-token")
    sandbox.control.set_oauth_client(CLIENT_ID, CLIENT_SECRET)
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    (accounts / "acme.yaml").write_text(
        "shopify_store: acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"
    )
    env = {
        "TOGETHER_SECRET_KEYS": generate_key(),
        "TOGETHER_PUBLIC_URL": "https://together.example.com",
        "TOGETHER_GORGIAS_URL": sandbox.gorgias_url_template,
        "TOGETHER_GORGIAS_CLIENT_ID": CLIENT_ID,
        "TOGETHER_GORGIAS_CLIENT_SECRET": CLIENT_SECRET,
    }
    yield World(sandbox, accounts, state_url, env)


@pytest.fixture(autouse=True)
def gorgias_url(sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_GORGIAS_URL", sandbox.gorgias_url_template)


def test_a_401_on_a_write_refreshes_once_and_retries_that_call(world: World) -> None:
    first = world.connect()
    world.sandbox.control.clear_requests()

    plan, report = world.plan_then_apply(between=["expire_tokens"])

    assert plan.account(DOMAIN) is not None and plan.summary["create"] == 1
    (result,) = report.results
    assert result.ok and result.reason is None, result
    assert world.refreshes() == 1
    assert world.writes() == ["POST 401", "POST 201", "POST 201"]  # the widget: new token at once
    assert len(world.sandbox.control.integrations("acme")) == 1
    assert len(world.sandbox.control.widgets("acme")) == 1
    with world.session() as session:
        stored = session.store.get_credential("gorgias", DOMAIN)
    assert stored is not None and stored.access_token != first.access_token


def test_still_401_after_the_refresh_blocks_the_account(world: World) -> None:
    world.connect()
    world.sandbox.control.clear_requests()

    # Gorgias refuses the first write and the retry with the refreshed token too.
    _, report = world.plan_then_apply(between=["refuse_two_posts"])

    (result,) = report.results
    assert not result.ok and result.reason == "credentials_rejected", result
    assert result.counts_as_failure and report.exit_code == 1
    assert world.refreshes() == 1  # exactly one forced refresh
    assert world.writes() == ["POST 401", "POST 401"]  # the call and its one retry
    assert world.sandbox.control.integrations("acme") == []
    assert "blocked (credentials_rejected)" in report.render()


def test_a_refresh_that_cannot_be_made_blocks_without_a_retry(world: World) -> None:
    world.connect()
    world.sandbox.control.clear_requests()

    _, report = world.plan_then_apply(between=["expire_tokens", "revoke_refresh_tokens"])

    (result,) = report.results
    assert not result.ok and result.reason == "reconnect_needed", result
    assert world.refreshes() == 0
    assert world.writes() == ["POST 401"]
    assert world.sandbox.control.integrations("acme") == []


def test_a_pasted_token_rejected_on_a_write_is_blocked(world: World) -> None:
    world.sandbox.control.add_gorgias_account("acme", "pasted-token")
    with world.session() as session:
        session.store.put_credential(Credential("gorgias", DOMAIN, "pasted-token"))
    world.sandbox.control.clear_requests()

    _, report = world.plan_then_apply(between=["expire_tokens"])

    (result,) = report.results
    assert not result.ok and result.reason == "credentials_rejected", result
    assert world.writes() == ["POST 401"]
