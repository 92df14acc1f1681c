"""The pure diff: the outcomes the first plan tests left unasserted (issue 16).

Each test states the exact diff (field, before, after), the exact resources, or the exact
count, so a renamed key, a dropped branch or a flipped comparison in `plan` fails here.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from together_reconcile.config import Account, AccountFile
from together_reconcile.gorgias.reasons import CREDENTIALS_REJECTED, GORGIAS_UNAVAILABLE
from together_reconcile.reconcile.desired import desired_integration, desired_widget
from together_reconcile.reconcile.plan import (
    AccountPlan,
    DesiredResources,
    FieldDiff,
    Observation,
    ResourcePlan,
    blocked,
    desired_fingerprint,
    integration_diff,
    observed_fingerprint,
    plan_account,
    sorted_plan,
    widget_diff,
)
from together_reconcile.secrets import fingerprint

DOMAIN = "acme.gorgias.com"
TOKEN = "v1.token-for-acme"
URL = "https://t.example.com/gorgias/events"
ACCOUNT = Account(shopify_store="acme.myshopify.com", gorgias_account=DOMAIN)
FILE = AccountFile(ACCOUNT, Path("accounts/acme.yaml"))
FORM = {
    "ticket_id": "{{ticket.id}}",
    "account_domain": DOMAIN,
    "customer_email": "{{ticket.customer.email}}",
}


def desired(
    token: str = TOKEN, public_url: str = "https://t.example.com", account: Account = ACCOUNT
) -> DesiredResources:
    body = desired_integration(
        AccountFile(account, FILE.path), public_url=public_url, event_token=token, commit="c1"
    )
    return DesiredResources(body, lambda iid: desired_widget(account, iid))


def live_integration(iid: int = 10, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(dict(desired().integration))
    body.update(id=iid, deactivated_datetime=None, updated_datetime="2026-01-02T00:00:00")
    body["http"].update(id=900 + iid)
    body.update(changes)
    return body


def live_widget(wid: int = 20, iid: int = 10, **changes: Any) -> dict[str, Any]:
    body = desired_widget(ACCOUNT, iid)
    body.update(id=wid, deactivated_datetime=None)
    body.update(changes)
    return body


def plan_of(*integrations: dict[str, Any], widgets: tuple[dict[str, Any], ...] = ()) -> Any:
    return plan_account(DOMAIN, desired(), Observation(integrations, widgets))


# -- integration diff -------------------------------------------------------------------------


def test_create_diff_lists_every_managed_field_in_order() -> None:
    assert integration_diff(desired().integration, None) == (
        FieldDiff("name", None, "Together"),
        FieldDiff("type", None, "http"),
        FieldDiff("description", None, desired().integration["description"]),
        FieldDiff("http.url", None, URL),
        FieldDiff("http.method", None, "POST"),
        FieldDiff("http.request_content_type", None, "application/json"),
        FieldDiff("http.response_content_type", None, "application/json"),
        FieldDiff("http.headers.X-Together-Token", None, fingerprint(TOKEN)),
        FieldDiff("http.form.ticket_id", None, "{{ticket.id}}"),
        FieldDiff("http.form.account_domain", None, DOMAIN),
        FieldDiff("http.form.customer_email", None, "{{ticket.customer.email}}"),
        FieldDiff("http.triggers.ticket-created", None, True),
        FieldDiff("http.triggers.ticket-updated", None, True),
    )


def test_create_diff_leaves_out_triggers_that_are_off() -> None:
    body = copy.deepcopy(dict(desired().integration))
    body["http"]["triggers"]["ticket-message-created"] = False
    fields = [d.field for d in integration_diff(body, None)]
    assert "http.triggers.ticket-message-created" not in fields
    assert fields[-2:] == ["http.triggers.ticket-created", "http.triggers.ticket-updated"]


def test_name_type_and_description_show_before_and_after() -> None:
    integration = live_integration(name="Together (old)", type="custom")
    integration["description"] = "[managed-by: together-reconcile] edited by hand"
    (resource, _widget) = plan_of(integration, widgets=(live_widget(),)).resources
    assert resource.diff == (
        FieldDiff("name", "Together (old)", "Together"),
        FieldDiff("type", "custom", "http"),
        FieldDiff(
            "description",
            "[managed-by: together-reconcile] edited by hand",
            desired().integration["description"],
        ),
    )


def test_http_fields_show_before_and_after() -> None:
    integration = live_integration()
    integration["http"].update(
        method="GET", request_content_type="text/plain", response_content_type=None
    )
    assert integration_diff(desired().integration, integration) == (
        FieldDiff("http.method", "GET", "POST"),
        FieldDiff("http.request_content_type", "text/plain", "application/json"),
        FieldDiff("http.response_content_type", None, "application/json"),
    )


def test_form_is_diffed_key_by_key() -> None:
    integration = live_integration()
    integration["http"]["form"] = {
        "ticket_id": "{{ticket.id}}",
        "account_domain": "other.gorgias.com",
        "added_by_hand": "x",
    }
    assert integration_diff(desired().integration, integration) == (
        FieldDiff("http.form.account_domain", "other.gorgias.com", DOMAIN),
        FieldDiff("http.form.customer_email", None, "{{ticket.customer.email}}"),
        FieldDiff("http.form.added_by_hand", "x", None),
    )


def test_a_form_that_is_not_an_object_is_one_whole_field() -> None:
    integration = live_integration()
    integration["http"]["form"] = "ticket_id={{ticket.id}}"
    assert integration_diff(desired().integration, integration) == (
        FieldDiff("http.form", "ticket_id={{ticket.id}}", FORM),
    )
    integration["http"].pop("form")
    assert integration_diff(desired().integration, integration) == (
        FieldDiff("http.form", None, FORM),
    )


def test_headers_added_removed_and_non_string_show_fingerprints() -> None:
    integration = live_integration()
    integration["http"]["headers"] = {"X-Extra": "by-hand", "X-Number": 7}
    assert integration_diff(desired().integration, integration) == (
        FieldDiff("http.headers.X-Together-Token", None, fingerprint(TOKEN)),
        FieldDiff("http.headers.X-Extra", fingerprint("by-hand"), None),
        FieldDiff("http.headers.X-Number", fingerprint("7"), None),
    )


def test_triggers_off_missing_or_extra() -> None:
    integration = live_integration()
    integration["http"]["triggers"] = {"ticket-created": True, "ticket-message-created": 1}
    assert integration_diff(desired().integration, integration) == (
        FieldDiff("http.triggers.ticket-updated", False, True),
        FieldDiff("http.triggers.ticket-message-created", True, False),
    )


def test_http_missing_altogether_is_every_http_field() -> None:
    integration = live_integration()
    integration.pop("http")
    fields = [(d.field, d.before) for d in integration_diff(desired().integration, integration)]
    assert fields == [
        ("http.url", None),
        ("http.method", None),
        ("http.request_content_type", None),
        ("http.response_content_type", None),
        ("http.headers.X-Together-Token", None),
        ("http.form", None),
        ("http.triggers.ticket-created", False),
        ("http.triggers.ticket-updated", False),
    ]


def test_a_commit_alone_is_no_change_but_other_description_text_is() -> None:
    integration = live_integration()
    integration["description"] = integration["description"].replace("commit c1", "commit zz9")
    assert integration_diff(desired().integration, integration) == ()
    integration["description"] = integration["description"].replace("overwritten", "kept")
    (change,) = integration_diff(desired().integration, integration)
    assert change.field == "description"


# -- widget diff ------------------------------------------------------------------------------


def test_widget_create_diff_lists_every_field_including_the_template() -> None:
    want = desired_widget(ACCOUNT, None)
    assert widget_diff(want, None) == (
        FieldDiff("type", None, "http"),
        FieldDiff("context", None, "ticket"),
        FieldDiff("order", None, 0),
        FieldDiff("integration_id", None, None),
        FieldDiff("template", None, want["template"]),
    )


def test_widget_template_drift_shows_the_whole_template_before_and_after() -> None:
    old = copy.deepcopy(desired_widget(ACCOUNT, 10)["template"])
    old["widgets"][0]["title"] = "Renamed by hand"
    account = plan_of(live_integration(), widgets=(live_widget(template=old),))
    resource = account.resources[1]
    assert (resource.kind, resource.action, resource.id) == ("widget", "update", 20)
    assert resource.diff == (FieldDiff("template", old, desired_widget(ACCOUNT, 10)["template"]),)
    assert account.action == "update"


def test_widget_bound_to_another_id_type_context_order() -> None:
    observed = live_widget(type="custom", context="customer", order=4)
    assert widget_diff(desired_widget(ACCOUNT, 10), observed) == (
        FieldDiff("type", "custom", "http"),
        FieldDiff("context", "customer", "ticket"),
        FieldDiff("order", 4, 0),
    )


def test_deactivated_widget_is_updated_with_its_deactivation_cleared() -> None:
    widget = live_widget(deactivated_datetime="2026-04-01T00:00:00")
    account = plan_of(live_integration(), widgets=(widget,))
    assert account.action == "update"
    assert [(r.kind, r.action, r.id) for r in account.resources] == [
        ("integration", "in_sync", 10),
        ("widget", "update", 20),
    ]
    assert account.resources[1].diff == (
        FieldDiff("deactivated_datetime", "2026-04-01T00:00:00", None),
    )


def test_deactivated_and_drifted_widget_lists_the_drift_first() -> None:
    widget = live_widget(order=9, deactivated_datetime="2026-04-01T00:00:00")
    assert widget_diff(desired_widget(ACCOUNT, 10), widget) == (
        FieldDiff("order", 9, 0),
        FieldDiff("deactivated_datetime", "2026-04-01T00:00:00", None),
    )


def test_a_widget_without_deactivation_field_is_not_deactivated() -> None:
    widget = live_widget()
    widget.pop("deactivated_datetime")
    assert widget_diff(desired_widget(ACCOUNT, 10), widget) == ()


# -- fingerprints -----------------------------------------------------------------------------


def observed(*integrations: dict[str, Any], widgets: tuple[dict[str, Any], ...] = ()) -> str:
    return observed_fingerprint(Observation(integrations, widgets))


def test_observed_fingerprint_changes_when_only_the_http_url_changes() -> None:
    moved = live_integration()
    moved["http"]["url"] = "https://elsewhere.example.com/gorgias/events"
    assert observed(live_integration()) != observed(moved)


def test_observed_fingerprint_changes_when_only_the_token_changes() -> None:
    rotated = live_integration()
    rotated["http"]["headers"]["X-Together-Token"] = "v1.another-token"
    assert observed(live_integration()) != observed(rotated)


def test_observed_fingerprint_ignores_foreign_integrations_and_order() -> None:
    foreign = {"id": 5, "name": "Together", "description": "by hand", "http": {"url": "x"}}
    base = observed(live_integration(10), live_integration(12), widgets=(live_widget(20),))
    assert base == observed(
        foreign, live_integration(12), live_integration(10), widgets=(live_widget(20),)
    )
    assert base != observed(live_integration(10), live_integration(12))
    assert base != observed(live_integration(10), widgets=(live_widget(20),))


def test_observed_fingerprint_of_a_widget_changes_with_any_field() -> None:
    assert observed(widgets=(live_widget(),)) != observed(widgets=(live_widget(order=1),))
    assert observed() == observed()
    assert observed().startswith("sha256:") and len(observed()) == len("sha256:") + 64


def test_desired_fingerprint_moves_with_token_url_widget_and_id() -> None:
    base = desired_fingerprint(desired(), 10)
    assert base == desired_fingerprint(desired(), 10)
    assert base.startswith("sha256:") and len(base) == len("sha256:") + 64
    assert base != desired_fingerprint(desired(token="v1.other"), 10)
    assert base != desired_fingerprint(desired(public_url="https://u.example.com"), 10)
    assert base != desired_fingerprint(desired(), 11)
    assert base != desired_fingerprint(desired(), None)
    retitled = Account.model_validate(
        {"shopify_store": "acme.myshopify.com", "gorgias_account": DOMAIN, "widget": {"order": 1}}
    )
    assert base != desired_fingerprint(desired(account=retitled), 10)


# -- deletes and the cap ------------------------------------------------------------------------


def test_delete_cap_counts_an_extra_integration_once_and_each_extra_widget() -> None:
    account = plan_of(
        live_integration(10),
        live_integration(12),
        widgets=(
            live_widget(20, 10),
            live_widget(21, 12),
            live_widget(23, 12),
            live_widget(22, 10),
        ),
    )
    assert [(r.kind, r.action, r.id) for r in account.resources] == [
        ("integration", "in_sync", 10),
        ("widget", "in_sync", 20),
        ("widget", "delete", 21),
        ("widget", "delete", 23),
        ("widget", "delete", 22),
        ("integration", "delete", 12),
    ]
    assert [r.diff for r in account.resources[2:5]] == [
        (FieldDiff("integration_id", 12, None),),
        (FieldDiff("integration_id", 12, None),),
        (FieldDiff("integration_id", 10, None),),
    ]
    # integration 12 (its widgets 21 and 23 ride along) + the extra widget 22
    assert account.delete_count == 2


def test_delete_cap_counts_each_extra_widget_on_the_kept_integration() -> None:
    account = plan_of(
        live_integration(10), widgets=(live_widget(20), live_widget(21), live_widget(22))
    )
    assert [(r.action, r.id) for r in account.resources] == [
        ("in_sync", 10),
        ("in_sync", 20),
        ("delete", 21),
        ("delete", 22),
    ]
    assert account.action == "update"
    assert account.delete_count == 2


def test_delete_cap_counts_two_extra_integrations_as_two() -> None:
    account = plan_of(live_integration(10), live_integration(11), live_integration(12))
    assert account.delete_count == 2
    assert account.resources[-2:] == (
        ResourcePlan("integration", "delete", 11),
        ResourcePlan("integration", "delete", 12),
    )


def test_a_widget_bound_to_no_deleted_integration_counts_on_its_own() -> None:
    plan = AccountPlan(
        DOMAIN,
        "update",
        (
            ResourcePlan("integration", "in_sync", 10),
            ResourcePlan("widget", "delete", 21, (FieldDiff("integration_id", 10, None),)),
            ResourcePlan("widget", "delete", 22, (FieldDiff("order", 3, None),)),
            ResourcePlan("integration", "update", 12),
        ),
    )
    assert plan.delete_count == 2


def test_a_whole_account_delete_counts_once_and_totals_add_up() -> None:
    gone = plan_account(
        DOMAIN,
        None,
        Observation(
            (live_integration(10), live_integration(12)),
            (live_widget(20, 10), live_widget(21, 12)),
        ),
    )
    assert gone.action == "delete"
    assert [(r.kind, r.action, r.id) for r in gone.resources] == [
        ("widget", "delete", 20),
        ("widget", "delete", 21),
        ("integration", "delete", 10),
        ("integration", "delete", 12),
    ]
    assert gone.delete_count == 1
    extra = plan_of(live_integration(10), live_integration(12))
    plan = sorted_plan([extra, gone, blocked("a.gorgias.com", CREDENTIALS_REJECTED)])
    assert plan.delete_count == 2
    assert plan.account(DOMAIN) is extra
    assert plan.account("zzz.gorgias.com") is None


# -- kept resources, notes, blocked -------------------------------------------------------------


def test_resource_is_the_kept_one_never_a_delete() -> None:
    account = plan_of(
        live_integration(12),
        live_integration(10),
        widgets=(live_widget(21, 12), live_widget(20, 10), live_widget(22, 10)),
    )
    assert account.resource("integration") == account.resources[0]
    assert account.resource("integration").id == 10  # type: ignore[union-attr]
    assert account.resource("widget") == account.resources[1]
    assert account.resource("widget").id == 20  # type: ignore[union-attr]
    gone = plan_account(DOMAIN, None, Observation((live_integration(10),), (live_widget(),)))
    assert gone.resource("integration") is None
    assert gone.resource("widget") is None
    created = plan_of()
    assert created.resource("widget") == ResourcePlan(
        "widget", "create", None, widget_diff(desired_widget(ACCOUNT, None), None)
    )


def test_kept_integration_is_the_lowest_integer_id() -> None:
    odd = live_integration(3, id="3")
    account = plan_of(odd, live_integration(10))
    assert account.resource("integration").id == 10  # type: ignore[union-attr]
    assert account.resources[-1] == ResourcePlan("integration", "delete", "3")


def test_foreign_together_notes_match_name_case_and_spaces() -> None:
    foreign = (
        {"id": 5, "name": "  TOGETHER ", "description": "by hand"},
        {"id": 6, "name": "Together shop", "description": None},
        {"id": 7, "description": "no name"},
    )
    account = plan_of(*foreign, live_integration(), widgets=(live_widget(),))
    assert account.action == "in_sync"
    assert account.notes == (
        'integration 5 is named "Together" but was not created by together-reconcile '
        "(no ownership marker): left alone",
    )
    gone = plan_account(DOMAIN, None, Observation(foreign, ()))
    assert (gone.action, gone.resources, len(gone.notes)) == ("in_sync", (), 1)


def test_reactivation_with_a_drift_keeps_both_in_the_diff() -> None:
    integration = live_integration(deactivated_datetime="2026-03-01T00:00:00")
    integration["http"]["url"] = "https://old.example.com/"
    account = plan_of(integration, widgets=(live_widget(),))
    assert account.resources[0] == ResourcePlan(
        "integration",
        "reactivate",
        10,
        (
            FieldDiff("http.url", "https://old.example.com/", URL),
            FieldDiff("deactivated_datetime", "2026-03-01T00:00:00", None),
        ),
    )
    assert account.has_changes


def test_blocked_messages_default_unknown_and_explicit() -> None:
    assert blocked(DOMAIN, GORGIAS_UNAVAILABLE).message == (
        "Gorgias did not answer (retries exhausted); run the plan again later"
    )
    assert blocked(DOMAIN, CREDENTIALS_REJECTED).message == (
        "Gorgias refused the stored credentials (401)"
    )
    assert blocked(DOMAIN, "strange_reason").message == "strange_reason"
    explicit = blocked(DOMAIN, GORGIAS_UNAVAILABLE, wanted=False, message="Gorgias said 500")
    assert (explicit.message, explicit.wanted, explicit.reason) == (
        "Gorgias said 500",
        False,
        GORGIAS_UNAVAILABLE,
    )
    assert blocked(DOMAIN, GORGIAS_UNAVAILABLE).wanted is True
    assert blocked(DOMAIN, GORGIAS_UNAVAILABLE).observed_fingerprint is None


def test_summary_counts_every_action() -> None:
    plan = sorted_plan(
        [
            plan_of(live_integration(), widgets=(live_widget(),)),
            plan_account("b.gorgias.com", desired(), Observation((live_integration(),), ())),
            plan_account("c.gorgias.com", None, Observation((live_integration(),), ())),
            plan_account("d.gorgias.com", desired(), Observation((), ())),
        ]
    )
    assert plan.summary == {
        "accounts": 4,
        "create": 1,
        "update": 1,
        "delete": 1,
        "in_sync": 1,
        "blocked": 0,
    }
    assert plan.has_changes
    assert [a.has_changes for a in plan.accounts] == [False, True, True, True]
    assert not sorted_plan([plan_of(live_integration(), widgets=(live_widget(),))]).has_changes


# -- found by the first `make mutation` run -----------------------------------------------------


def test_a_non_string_header_value_is_fingerprinted_whatever_its_key_order() -> None:
    want = copy.deepcopy(dict(desired().integration))
    want["http"]["headers"] = {"X-Together-Token": {"b": 1, "a": 2}}
    have = live_integration()
    have["http"]["headers"] = {"X-Together-Token": {"a": 2, "b": 1}}
    assert integration_diff(want, have) == ()
    have["http"]["headers"] = {"X-Together-Token": {"a": 2, "b": 3}}
    assert integration_diff(want, have) == (
        FieldDiff(
            "http.headers.X-Together-Token",
            fingerprint('{"a": 2, "b": 3}'),
            fingerprint('{"a": 2, "b": 1}'),
        ),
    )


def test_no_form_on_either_side_is_no_change() -> None:
    assert integration_diff({"http": {}}, {"http": {}}) == ()
    assert integration_diff({"http": {"form": None}}, {"http": {"form": "x"}}) == (
        FieldDiff("http.form", "x", None),
    )


def test_create_diff_skips_an_off_trigger_listed_before_the_on_ones() -> None:
    body = copy.deepcopy(dict(desired().integration))
    body["http"]["triggers"] = {"ticket-message-created": False, **body["http"]["triggers"]}
    triggers = [d for d in integration_diff(body, None) if d.field.startswith("http.triggers.")]
    assert triggers == [
        FieldDiff("http.triggers.ticket-created", None, True),
        FieldDiff("http.triggers.ticket-updated", None, True),
    ]


def test_every_plan_carries_the_observed_fingerprint() -> None:
    foreign = {"id": 5, "name": "Together", "description": "by hand"}
    for observation in (Observation((), ()), Observation((foreign,), ())):
        expected = observed_fingerprint(observation)
        assert plan_account(DOMAIN, desired(), observation).observed_fingerprint == expected
        assert plan_account(DOMAIN, None, observation).observed_fingerprint == expected
    mine = Observation((live_integration(),), (live_widget(),))
    assert plan_account(DOMAIN, None, mine).observed_fingerprint == observed_fingerprint(mine)


def test_an_observed_value_that_is_not_json_still_fingerprints() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    with_object = observed(live_integration(updated_datetime=when))
    assert with_object == observed(live_integration(updated_datetime=str(when)))
