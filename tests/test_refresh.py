"""Refreshing stored Gorgias tokens against the sandbox's token endpoint, on both stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.oauth_helpers import sandbox_tokens
from together_reconcile.cli import main
from together_reconcile.gorgias.tokens import (
    GorgiasTokenRefresher,
    OAuthApp,
    TokenBlocked,
    ensure_fresh_gorgias_token,
    refresh_after_rejection,
)
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, fingerprint
from together_reconcile.store import Credential, Store

CLIENT_ID = "together-app"
CLIENT_SECRET = "sandbox-client-secret"
DOMAIN = "acme.gorgias.com"
REDIRECT = "https://together.example.com/oauth/gorgias/callback"


@dataclass
class Setup:
    sandbox: RunningSandbox
    store: Store
    app: OAuthApp
    http: httpx.Client

    def connect(self, *, expires_in: timedelta) -> Credential:
        """Tokens from a real authorize + code exchange, stored to expire in `expires_in`."""
        tokens = sandbox_tokens(
            self.sandbox,
            self.http,
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
            datetime.now(UTC) + expires_in,
        )
        self.store.put_credential(credential)
        return credential

    def works(self, access_token: str) -> bool:
        base = self.sandbox.gorgias_url_template.format(account="acme")
        answer = self.http.get(
            base + "/api/integrations", headers={"Authorization": f"Bearer {access_token}"}
        )
        return answer.status_code == 200

    def refreshes(self) -> int:
        return int(self.sandbox.control.oauth_status("acme")["refresh_grants"])

    def fresh(self) -> Credential | TokenBlocked:
        return self.fresh_with(self.app)

    def fresh_with(self, app: OAuthApp | None) -> Credential | TokenBlocked:
        return ensure_fresh_gorgias_token(
            self.store, DOMAIN, app=app, now=datetime.now(UTC), http=self.http
        )


@pytest.fixture
def setup(sandbox: RunningSandbox, store: Store) -> Iterator[Setup]:
    sandbox.control.add_gorgias_account("acme", "unused-token")
    sandbox.control.set_oauth_client(CLIENT_ID, CLIENT_SECRET)
    app = OAuthApp(CLIENT_ID, CLIENT_SECRET, sandbox.gorgias_url_template)
    with httpx.Client(timeout=10) as http:
        yield Setup(sandbox, store, app, http)


def test_a_token_valid_for_longer_than_five_minutes_is_used_as_is(setup: Setup) -> None:
    connected = setup.connect(expires_in=timedelta(minutes=6))
    assert setup.fresh() == connected
    assert setup.refreshes() == 0


def test_a_token_expiring_within_five_minutes_is_refreshed_and_rotated(setup: Setup) -> None:
    connected = setup.connect(expires_in=timedelta(minutes=4))
    refreshed = setup.fresh()
    assert isinstance(refreshed, Credential)
    assert refreshed.access_token != connected.access_token
    assert refreshed.refresh_token != connected.refresh_token
    assert refreshed.expires_at is not None
    assert refreshed.expires_at > datetime.now(UTC) + timedelta(hours=23)
    assert setup.works(refreshed.access_token)
    assert setup.store.get_credential("gorgias", DOMAIN) == refreshed
    status = setup.sandbox.control.oauth_status("acme")
    assert status["refresh_grants"] == 1
    assert refreshed.refresh_token == status["latest_refresh_token"]


def test_an_expired_token_is_refreshed(setup: Setup) -> None:
    setup.connect(expires_in=timedelta(minutes=-30))
    setup.sandbox.control.expire_tokens("acme")
    refreshed = setup.fresh()
    assert isinstance(refreshed, Credential) and setup.works(refreshed.access_token)


def test_a_pasted_token_without_refresh_token_is_used_as_is(setup: Setup) -> None:
    pasted = Credential("gorgias", DOMAIN, "pasted", None, datetime.now(UTC) - timedelta(hours=1))
    setup.store.put_credential(pasted)
    assert setup.fresh() == pasted
    assert setup.refreshes() == 0


def test_no_credential_is_not_connected(setup: Setup) -> None:
    assert setup.fresh() == TokenBlocked("not_connected")


def test_a_revoked_refresh_token_needs_a_reconnect(setup: Setup, state_url: str) -> None:
    setup.connect(expires_in=timedelta(minutes=1))
    setup.sandbox.control.revoke_refresh_tokens("acme")
    assert setup.fresh() == TokenBlocked("reconnect_needed")
    stored = setup.store.get_credential("gorgias", DOMAIN)
    assert stored is not None and stored.status == "reconnect_needed"
    setup.sandbox.control.clear_requests()
    assert setup.fresh() == TokenBlocked("reconnect_needed")
    assert setup.sandbox.control.requests() == []  # no second try at the token endpoint
    listed = CliRunner().invoke(main, ["--state-url", state_url, "credentials", "list"])
    assert listed.exit_code == 0, listed.output
    row = listed.output.splitlines()[1].split()
    assert (row[0], row[1], row[-1]) == ("gorgias", DOMAIN, "reconnect_needed")


def test_token_endpoint_down_keeps_a_still_valid_token(setup: Setup) -> None:
    connected = setup.connect(expires_in=timedelta(minutes=2))
    setup.sandbox.control.add_fault(path_contains="/oauth/token", status=503)
    assert setup.fresh() == connected


def test_token_endpoint_down_with_an_expired_token(setup: Setup) -> None:
    setup.connect(expires_in=timedelta(minutes=-1))
    setup.sandbox.control.add_fault(path_contains="/oauth/token", kind="drop")
    blocked = setup.fresh()
    assert isinstance(blocked, TokenBlocked) and blocked.reason == "gorgias_unavailable"
    assert blocked.message is not None
    assert blocked.message.startswith(
        "could not refresh the token: the Gorgias token endpoint of acme.gorgias.com could not "
        "be reached"
    )
    stored = setup.store.get_credential("gorgias", DOMAIN)
    assert stored is not None and stored.status == "ok"


def test_refused_client_credentials_do_not_mark_the_account(setup: Setup) -> None:
    setup.connect(expires_in=timedelta(minutes=1))
    wrong = OAuthApp(CLIENT_ID, "wrong", setup.sandbox.gorgias_url_template)
    blocked = setup.fresh_with(wrong)
    assert blocked == TokenBlocked(
        "credentials_rejected",
        "the Gorgias token endpoint of acme.gorgias.com refused our app's credentials "
        "(invalid_client): check TOGETHER_GORGIAS_CLIENT_ID and TOGETHER_GORGIAS_CLIENT_SECRET",
    )
    stored = setup.store.get_credential("gorgias", DOMAIN)
    assert stored is not None and stored.status == "ok"


def test_without_client_credentials_nothing_is_refreshed(setup: Setup) -> None:
    connected = setup.connect(expires_in=timedelta(minutes=1))
    assert setup.fresh_with(None) == connected


# ---------------------------------------------------------------- once more after a 401
def test_a_401_forces_one_refresh(setup: Setup) -> None:
    connected = setup.connect(expires_in=timedelta(hours=20))
    setup.sandbox.control.expire_tokens("acme")  # Gorgias disagrees with our expiry
    retried = refresh_after_rejection(
        setup.store,
        DOMAIN,
        connected.access_token,
        app=setup.app,
        now=datetime.now(UTC),
        http=setup.http,
    )
    assert isinstance(retried, Credential) and setup.works(retried.access_token)
    assert setup.refreshes() == 1


def test_after_a_401_a_token_refreshed_elsewhere_is_used(setup: Setup) -> None:
    connected = setup.connect(expires_in=timedelta(hours=20))
    newer = Credential("gorgias", DOMAIN, "newer", connected.refresh_token, connected.expires_at)
    setup.store.put_credential(newer)
    retried = refresh_after_rejection(
        setup.store,
        DOMAIN,
        connected.access_token,
        app=setup.app,
        now=datetime.now(UTC),
        http=setup.http,
    )
    assert retried == newer
    assert setup.refreshes() == 0


def test_after_a_401_a_token_without_refresh_token_is_rejected(setup: Setup) -> None:
    setup.store.put_credential(Credential("gorgias", DOMAIN, "pasted"))
    retried = refresh_after_rejection(
        setup.store, DOMAIN, "pasted", app=setup.app, now=datetime.now(UTC), http=setup.http
    )
    assert retried == TokenBlocked(
        "credentials_rejected",
        "Gorgias refused the stored token (401) and there is no refresh token to renew it",
    )


# ---------------------------------------------------------------- no new refresh token
def test_the_old_refresh_token_is_kept_when_none_comes_back(store: Store) -> None:
    store.put_credential(Credential("gorgias", DOMAIN, "old", "keep-me", datetime.now(UTC)))

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/acme/oauth/token"
        assert request.content == b"grant_type=refresh_token&refresh_token=keep-me"
        return httpx.Response(200, json={"access_token": "new", "expires_in": 86400})

    with httpx.Client(transport=httpx.MockTransport(token_endpoint)) as http:
        app = OAuthApp(CLIENT_ID, CLIENT_SECRET, "http://gorgias.test/{account}")
        fresh = ensure_fresh_gorgias_token(store, DOMAIN, app=app, now=datetime.now(UTC), http=http)
    assert isinstance(fresh, Credential)
    assert (fresh.access_token, fresh.refresh_token) == ("new", "keep-me")


# ---------------------------------------------------------------- two processes at once
_REFRESHER = textwrap.dedent(
    """
    import json, os, sys, time
    from datetime import UTC, datetime
    import httpx
    from together_reconcile.secrets import Keyring, fingerprint
    from together_reconcile.store import Store
    from together_reconcile.gorgias.tokens import OAuthApp, ensure_fresh_gorgias_token

    state_url, template, go_file = sys.argv[1:4]
    store = Store.open(state_url, Keyring.from_env(os.environ["TOGETHER_SECRET_KEYS"]))
    app = OAuthApp("together-app", "sandbox-client-secret", template)
    with httpx.Client(timeout=30) as http:
        print("ready", flush=True)
        while not os.path.exists(go_file):
            time.sleep(0.001)
        result = ensure_fresh_gorgias_token(
            store, "acme.gorgias.com", app=app, now=datetime.now(UTC), http=http
        )
        token = getattr(result, "access_token", None)
        status = None
        if token is not None:
            status = http.get(
                template.replace("{account}", "acme") + "/api/integrations",
                headers={"Authorization": "Bearer " + token},
            ).status_code
        print(json.dumps({
            "blocked": getattr(result, "reason", None),
            "token": fingerprint(token) if token else None,
            "api_status": status,
        }), flush=True)
    store.close()
    """
)


def test_two_processes_refreshing_at_once_keep_the_last_refresh_token(
    setup: Setup, state_url: str, secret_keys_env: str, tmp_path: Path
) -> None:
    setup.connect(expires_in=timedelta(minutes=1))
    # A slow token endpoint: the second process surely arrives while the first refreshes.
    setup.sandbox.control.add_fault(
        path_contains="/oauth/token", kind="slow", delay_s=0.3, count=None
    )
    go_file = tmp_path / "go"
    env = {**os.environ, "TOGETHER_SECRET_KEYS": secret_keys_env}
    command = [
        sys.executable,
        "-c",
        _REFRESHER,
        state_url,
        setup.sandbox.gorgias_url_template,
        str(go_file),
    ]
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready", process.stderr
        go_file.touch()
        outputs = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    results = []
    for (stdout, stderr), process in zip(outputs, processes, strict=True):
        assert process.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [r["blocked"] for r in results] == [None, None]
    assert [r["api_status"] for r in results] == [200, 200]
    assert results[0]["token"] == results[1]["token"]  # the second used the first one's token
    status = setup.sandbox.control.oauth_status("acme")
    assert status["refresh_grants"] == 1
    with Store.open(state_url, Keyring.from_env(secret_keys_env)) as reopened:
        stored = reopened.get_credential("gorgias", DOMAIN)
    assert stored is not None and stored.status == "ok"
    assert stored.refresh_token == status["latest_refresh_token"]
    assert fingerprint(stored.access_token) == results[0]["token"]


# ---------------------------------------------------------------- the reconciler's refresher
def test_refresher_from_env(setup: Setup) -> None:
    environ = {
        "TOGETHER_GORGIAS_CLIENT_ID": CLIENT_ID,
        "TOGETHER_GORGIAS_CLIENT_SECRET": CLIENT_SECRET,
        "TOGETHER_GORGIAS_URL": setup.sandbox.gorgias_url_template,
    }
    connected = setup.connect(expires_in=timedelta(minutes=1))
    unconfigured = GorgiasTokenRefresher.from_env(setup.store, {})
    assert unconfigured.fresh(DOMAIN) == connected
    refresher = GorgiasTokenRefresher.from_env(setup.store, environ)
    refreshed = refresher.fresh(DOMAIN)
    assert isinstance(refreshed, Credential) and setup.works(refreshed.access_token)
    assert refresher.fresh(DOMAIN) == refreshed  # fresh now: no second refresh
    again = refresher.after_rejection(DOMAIN, refreshed.access_token)
    assert isinstance(again, Credential) and again.access_token != refreshed.access_token
    assert setup.refreshes() == 2
