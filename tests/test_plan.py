"""The pure diff: one scenario per test, desired state against an observed account."""

from __future__ import annotations

from typing import Any

from tests.builders import DOMAIN, TOKEN, desired, live_integration, live_widget
from together_reconcile.gorgias.reasons import (
    CREDENTIALS_REJECTED,
    NOT_CONNECTED,
    RECONNECT_NEEDED,
)
from together_reconcile.reconcile.plan import (
    FieldDiff,
    Observation,
    Plan,
    blocked,
    plan_account,
    sorted_plan,
)
from together_reconcile.secrets import fingerprint


def plan_of(*integrations: dict[str, Any], widgets: tuple[dict[str, Any], ...] = ()) -> Any:
    return plan_account(DOMAIN, desired(), Observation(integrations, widgets))


def test_nothing_there_creates_integration_then_widget() -> None:
    account = plan_of()
    assert account.action == "create"
    assert [(r.kind, r.action, r.id) for r in account.resources] == [
        ("integration", "create", None),
        ("widget", "create", None),
    ]
    fields = {d.field: d for d in account.resources[0].diff}
    assert fields["http.url"] == FieldDiff("http.url", None, "https://t.example.com/gorgias/events")
    assert fields["http.headers.X-Together-Token"].after == fingerprint(TOKEN)
    assert "http.triggers.ticket-created" in fields
    assert account.has_changes


def test_in_sync_ignores_read_only_and_unknown_fields_and_the_commit() -> None:
    integration = live_integration()
    integration["description"] = integration["description"].replace("commit c1", "commit old")
    account = plan_account(DOMAIN, desired("c2"), Observation((integration,), (live_widget(),)))
    assert account.action == "in_sync"
    assert [(r.kind, r.action, r.id, r.diff) for r in account.resources] == [
        ("integration", "in_sync", 10, ()),
        ("widget", "in_sync", 20, ()),
    ]
    assert not account.has_changes


def test_drift_in_url_is_an_update_in_place() -> None:
    integration = live_integration()
    integration["http"]["url"] = "https://evil.example.com/x"
    account = plan_of(integration, widgets=(live_widget(),))
    assert account.action == "update"
    resource = account.resources[0]
    assert (resource.action, resource.id) == ("update", 10)
    assert resource.diff == (
        FieldDiff("http.url", "https://evil.example.com/x", "https://t.example.com/gorgias/events"),
    )


def test_rotated_token_shows_fingerprints_only() -> None:
    integration = live_integration()
    integration["http"]["headers"]["X-Together-Token"] = "old-token"
    account = plan_of(integration, widgets=(live_widget(),))
    assert account.resources[0].diff == (
        FieldDiff("http.headers.X-Together-Token", fingerprint("old-token"), fingerprint(TOKEN)),
    )


def test_trigger_added_in_ui_is_drift_but_one_left_off_is_not() -> None:
    integration = live_integration()
    integration["http"]["triggers"]["ticket-message-created"] = True
    integration["http"]["triggers"]["ticket-self-unsnoozed"] = False
    account = plan_of(integration, widgets=(live_widget(),))
    assert account.resources[0].diff == (
        FieldDiff("http.triggers.ticket-message-created", True, False),
    )


def test_deactivated_integration_is_reactivated() -> None:
    integration = live_integration(deactivated_datetime="2026-03-01T00:00:00")
    account = plan_of(integration, widgets=(live_widget(),))
    assert account.action == "update"
    resource = account.resources[0]
    assert (resource.action, resource.id) == ("reactivate", 10)
    assert resource.diff == (FieldDiff("deactivated_datetime", "2026-03-01T00:00:00", None),)


def test_deleted_widget_is_recreated_bound_to_the_kept_integration() -> None:
    account = plan_of(live_integration())
    assert account.action == "update"
    assert [(r.kind, r.action, r.id) for r in account.resources] == [
        ("integration", "in_sync", 10),
        ("widget", "create", None),
    ]
    fields = {d.field: d.after for d in account.resources[1].diff}
    assert fields["integration_id"] == 10


def test_widget_drift_is_updated_in_place() -> None:
    account = plan_of(live_integration(), widgets=(live_widget(context="customer", order=7),))
    resource = account.resources[1]
    assert (resource.action, resource.id) == ("update", 20)
    assert resource.diff == (FieldDiff("context", "customer", "ticket"), FieldDiff("order", 7, 0))


def test_extra_duplicate_keeps_the_lowest_id_and_deletes_the_rest() -> None:
    account = plan_of(
        live_integration(12),
        live_integration(10),
        widgets=(live_widget(20, 10), live_widget(21, 12), live_widget(22, 10)),
    )
    assert account.action == "update"
    assert [(r.kind, r.action, r.id) for r in account.resources] == [
        ("integration", "in_sync", 10),
        ("widget", "in_sync", 20),
        ("widget", "delete", 21),
        ("widget", "delete", 22),
        ("integration", "delete", 12),
    ]
    # the extra integration (with its widget riding along) and the extra widget
    assert account.delete_count == 2


def test_foreign_together_integration_is_left_alone_and_noted() -> None:
    foreign = {"id": 5, "name": "Together", "type": "http", "description": "by hand"}
    account = plan_of(foreign)
    assert account.action == "create"
    assert all(r.id != 5 for r in account.resources)
    assert account.notes and "integration 5" in account.notes[0]
    assert "left alone" in account.notes[0]


def test_disabled_account_deletes_widget_before_integration() -> None:
    foreign = {"id": 5, "name": "Together", "type": "http", "description": None}
    observation = Observation((live_integration(), foreign), (live_widget(),))
    account = plan_account(DOMAIN, None, observation)
    assert account.action == "delete"
    assert not account.wanted
    assert [(r.kind, r.action, r.id) for r in account.resources] == [
        ("widget", "delete", 20),
        ("integration", "delete", 10),
    ]
    assert account.delete_count == 1


def test_removed_file_with_nothing_left_is_in_sync() -> None:
    account = plan_account(DOMAIN, None, Observation((), ()))
    assert (account.action, account.resources, account.wanted) == ("in_sync", (), False)


def test_blocked_reasons_carry_a_message() -> None:
    for reason in (NOT_CONNECTED, RECONNECT_NEEDED, CREDENTIALS_REJECTED):
        account = blocked(DOMAIN, reason)
        assert account.action == "blocked"
        assert account.reason == reason
        assert account.message
        assert not account.has_changes


def test_observed_fingerprint_moves_with_any_observed_field() -> None:
    base = plan_of(live_integration(), widgets=(live_widget(),)).observed_fingerprint
    again = plan_of(live_integration(), widgets=(live_widget(),)).observed_fingerprint
    moved = plan_of(
        live_integration(updated_datetime="2026-05-05T00:00:00"), widgets=(live_widget(),)
    ).observed_fingerprint
    assert base == again
    assert base != moved
    assert base is not None and base.startswith("sha256:")


def test_plan_summary_and_exit_relevant_flags() -> None:
    plan: Plan = sorted_plan(
        [
            plan_account("b.gorgias.com", desired(), Observation((), ())),
            blocked("a.gorgias.com", CREDENTIALS_REJECTED),
        ]
    )
    assert [a.gorgias_account for a in plan.accounts] == ["a.gorgias.com", "b.gorgias.com"]
    assert plan.summary == {
        "accounts": 2,
        "create": 1,
        "update": 0,
        "delete": 0,
        "in_sync": 0,
        "blocked": 1,
    }
    assert plan.has_changes
    only_blocked = sorted_plan([blocked("a.gorgias.com", NOT_CONNECTED)])
    assert not only_blocked.has_changes
