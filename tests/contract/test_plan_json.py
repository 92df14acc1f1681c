"""SPEC "Command line" (plan row) and "Precise rules" — `plan --json`: the document, the
action vocabularies, `diff` items, dotted paths, fingerprints, blocked and exit statuses."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.contract.conftest import STOLEN_HEADER, Scenario
from together_reconcile.secrets import Keyring

ACCOUNT_ACTIONS = {"create", "update", "delete", "in_sync", "blocked"}
RESOURCE_ACTIONS = {"create", "update", "reactivate", "delete", "in_sync"}


def sha8(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:8]


def resources(account: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["kind"]: r for r in account["resources"]}


def test_plan_json_is_one_document_with_accounts_and_summary(scenario: Scenario) -> None:
    document = scenario.plan.json()
    assert set(document) >= {"accounts", "summary"}
    assert isinstance(document["summary"], dict)
    assert document["accounts"], "the scenario plans several accounts"
    assert any(account["resources"] for account in document["accounts"])
    for account in document["accounts"]:
        assert {"gorgias_account", "action", "resources"} <= set(account)
        for resource in account["resources"]:
            assert {"kind", "action", "id", "diff"} <= set(resource)
            assert resource["kind"] in ("integration", "widget")


def test_plan_json_actions_use_the_spec_vocabulary(scenario: Scenario) -> None:
    accounts = scenario.plan.json()["accounts"]
    assert accounts and any(account["resources"] for account in accounts)
    for account in accounts:
        assert account["action"] in ACCOUNT_ACTIONS
        for resource in account["resources"]:
            assert resource["action"] in RESOURCE_ACTIONS


def test_plan_json_gorgias_account_is_the_full_domain(scenario: Scenario) -> None:
    accounts = scenario.plan.json()["accounts"]
    assert accounts
    for account in accounts:
        assert account["gorgias_account"].endswith(".gorgias.com")


def test_plan_json_create_when_nothing_of_ours_exists(scenario: Scenario) -> None:
    account = scenario.account("new")
    assert account["action"] == "create"
    assert {r["action"] for r in account["resources"]} == {"create"}


def test_in_sync_is_spelled_with_underscore(scenario: Scenario) -> None:
    account = scenario.account("sync")
    assert account["action"] == "in_sync"
    assert {r["action"] for r in account["resources"]} == {"in_sync"}
    text = scenario.world.cli("plan", "--account", scenario.domain("sync"))
    account_lines = [line for line in text.stdout.splitlines() if scenario.domain("sync") in line]
    assert account_lines == [f"= {scenario.domain('sync')}: in_sync"]


def test_plan_json_update_with_field_level_diff(scenario: Scenario) -> None:
    account = scenario.account("drift")
    assert account["action"] == "update"
    integration = resources(account)["integration"]
    assert integration["action"] == "update"
    assert integration["id"] == scenario.ids["drift"]
    for item in integration["diff"]:
        assert set(item) >= {"field", "before", "after"}
    url = next(d for d in integration["diff"] if d["field"] == "http.url")
    assert url["before"] == "https://elsewhere.example.com/hook"
    assert url["after"] == "https://together.example.com/gorgias/events"


def test_plan_json_diff_field_paths_are_dotted(scenario: Scenario) -> None:
    fields = {d["field"] for d in resources(scenario.account("drift"))["integration"]["diff"]}
    assert {"http.url", "http.headers.X-Together-Token"} <= fields
    assert "http.triggers.ticket-message-created" in fields


def test_plan_json_secret_diff_shows_sha256_and_8_hex(scenario: Scenario) -> None:
    diff = resources(scenario.account("drift"))["integration"]["diff"]
    header = next(d for d in diff if d["field"] == "http.headers.X-Together-Token")
    event_token = Keyring.from_env(scenario.world.keys).event_token(scenario.domain("drift"))
    assert header["before"] == sha8(STOLEN_HEADER)
    assert header["after"] == sha8(event_token)
    assert STOLEN_HEADER not in scenario.plan.output and event_token not in scenario.plan.output


def test_plan_json_reactivate_for_an_integration_gorgias_disabled(scenario: Scenario) -> None:
    account = scenario.account("react")
    assert account["action"] == "update"
    assert resources(account)["integration"]["action"] == "reactivate"
    assert resources(account)["integration"]["id"] == scenario.ids["react"]
    assert resources(account)["widget"]["action"] == "create"


def test_plan_json_delete_when_all_of_ours_goes(scenario: Scenario) -> None:
    account = scenario.account("gone")
    assert account["action"] == "delete"
    assert {r["action"] for r in account["resources"]} == {"delete"}


def test_plan_json_blocked_has_a_reason_code(scenario: Scenario) -> None:
    account = scenario.account("nc")
    assert account["action"] == "blocked"
    assert account["reason"] == "not_connected"


def test_plan_detailed_exitcode_2_when_changes(scenario: Scenario) -> None:
    assert scenario.plan.code == 2


def test_plan_exit_0_with_changes_without_detailed_exitcode(scenario: Scenario) -> None:
    done = scenario.world.cli("plan", "--account", scenario.domain("new"))
    assert done.code == 0, done.output
    assert "create" in done.stdout


def test_plan_json_blocked_account_keeps_exit_code(scenario: Scenario) -> None:
    """A blocked account beside an in-sync one: --detailed-exitcode still says 0 (no changes)."""
    done = scenario.world.cli(
        "plan",
        "--json",
        "--detailed-exitcode",
        "--account",
        scenario.domain("nc"),
        "--account",
        scenario.domain("sync").upper(),
    )
    assert done.code == 0, done.output
    actions = {a["gorgias_account"]: a["action"] for a in done.json()["accounts"]}
    assert actions == {scenario.domain("nc"): "blocked", scenario.domain("sync"): "in_sync"}


def test_plan_markdown_names_every_account_and_action(scenario: Scenario) -> None:
    done = scenario.world.cli("plan", "--format", "markdown")
    assert done.code == 0
    for role in ("new", "drift", "gone", "nc"):
        assert scenario.domain(role) in done.stdout
    assert "not_connected" in done.stdout
    assert sha8(STOLEN_HEADER) in done.stdout


def test_plan_error_exits_1_even_with_detailed_exitcode(scenario: Scenario) -> None:
    done = scenario.world.cli("plan", "--detailed-exitcode", "--account", "nobody.gorgias.com")
    assert done.code == 1
    assert "unknown account(s): nobody.gorgias.com" in done.output
