"""Renderings of a plan: the SPEC JSON shape, text, Markdown — never a secret."""

from __future__ import annotations

import json

from tests.builders import DOMAIN, TOKEN, desired, live_integration, live_widget
from together_reconcile.gorgias.reasons import (
    NOT_CONNECTED,
)
from together_reconcile.reconcile.plan import (
    Observation,
    Plan,
    blocked,
    plan_account,
    sorted_plan,
)
from together_reconcile.reconcile.render import (
    render_json,
    render_markdown,
    render_text,
    saved_plan_document,
    to_json,
)
from together_reconcile.secrets import fingerprint


def sample_plan() -> Plan:
    drifted = live_integration()
    drifted["http"]["headers"]["X-Together-Token"] = "old-secret-token"
    return sorted_plan(
        [
            plan_account(DOMAIN, desired(), Observation((drifted,), (live_widget(),))),
            plan_account("new.gorgias.com", desired(), Observation((), ())),
            blocked("wait.gorgias.com", NOT_CONNECTED),
            plan_account(
                "gone.gorgias.com", None, Observation((live_integration(),), (live_widget(),))
            ),
        ]
    )


def test_json_document_has_exactly_the_spec_shape() -> None:
    document = json.loads(render_json(sample_plan()))
    assert set(document) == {"accounts", "summary"}
    assert document["summary"] == {
        "accounts": 4,
        "create": 1,
        "update": 1,
        "delete": 1,
        "in_sync": 0,
        "blocked": 1,
    }
    by_domain = {a["gorgias_account"]: a for a in document["accounts"]}
    acme = by_domain[DOMAIN]
    assert set(acme) == {"gorgias_account", "action", "resources"}
    assert acme["action"] == "update"
    assert acme["resources"] == [
        {
            "kind": "integration",
            "action": "update",
            "id": 10,
            "diff": [
                {
                    "field": "http.headers.X-Together-Token",
                    "before": fingerprint("old-secret-token"),
                    "after": fingerprint(TOKEN),
                }
            ],
        },
        {"kind": "widget", "action": "in_sync", "id": 20, "diff": []},
    ]
    waiting = by_domain["wait.gorgias.com"]
    assert waiting["action"] == "blocked"
    assert waiting["reason"] == "not_connected"
    assert waiting["resources"] == []
    gone = by_domain["gone.gorgias.com"]
    assert [(r["kind"], r["action"], r["id"]) for r in gone["resources"]] == [
        ("widget", "delete", 20),
        ("integration", "delete", 10),
    ]
    created = by_domain["new.gorgias.com"]
    assert [(r["kind"], r["action"], r["id"]) for r in created["resources"]] == [
        ("integration", "create", None),
        ("widget", "create", None),
    ]


def test_saved_plan_adds_observed_fingerprints() -> None:
    plan = sample_plan()
    document = saved_plan_document(plan)
    assert document["accounts"] == to_json(plan)["accounts"]
    assert set(document["observed"]) == {a.gorgias_account for a in plan.accounts}
    assert document["observed"][DOMAIN].startswith("sha256:")
    assert document["observed"]["wait.gorgias.com"] is None


def test_no_rendering_contains_a_secret() -> None:
    plan = sample_plan()
    outputs = [
        render_json(plan),
        json.dumps(saved_plan_document(plan)),
        render_text(plan, colour=True, show_in_sync=True),
        render_text(plan),
        render_markdown(plan),
        repr(plan),
    ]
    for output in outputs:
        assert TOKEN not in output
        assert "old-secret-token" not in output
    assert fingerprint(TOKEN) in outputs[2]


def test_text_is_terraform_like_and_colour_is_optional() -> None:
    plain = render_text(sample_plan())
    assert "\x1b[" not in plain
    assert "+ new.gorgias.com: create" in plain
    assert "~ acme.gorgias.com: update" in plain
    assert "- gone.gorgias.com: delete" in plain
    assert "! wait.gorgias.com: blocked (not_connected:" in plain
    assert (
        f'http.headers.X-Together-Token: "{fingerprint("old-secret-token")}" → '
        f'"{fingerprint(TOKEN)}"' in plain
    )
    assert plain.rstrip().endswith(
        "Plan: 1 to create, 1 to update, 1 to delete, 0 in sync, 1 blocked (4 accounts)."
    )
    assert "\x1b[32m" in render_text(sample_plan(), colour=True)


def test_markdown_has_a_summary_table_then_details() -> None:
    markdown = render_markdown(sample_plan())
    assert "| 1 | 1 | 1 | 0 | 1 | 4 |" in markdown
    assert "| `wait.gorgias.com` | blocked | not_connected |" in markdown
    assert "<summary><code>acme.gorgias.com</code>: update</summary>" in markdown
    in_sync = sorted_plan(
        [plan_account(DOMAIN, desired(), Observation((live_integration(),), (live_widget(),)))]
    )
    assert "No changes: every account is in sync." in render_markdown(in_sync)
