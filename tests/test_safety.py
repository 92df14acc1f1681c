"""Safety rules on a plan: the update cap (SPEC "Updates") and the refusals' data.

Pure: plans are made from plain values (tests/builders.py); the end-to-end runs against the
sandbox are in test_reconcile_e2e.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import DOMAIN, desired, live_integration, live_widget
from together_reconcile.errors import EXIT_REFUSED, TogetherError
from together_reconcile.reconcile.plan import Observation, Plan, plan_account, sorted_plan
from together_reconcile.reconcile.safety import (
    ApplyRefused,
    DeleteCapExceeded,
    StalePlan,
    UpdateCapExceeded,
    UpdateCount,
    check_update_cap,
    count_updates,
    default_max_updates,
    update_cap_refusal,
    update_cap_warning,
    updated_fields,
)
from together_reconcile.secrets import fingerprint

TOKEN_FIELD = "integration http.headers.X-Together-Token"


def accounts(n: int, **integration: Any) -> Plan:
    """`n` accounts whose live integration differs from the desired one by `integration`."""
    return sorted_plan(
        plan_account(
            f"a{i}.gorgias.com",
            desired(),
            Observation((live_integration(**integration),), (live_widget(),)),
        )
        for i in range(n)
    )


def moved_url() -> dict[str, Any]:
    http = dict(live_integration()["http"], url="https://old.example.com/gorgias/events")
    return {"http": http}


def test_default_cap_is_the_larger_of_3_and_30_percent_of_managed() -> None:
    assert [default_max_updates(n) for n in (0, 3, 10, 13, 20, 1000)] == [3, 3, 3, 3, 6, 300]


def test_update_cap_counts_accounts_and_names_the_commonest_field() -> None:
    plan = accounts(4, **moved_url())
    assert count_updates(plan) == UpdateCount(4, "integration http.url", 4)
    check_update_cap(plan, 4)
    with pytest.raises(UpdateCapExceeded) as refused:
        check_update_cap(plan, 3)
    assert (refused.value.count, refused.value.cap) == (4, 3)
    assert (refused.value.field, refused.value.field_count) == ("integration http.url", 4)
    assert refused.value.exit_code == EXIT_REFUSED
    assert isinstance(refused.value, ApplyRefused) and isinstance(refused.value, TogetherError)


def test_an_account_counts_once_however_many_fields_change() -> None:
    live = live_integration()
    http = dict(live["http"], url="https://old.example.com/x", method="GET")
    (account,) = accounts(1, http=http).accounts
    assert updated_fields(account) == ("integration http.url", "integration http.method")
    assert count_updates(accounts(5, http=http)).count == 5


def test_a_reactivation_alone_is_not_counted() -> None:
    plan = accounts(5, deactivated_datetime="2026-01-01T00:00:00")
    assert {a.resources[0].action for a in plan.accounts} == {"reactivate"}
    assert count_updates(plan) == UpdateCount(0, None, 0)
    check_update_cap(plan, 0)
    widgets = sorted_plan(
        plan_account(
            f"w{i}.gorgias.com",
            desired(),
            Observation((live_integration(),), (live_widget(deactivated_datetime="x"),)),
        )
        for i in range(5)
    )
    assert {a.action for a in widgets.accounts} == {"update"}
    assert count_updates(widgets).count == 0


def test_a_reactivation_with_another_change_counts() -> None:
    plan = accounts(4, deactivated_datetime="2026-01-01T00:00:00", **moved_url())
    assert count_updates(plan) == UpdateCount(4, "integration http.url", 4)


def test_a_token_from_an_older_key_is_rotation_and_not_counted() -> None:
    old_token = "v1.token-from-the-older-key"
    headers = {"X-Together-Token": old_token}
    http = dict(live_integration()["http"], headers=headers)
    plan = accounts(5, http=http)

    def rotated(_domain: str) -> set[tuple[str, Any]]:
        return {(TOKEN_FIELD, fingerprint(old_token))}

    assert count_updates(plan).count == 5  # without knowing the older keys: 5 updates
    assert count_updates(plan, rotated) == UpdateCount(0, None, 0)
    check_update_cap(plan, 0, rotated)

    # A token that no listed key derived (someone edited it in Gorgias) still counts.
    forged = dict(live_integration()["http"], headers={"X-Together-Token": "forged"})
    assert count_updates(accounts(5, http=forged), rotated).count == 5
    # Rotation plus a moved URL: the URL counts.
    both = dict(http, url="https://old.example.com/x")
    assert count_updates(accounts(5, http=both), rotated) == UpdateCount(
        5, "integration http.url", 5
    )


def test_creates_deletes_and_in_sync_accounts_are_not_updates() -> None:
    plan = sorted_plan(
        [
            plan_account("new.gorgias.com", desired(), Observation((), ())),
            plan_account("gone.gorgias.com", None, Observation((live_integration(),), ())),
            plan_account(DOMAIN, desired(), Observation((live_integration(),), (live_widget(),))),
            plan_account("nowidget.gorgias.com", desired(), Observation((live_integration(),), ())),
        ]
    )
    assert [a.action for a in plan.accounts] == ["in_sync", "delete", "create", "update"]
    assert count_updates(plan).count == 0


def test_refusals_carry_their_data_and_word_their_message() -> None:
    updates = UpdateCapExceeded(12, 3, "integration http.url", 11)
    assert str(updates) == (
        "the plan updates 12 accounts, over the cap of 3; 11 of them change integration "
        "http.url; nothing was changed. Check the plan (a wrong TOGETHER_PUBLIC_URL changes "
        "every integration's http.url), then allow it with --max-updates 12 (or "
        "TOGETHER_MAX_UPDATES; in the apply workflow, its max_updates input)"
    )
    assert update_cap_warning(updates) == (
        "apply would refuse this plan: it updates 12 accounts, over the cap of 3 (11 change "
        "integration http.url); if that is intended, apply with --max-updates 12"
    )
    deletes = DeleteCapExceeded(4, 3)
    assert (deletes.count, deletes.cap, deletes.exit_code) == (4, 3, EXIT_REFUSED)
    stale = StalePlan(["a.gorgias.com", "b.gorgias.com"])
    assert stale.domains == ("a.gorgias.com", "b.gorgias.com")
    assert stale.message.startswith("plan is stale: ")
    assert "a.gorgias.com, b.gorgias.com; nothing was changed" in stale.message


def test_update_cap_refusal_is_none_under_the_cap() -> None:
    assert update_cap_refusal(accounts(3, **moved_url()), 3) is None
    assert update_cap_refusal(accounts(0), 0) is None


def test_a_widget_template_change_counts_even_when_older_keys_are_known() -> None:
    """A changed widget title diffs a nested value (a dict, unhashable): counting it beside
    the rotation set used to crash `plan` with TypeError."""
    plan = sorted_plan(
        plan_account(
            f"t{i}.gorgias.com",
            desired(),
            Observation(
                (live_integration(),),
                (live_widget(template={"type": "wrapper", "widgets": [{"title": "Old"}]}),),
            ),
        )
        for i in range(4)
    )

    def rotated(_domain: str) -> set[tuple[str, Any]]:
        return {(TOKEN_FIELD, fingerprint("v1.token-from-the-older-key"))}

    counted = count_updates(plan, rotated)
    assert counted.count == 4
    assert counted.field is not None and counted.field.startswith("widget template")
    assert counted.field_count == 4
