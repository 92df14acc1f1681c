"""The resource-kind seam: a third kind plans and applies without any change to the planner,
the observer or the applier.

`RULE` is test-only: a "rule" bound to our integration (`integration_id`), with one field of
ours (`action`) whose desired value comes from the desired integration. It is declared here,
its calls go to `RuleGorgias` (the shared fake plus a rules table), and it reaches the code only
through `Reconciler.kinds`.
"""

from __future__ import annotations

import json
from typing import Any

from tests.builders import (
    DOMAIN,
    FakeGorgias,
    desired,
    live_integration,
    live_widget,
    make_reconciler,
)
from together_reconcile.gorgias.client import NotFound
from together_reconcile.reconcile.apply import run_apply
from together_reconcile.reconcile.kinds import INTEGRATION, KINDS, WIDGET, FieldDiff, Kind, Value
from together_reconcile.reconcile.plan import (
    DesiredResources,
    Observation,
    ResourcePlan,
    plan_account,
)
from together_reconcile.secrets import Keyring
from together_reconcile.store import Credential, Store


def rule_body(resources: DesiredResources, integration_id: int | None) -> dict[str, Any]:
    account = resources.integration["http"]["form"]["account_domain"]
    return {"integration_id": integration_id, "action": f"tag:{account}"}


RULE = Kind(
    name="rule",
    listed_as="rules",
    fields=(Value("integration_id"), Value("action")),
    desired=rule_body,
    fetch=lambda client, iid: client.list_rules(integration_id=iid),  # type: ignore[attr-defined]
    create=lambda client, body: client.create_rule(body),  # type: ignore[attr-defined]
    update=lambda client, id_, body: client.update_rule(id_, body),  # type: ignore[attr-defined]
    delete=lambda client, id_: client.delete_rule(id_),  # type: ignore[attr-defined]
    parent="integration",
)
WITH_RULES = (*KINDS, RULE)


class RuleGorgias(FakeGorgias):
    """The shared fake, plus rules."""

    def __init__(self) -> None:
        super().__init__()
        self.rules: dict[int, dict[str, Any]] = {}

    def list_rules(self, integration_id: int | None = None) -> list[dict[str, Any]]:
        return [r for r in self.rules.values() if r["integration_id"] == integration_id]

    def create_rule(self, body: Any) -> dict[str, Any]:
        self.writes.append("POST rule")
        return self._new(self.rules, body)

    def update_rule(self, rid: int, body: Any) -> dict[str, Any]:
        self.writes.append("PUT rule")
        self.rules[rid].update(json.loads(json.dumps(body)))
        return self.rules[rid]

    def delete_rule(self, rid: int) -> None:
        self.writes.append("DELETE rule")
        if self.rules.pop(rid, None) is None:
            raise NotFound(404, "gone", "DELETE", "/api/rules")


def test_the_planner_covers_a_third_kind_it_was_given() -> None:
    want = f"tag:{DOMAIN}"
    observation = Observation(
        (live_integration(10), live_integration(11)),
        (live_widget(20, 10),),
        {
            "rules": (
                {"id": 30, "integration_id": 10, "action": "tag:old"},
                {"id": 31, "integration_id": 11, "action": want},
            )
        },
    )
    account = plan_account(DOMAIN, desired(), observation, WITH_RULES)
    assert account.action == "update"
    assert account.resources == (
        ResourcePlan("integration", "in_sync", 10),
        ResourcePlan("widget", "in_sync", 20),
        ResourcePlan("rule", "update", 30, (FieldDiff("action", "tag:old", want),)),
        ResourcePlan("rule", "delete", 31, (FieldDiff("integration_id", 11, None),)),
        ResourcePlan("integration", "delete", 11),
    )
    # The rule goes with its extra integration: one delete for the cap, not two.
    assert account.delete_count == 1

    nothing = plan_account(DOMAIN, desired(), Observation((), ()), WITH_RULES)
    assert nothing.action == "create"
    assert [(r.kind, r.action) for r in nothing.resources] == [
        ("integration", "create"),
        ("widget", "create"),
        ("rule", "create"),
    ]
    assert nothing.resources[2].diff == (
        FieldDiff("integration_id", None, None),
        FieldDiff("action", None, want),
    )


def test_the_default_kinds_are_unchanged_by_a_third_one_elsewhere() -> None:
    observation = Observation((live_integration(10),), (live_widget(20, 10),))
    assert plan_account(DOMAIN, desired(), observation).action == "in_sync"
    assert KINDS == (INTEGRATION, WIDGET)


def test_a_third_kind_plans_and_applies_against_a_fake(store: Store, keyring: Keyring) -> None:
    fake = RuleGorgias()
    fakes = {DOMAIN: fake}
    store.put_credential(Credential("gorgias", DOMAIN, "token-acme"))

    def apply(accounts: dict[str, bool]) -> Any:
        reconciler = make_reconciler(keyring, fakes, accounts, store, WITH_RULES)
        plan, report = run_apply(
            reconciler, store, saved=None, confirm=lambda _plan: True, lock_timeout_s=5
        )
        assert report is not None and report.exit_code == 0, report.render()
        return plan

    apply({"acme": True})
    assert fake.writes == ["POST integration", "POST widget", "POST rule"]
    (integration,) = fake.integrations.values()
    (rule,) = fake.rules.values()
    assert (rule["integration_id"], rule["action"]) == (integration["id"], f"tag:{DOMAIN}")
    audit = [(e.action, e.kind) for e in store.audit_log(DOMAIN)]
    assert audit == [("create", "integration"), ("create", "widget"), ("create", "rule")]

    # Drift is repaired in place; an in-sync account makes no write.
    fake.writes.clear()
    rule["action"] = "tag:someone-else"
    apply({"acme": True})
    assert fake.writes == ["PUT rule"]
    assert rule["action"] == f"tag:{DOMAIN}"
    fake.writes.clear()
    plan = apply({"acme": True})
    assert plan.accounts[0].action == "in_sync" and fake.writes == []

    # The account's file goes: children before their parent.
    apply({"acme": False})
    assert fake.writes == ["DELETE rule", "DELETE widget", "DELETE integration"]
    assert fake.rules == {} and fake.integrations == {}
