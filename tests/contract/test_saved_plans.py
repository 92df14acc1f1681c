"""SPEC "Precise rules" — Saved plans: `plan --out FILE` is the `--json` document plus observed
fingerprints; `apply FILE --yes` refuses a stale plan (exit 3, nothing written), otherwise it
applies exactly the saved changes."""

from __future__ import annotations

import json

import pytest

from tests.contract.conftest import KNOWN_SECRETS, World, by_account, unique


@pytest.fixture(scope="module")
def subs(module_world: World) -> dict[str, str]:
    roles = {role: unique(f"s{role}") for role in ("kept", "saved", "later")}
    module_world.write_account(roles["kept"])
    module_world.connect(*roles.values())
    assert module_world.cli("apply", "--yes").code == 0
    module_world.write_account(roles["saved"])
    module_world.write_account(roles["later"])
    return roles


def test_plan_out_file_is_the_json_document_plus_fingerprints(
    module_world: World, subs: dict[str, str]
) -> None:
    out = module_world.root / "same.json"
    done = module_world.cli("plan", "--json", "--out", str(out))
    assert done.code == 0, done.output
    saved = json.loads(out.read_text())
    printed = done.json()
    fingerprints = saved.pop("observed")
    saved.pop("format", None)  # the saved file's format version, for apply to check
    assert saved == printed
    assert set(fingerprints) == set(by_account(printed))
    assert all(isinstance(value, str) and value for value in fingerprints.values())


def test_plan_out_file_contains_no_secret(module_world: World, subs: dict[str, str]) -> None:
    out = module_world.root / "nosecret.json"
    assert module_world.cli("plan", "--out", str(out)).code == 0
    text = out.read_text()
    assert KNOWN_SECRETS
    assert [s for s in KNOWN_SECRETS if s in text] == []


def test_saved_plan_applies_exactly_the_saved_changes(
    module_world: World, subs: dict[str, str]
) -> None:
    world = module_world
    out = world.root / "one.json"
    assert (
        world.cli("plan", "--out", str(out), "--account", f"{subs['saved']}.gorgias.com").code == 0
    )
    done = world.cli("apply", str(out), "--yes")
    assert done.code == 0, done.output
    assert len(world.ours(subs["saved"])) == 1
    assert world.ours(subs["later"]) == [], "apply did more than the saved plan"


def test_stale_saved_plan_exits_3_and_writes_nothing(
    module_world: World, subs: dict[str, str]
) -> None:
    world, sub = module_world, subs["kept"]
    control = world.sandbox.control
    (integration,) = world.ours(sub)
    control.edit_integration(sub, integration["id"], {"name": "Renamed by hand"})
    out = world.root / "stale.json"
    assert world.cli("plan", "--out", str(out), "--account", f"{sub}.gorgias.com").code == 0
    control.edit_integration(
        sub,
        integration["id"],
        {"description": "edited again " + (integration.get("description") or "")},
    )
    control.clear_requests()
    refused = world.cli("apply", str(out), "--yes")
    assert refused.code == 3, refused.output
    assert "plan is stale" in refused.output
    assert world.writes(sub) == []
    (after,) = world.ours(sub)
    assert after["name"] == "Renamed by hand"


def test_apply_refuses_a_file_that_is_not_a_saved_plan(module_world: World) -> None:
    bad = module_world.root / "not-a-plan.json"
    bad.write_text("hello")
    done = module_world.cli("apply", str(bad), "--yes")
    assert done.code == 1
    assert "plan --out" in done.output
