"""SPEC "Precise rules" — Blocked reasons: not_connected, reconnect_needed,
credentials_rejected; a blocked account makes apply exit 1 unless it is not_connected."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.contract.conftest import (
    OAUTH_CLIENT_ID,
    OAUTH_CLIENT_SECRET,
    Result,
    World,
    by_account,
    remember_secret,
    unique,
)


@pytest.fixture(scope="module")
def blocked(module_world: World) -> dict[str, str]:
    world = module_world
    roles = {r: unique(f"b{r}") for r in ("good", "nc", "rejected", "reconnect")}
    for sub in roles.values():
        world.write_account(sub)
    world.connect(roles["good"])
    world.sandbox.control.add_gorgias_account(
        roles["rejected"], "the-token-gorgias-knows-" + "1" * 8
    )
    world.sandbox.control.add_gorgias_account(
        roles["reconnect"], "the-token-gorgias-knows-" + "2" * 8
    )
    world.sandbox.control.set_oauth_client(OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET)
    remember_secret(
        OAUTH_CLIENT_SECRET, "revoked-access-" + "7" * 12, "never-issued-refresh-" + "8" * 12
    )
    lines = [
        {
            "kind": "gorgias",
            "domain": f"{roles['rejected']}.gorgias.com",
            "access_token": "revoked-access-" + "7" * 12,
        },
        {
            "kind": "gorgias",
            "domain": f"{roles['reconnect']}.gorgias.com",
            "access_token": "revoked-access-" + "7" * 12,
            "refresh_token": "never-issued-refresh-" + "8" * 12,
            "expires_in": 1,
        },
    ]
    stdin = "\n".join(json.dumps(line) for line in lines)
    assert world.cli("credentials", "import", "-", stdin=stdin).code == 0
    return roles


def oauth_env() -> dict[str, str]:
    return {
        "TOGETHER_GORGIAS_CLIENT_ID": OAUTH_CLIENT_ID,
        "TOGETHER_GORGIAS_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
    }


@pytest.fixture(scope="module")
def planned(module_world: World, blocked: dict[str, str]) -> Result:
    return module_world.cli("plan", "--json", "--detailed-exitcode", **oauth_env())


def reason(planned: Result, sub: str) -> str | None:
    account = by_account(planned.json())[f"{sub}.gorgias.com"]
    assert account["action"] == "blocked" or account.get("reason") is None
    return account.get("reason")


def test_blocked_not_connected_when_no_credentials_stored(
    planned: Result, blocked: dict[str, str]
) -> None:
    assert reason(planned, blocked["nc"]) == "not_connected"


def test_blocked_credentials_rejected_when_gorgias_answers_401(
    planned: Result, blocked: dict[str, str]
) -> None:
    assert reason(planned, blocked["rejected"]) == "credentials_rejected"


def test_blocked_reconnect_needed_when_the_refresh_token_is_refused(
    module_world: World, planned: Result, blocked: dict[str, str]
) -> None:
    assert reason(planned, blocked["reconnect"]) == "reconnect_needed"
    listed = module_world.cli("credentials", "list")
    line = next(li for li in listed.stdout.splitlines() if blocked["reconnect"] in li)
    assert line.rstrip().endswith("reconnect_needed")


def test_blocked_accounts_never_change_plans_exit_status(planned: Result) -> None:
    assert planned.code == 2  # the good account is a create: changes, blocked or not


@pytest.mark.parametrize("role", ["rejected", "reconnect"])
def test_blocked_makes_apply_exit_1_and_the_others_still_apply(
    module_world: World, blocked: dict[str, str], planned: Result, role: str
) -> None:
    folder = module_world.root / f"with-{role}"
    folder.mkdir()
    for name in ("good", role):
        shutil.copy(module_world.accounts_dir / f"{blocked[name]}.yaml", folder)
    done = module_world.cli("apply", "--yes", TOGETHER_ACCOUNTS_DIR=str(folder), **oauth_env())
    assert done.code == 1, done.output
    assert len(module_world.ours(blocked["good"])) == 1


def test_not_connected_alone_lets_apply_exit_0(
    module_world: World, blocked: dict[str, str]
) -> None:
    folder = module_world.root / "only-nc"
    folder.mkdir()
    for role in ("good", "nc"):
        shutil.copy(module_world.accounts_dir / f"{blocked[role]}.yaml", folder)
    done = module_world.cli("apply", "--yes", TOGETHER_ACCOUNTS_DIR=str(folder))
    assert done.code == 0, done.output
