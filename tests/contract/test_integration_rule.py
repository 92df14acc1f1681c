"""SPEC "Precise rules" — Integration: ticket-created and ticket-updated on, everything else
off; a trigger left out counts as off."""

from __future__ import annotations

from tests.contract.conftest import PUBLIC_URL, Scenario


def test_integration_triggers_created_and_updated_on_everything_else_off(
    scenario: Scenario,
) -> None:
    (integration,) = scenario.world.ours(scenario.subs["sync"])
    triggers = integration["http"]["triggers"]
    on = {name for name, value in triggers.items() if value}
    assert on == {"ticket-created", "ticket-updated"}


def test_integration_trigger_left_out_counts_as_off(scenario: Scenario) -> None:
    """The drifted account set `ticket-deleted: false` explicitly: no diff for it."""
    diff = next(r for r in scenario.account("drift")["resources"] if r["kind"] == "integration")
    fields = {d["field"] for d in diff["diff"]}
    assert "http.triggers.ticket-deleted" not in fields
    turned_on = next(
        d for d in diff["diff"] if d["field"] == "http.triggers.ticket-message-created"
    )
    assert (turned_on["before"], turned_on["after"]) == (True, False)


def test_integration_calls_the_public_url_with_the_event_form(scenario: Scenario) -> None:
    (integration,) = scenario.world.ours(scenario.subs["sync"])
    http = integration["http"]
    assert http["url"] == f"{PUBLIC_URL}/gorgias/events"
    assert http["method"] == "POST"
    assert http["form"] == {
        "ticket_id": "{{ticket.id}}",
        "account_domain": f"{scenario.subs['sync']}.gorgias.com",
        "customer_email": "{{ticket.customer.email}}",
    }
    assert "X-Together-Token" in http["headers"]
