"""Apply, unit level: safety rules, saved plans, create-or-adopt, and the store records.

Gorgias is an in-memory fake client here (the sandbox runs in test_reconcile_e2e); the store is
real, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.builders import (
    DOMAIN,
    FakeGorgias,
    desired,
    live_integration,
    live_widget,
    make_reconciler,
)
from together_reconcile.gorgias.client import CreateOutcomeUnknown
from together_reconcile.gorgias.reasons import (
    CREDENTIALS_REJECTED,
    NOT_CONNECTED,
)
from together_reconcile.reconcile.apply import (
    ApplyReport,
    ApplyStepError,
    PlanFileError,
    _create_or_adopt,
    blocked_result,
    check_delete_cap,
    check_not_stale,
    load_saved_plan,
    run_apply,
)
from together_reconcile.reconcile.desired import is_ours
from together_reconcile.reconcile.kinds import INTEGRATION
from together_reconcile.reconcile.plan import (
    FieldDiff,
    Observation,
    ResourcePlan,
    blocked,
    plan_account,
    sorted_plan,
)
from together_reconcile.reconcile.render import saved_plan_document
from together_reconcile.reconcile.safety import DeleteCapExceeded, StalePlan
from together_reconcile.secrets import Keyring
from together_reconcile.store import Credential, Store


def lost(*_args: Any) -> Any:
    raise CreateOutcomeUnknown(502, "lost", "POST", "/api/integrations")


# -- safety rules ---------------------------------------------------------------------------


def deleting(n: int) -> Any:
    return sorted_plan(
        plan_account(
            f"a{i}.gorgias.com",
            None,
            Observation((live_integration(),), (live_widget(),)),
        )
        for i in range(n)
    )


def test_delete_cap_counts_accounts_and_refuses_over_it() -> None:
    check_delete_cap(deleting(3), 3)
    with pytest.raises(DeleteCapExceeded) as refused:
        check_delete_cap(deleting(4), 3)
    assert (refused.value.count, refused.value.cap, refused.value.exit_code) == (4, 3, 3)


def test_delete_cap_counts_each_extra_duplicate() -> None:
    duplicates = sorted_plan(
        [
            plan_account(
                DOMAIN,
                desired(),
                Observation(
                    (live_integration(10), live_integration(11), live_integration(12)),
                    (live_widget(20, 10), live_widget(21, 11)),
                ),
            )
        ]
    )
    assert duplicates.delete_count == 2
    with pytest.raises(DeleteCapExceeded) as refused:
        check_delete_cap(duplicates, 1)
    assert (refused.value.count, refused.value.cap) == (2, 1)


def test_saved_plan_round_trip_and_staleness(tmp_path: Path) -> None:
    plan = sorted_plan(
        [plan_account(DOMAIN, desired(), Observation((live_integration(),), (live_widget(),)))]
    )
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(saved_plan_document(plan)))
    saved = load_saved_plan(path)
    assert saved.domains == [DOMAIN]
    check_not_stale(saved, plan)

    moved = sorted_plan(
        [
            plan_account(
                DOMAIN,
                desired(),
                Observation((live_integration(updated_datetime="later"),), (live_widget(),)),
            )
        ]
    )
    with pytest.raises(StalePlan) as stale:
        check_not_stale(saved, moved)
    assert stale.value.domains == (DOMAIN,)
    different_change = sorted_plan(
        [plan_account(DOMAIN, desired(token="rotated"), Observation((live_integration(),), ()))]
    )
    with pytest.raises(StalePlan) as stale:
        check_not_stale(saved, different_change)
    assert stale.value.domains == (DOMAIN,)
    with pytest.raises(StalePlan) as stale:
        check_not_stale(saved, sorted_plan([]))
    assert stale.value.domains == (DOMAIN,)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON; write it with `plan --out FILE`"),
        ('{"accounts": []}', "not a saved plan"),
        ('{"format": 1, "accounts": [{}], "observed": {}}', "has no gorgias_account"),
    ],
)
def test_bad_plan_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(PlanFileError, match=message):
        load_saved_plan(path)


def test_missing_plan_file(tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match="cannot read the plan file"):
        load_saved_plan(tmp_path / "nope.json")


# -- create or adopt ------------------------------------------------------------------------


def test_lost_create_adopts_what_the_server_made() -> None:
    creates: list[int] = []

    def create() -> dict[str, Any]:
        creates.append(1)
        return lost()

    assert _create_or_adopt(create, lambda: 77) == 77
    assert len(creates) == 1


def test_lost_create_with_nothing_there_creates_once_more() -> None:
    answers = iter([None, None])
    outcomes: list[Any] = [lost, lambda: {"id": 5}]

    def create() -> dict[str, Any]:
        result: dict[str, Any] = outcomes.pop(0)()
        return result

    assert _create_or_adopt(create, lambda: next(answers)) == 5
    assert outcomes == []


def test_lost_twice_with_nothing_there_gives_up() -> None:
    calls: list[int] = []

    def create() -> dict[str, Any]:
        calls.append(1)
        return lost()

    with pytest.raises(CreateOutcomeUnknown):
        _create_or_adopt(create, lambda: None)
    assert len(calls) == 2


def test_create_answer_without_id_fails_the_account() -> None:
    with pytest.raises(ApplyStepError, match="without an id"):
        _create_or_adopt(lambda: {}, lambda: None)


def test_update_body_turns_extra_triggers_off_and_reactivates() -> None:
    resource = ResourcePlan(
        "integration",
        "reactivate",
        10,
        (
            FieldDiff("http.triggers.ticket-message-created", True, False),
            FieldDiff("deactivated_datetime", "2026-01-01", None),
        ),
    )
    body = INTEGRATION.body_for_update(
        desired().integration, resource.diff, resource.action == "reactivate"
    )
    assert body["http"]["triggers"] == {
        "ticket-created": True,
        "ticket-updated": True,
        "ticket-message-created": False,
    }
    assert body["deactivated_datetime"] is None
    assert "deactivated_datetime" not in desired().integration


# -- the whole run against a fake Gorgias and a real store ----------------------------------


def test_apply_records_managed_accounts_audits_and_forgets(store: Store, keyring: Keyring) -> None:
    fakes = {"acme.gorgias.com": FakeGorgias(), "beta.gorgias.com": FakeGorgias()}
    for domain in fakes:
        store.put_credential(Credential("gorgias", domain, f"token-{domain}"))

    def run(accounts: dict[str, bool], max_deletes: int = 3) -> Any:
        reconciler = make_reconciler(keyring, fakes, accounts, store)
        return run_apply(
            reconciler,
            store,
            saved=None,
            confirm=lambda _plan: True,
            max_deletes=max_deletes,
            lock_timeout_s=5,
            commit="sha1",
        )

    plan, report = run({"acme": True, "beta": True, "omega": True})
    assert report is not None and report.exit_code == 0
    assert plan.account("omega.gorgias.com").reason == NOT_CONNECTED  # type: ignore[union-attr]
    acme = fakes["acme.gorgias.com"]
    assert acme.writes == ["POST integration", "POST widget"]
    (integration,) = acme.integrations.values()
    (widget,) = acme.widgets.values()
    assert is_ours(integration) and widget["integration_id"] == integration["id"]
    managed = store.list_managed()
    assert set(managed) == {"acme.gorgias.com", "beta.gorgias.com"}
    record = managed["acme.gorgias.com"]
    assert (record.integration_id, record.widget_id, record.commit) == (
        integration["id"],
        widget["id"],
        "sha1",
    )
    assert record.fingerprint.startswith("sha256:")
    entries = store.audit_log("acme.gorgias.com")
    assert [(e.action, e.kind, e.resource_id) for e in entries] == [
        ("create", "integration", str(integration["id"])),
        ("create", "widget", str(widget["id"])),
    ]
    assert "token-acme" not in json.dumps([e.detail for e in entries])

    # re-run: no write at all
    acme.writes.clear()
    _plan, report = run({"acme": True, "beta": True})
    assert report is not None and report.exit_code == 0
    assert acme.writes == []

    # beta's file removed: managed → deleted, widget first, then forgotten
    _plan, report = run({"acme": True})
    assert report is not None and report.exit_code == 0
    assert fakes["beta.gorgias.com"].writes[-2:] == ["DELETE widget", "DELETE integration"]
    assert set(store.list_managed()) == {"acme.gorgias.com"}


def test_blocked_accounts_fail_apply_unless_not_connected() -> None:
    waiting = ApplyReport((blocked_result(blocked("a.gorgias.com", NOT_CONNECTED)),))
    assert waiting.exit_code == 0
    assert "1 not connected" in waiting.render()
    rejected = ApplyReport((blocked_result(blocked("a.gorgias.com", CREDENTIALS_REJECTED)),))
    assert rejected.exit_code == 1
    assert "Failed: a.gorgias.com" in rejected.render()
