"""End to end: connect a Gorgias account over OAuth, then plan with tokens that expire.

`serve` runs as a real process (gunicorn) on loopback; Gorgias is the sandbox; the merchant's
browser is an httpx client following the redirects; `credentials list` and `plan` run through
the CLI. The store is a SQLite file or a PostgreSQL schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner

from tests.serve_helpers import ServedHandler, run_serve
from together_reconcile.cli import main
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Store

CLIENT_ID = "together-app"
CLIENT_SECRET = "sandbox-client-secret"
PUBLIC_URL = "https://together.example.com"  # a proxy in front of `serve` in production


@dataclass
class Loop:
    sandbox: RunningSandbox
    served: ServedHandler
    env: dict[str, str]
    state_url: str
    keys: str

    def connect(self, account: str) -> httpx.Response:
        """The merchant clicks Connect: install → Gorgias authorize → our callback."""
        with httpx.Client(timeout=10) as browser:
            install = browser.get(
                self.served.url + "/oauth/gorgias/install", params={"account": account}
            )
            assert install.status_code == 302, install.text
            authorize = browser.get(install.headers["location"])
            assert authorize.status_code == 302, authorize.text
            back = urlsplit(authorize.headers["location"])
            assert f"{back.scheme}://{back.netloc}" == PUBLIC_URL
            return browser.get(f"{self.served.url}{back.path}?{back.query}")

    def cli(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args), env=self.env, catch_exceptions=False)
        return result.exit_code, result.output

    def plan(self) -> dict[str, Any]:
        code, output = self.cli("plan", "--json")
        assert code == 0, output
        document: dict[str, Any] = json.loads(output)
        return document

    def credentials(self) -> list[list[str]]:
        code, output = self.cli("credentials", "list")
        assert code == 0, output
        return [line.split() for line in output.splitlines()[1:]]

    def stored_secrets(self) -> set[str]:
        with Store.open(self.state_url, Keyring.from_env(self.keys)) as store:
            credential = store.get_credential("gorgias", "acme.gorgias.com")
        assert credential is not None and credential.refresh_token is not None
        return {credential.access_token, credential.refresh_token}


@pytest.fixture
def loop(
    sandbox: RunningSandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Loop]:
    sandbox.control.add_gorgias_account("acme", "unused-pasted-token")
    sandbox.control.set_oauth_client(CLIENT_ID, CLIENT_SECRET)
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    (accounts / "acme.yaml").write_text(
        "shopify_store: acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"
    )
    keys = f"{generate_key()},{generate_key()}"
    env = {
        "TOGETHER_SECRET_KEYS": keys,
        "TOGETHER_PUBLIC_URL": PUBLIC_URL,
        "TOGETHER_GORGIAS_URL": sandbox.gorgias_url_template,
        "TOGETHER_GORGIAS_CLIENT_ID": CLIENT_ID,
        "TOGETHER_GORGIAS_CLIENT_SECRET": CLIENT_SECRET,
        "TOGETHER_STATE_URL": state_url,
        "TOGETHER_ACCOUNTS_DIR": str(accounts),
        "NO_COLOR": "1",
    }
    for name, value in env.items():  # `serve` inherits them
        monkeypatch.setenv(name, value)
    with run_serve(
        tmp_path,
        accounts_dir=accounts,
        state_url=state_url,
        secret_keys=keys,
        shopify_url=sandbox.shopify_url_template,
    ) as served:
        yield Loop(sandbox, served, env, state_url, keys)


def _account(plan: dict[str, Any]) -> dict[str, Any]:
    (account,) = plan["accounts"]
    assert isinstance(account, dict)
    return account


def test_connect_then_plan_refreshes_expired_tokens(loop: Loop) -> None:
    page = loop.connect("acme")
    assert page.status_code == 200, page.text
    assert "acme.gorgias.com is now connected to Together." in page.text
    (row,) = loop.credentials()
    assert (row[0], row[1], row[-1]) == ("gorgias", "acme.gorgias.com", "ok")
    first = loop.stored_secrets()

    loop.sandbox.control.expire_tokens("acme")  # Gorgias says 401; we thought it valid
    plan = loop.plan()
    assert _account(plan)["action"] == "create"
    status = loop.sandbox.control.oauth_status("acme")
    assert status["refresh_grants"] == 1
    after = loop.stored_secrets()
    assert status["latest_refresh_token"] in after and not after & first

    code, output = loop.cli("plan", "--json")
    assert code == 0 and loop.sandbox.control.oauth_status("acme")["refresh_grants"] == 1
    for secret in first | after:
        assert secret not in page.text + output


def test_a_token_expiring_soon_is_refreshed_before_use(loop: Loop) -> None:
    loop.sandbox.control.set_token_lifetime(120)  # within the 5-minute margin from the start
    assert loop.connect("acme").status_code == 200
    loop.sandbox.control.clear_requests()
    assert _account(loop.plan())["action"] == "create"
    statuses = [
        (r["path"].rsplit("/", 2)[-2:], r["status"]) for r in loop.sandbox.control.requests()
    ]
    assert statuses[0] == (["oauth", "token"], 200)
    assert all(status != 401 for _, status in statuses)


def test_a_revoked_refresh_token_blocks_the_account_until_it_reconnects(loop: Loop) -> None:
    assert loop.connect("acme").status_code == 200
    loop.sandbox.control.revoke_refresh_tokens("acme")
    loop.sandbox.control.expire_tokens("acme")
    account = _account(loop.plan())
    assert (account["action"], account["reason"]) == ("blocked", "reconnect_needed")
    assert loop.credentials()[0][-1] == "reconnect_needed"
    assert loop.connect("acme").status_code == 200  # the merchant connects again
    assert loop.credentials()[0][-1] == "ok"
    assert _account(loop.plan())["action"] == "create"
