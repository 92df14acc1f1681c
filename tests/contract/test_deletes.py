"""SPEC "Precise rules" — Deletes: repairs keep ids (PUT in place); `--max-deletes` (default 3)
counts accounts losing their integration and widget plus each extra duplicate; over it, apply
changes nothing and exits 3. Also: a removed file is treated like `enabled: false`, and only
our objects are ever touched."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract.conftest import World, unique


@pytest.fixture(scope="module")
def applied(module_world: World) -> dict[str, str]:
    subs = {role: unique(f"d{role}") for role in ("repair", "dup1", "dup2", "rm1", "rm2")}
    for sub in subs.values():
        module_world.write_account(sub)
    module_world.connect(*subs.values())
    done = module_world.cli("apply", "--yes")
    assert done.code == 0, done.output
    return subs


def duplicate(world: World, sub: str) -> dict[str, Any]:
    (kept,) = world.ours(sub)
    copy = {k: v for k, v in kept.items() if k not in ("id", "uri")}
    return world.sandbox.control.insert_integration(sub, copy)


def test_deletes_repairs_keep_ids_with_put_in_place(
    module_world: World, applied: dict[str, str]
) -> None:
    world, sub = module_world, applied["repair"]
    control = world.sandbox.control
    (integration,) = world.ours(sub)
    (widget,) = control.widgets(sub)
    control.edit_integration(sub, integration["id"], {"http": {"url": "https://x.example.com"}})
    control.edit_widget(sub, widget["id"], {"order": 9})
    control.clear_requests()
    done = world.cli("apply", "--yes")
    assert done.code == 0, done.output
    writes = {(r["method"], r["path"].rstrip("/")) for r in world.writes(sub)}
    assert writes, "nothing was repaired"
    assert {method for method, _ in writes} == {"PUT"}
    (after,) = world.ours(sub)
    (widget_after,) = control.widgets(sub)
    assert (after["id"], widget_after["id"]) == (integration["id"], widget["id"])
    assert after["http"]["url"].endswith("/gorgias/events")


def test_deletes_over_the_default_cap_of_3_change_nothing_and_exit_3(
    module_world: World, applied: dict[str, str]
) -> None:
    """2 accounts removed + 2 extra duplicates = 4 deletes > 3."""
    world = module_world
    subs = [applied[r] for r in ("dup1", "dup2", "rm1", "rm2")]
    extra = [duplicate(world, applied["dup1"]), duplicate(world, applied["dup2"])]
    foreign = world.sandbox.control.insert_integration(
        applied["rm1"], {"name": "Together", "type": "http", "description": "made by hand"}
    )
    for role in ("rm1", "rm2"):
        (world.accounts_dir / f"{applied[role]}.yaml").unlink()
    world.sandbox.control.clear_requests()
    refused = world.cli("apply", "--yes")
    assert refused.code == 3, refused.output
    assert "over the cap of 3" in refused.output
    assert world.writes(*subs) == []
    # duplicates count: 4 deletes are over a cap of 3 even though only 2 accounts go
    also_refused = world.cli("apply", "--yes", "--max-deletes", "3")
    assert also_refused.code == 3
    assert world.writes(*subs) == []
    # one duplicate fewer: 3 deletes, within the default cap
    world.sandbox.control.remove_integration(applied["dup2"], extra[1]["id"])
    done = world.cli("apply", "--yes")
    assert done.code == 0, done.output
    assert [i["id"] for i in world.ours(applied["dup1"])] != [extra[0]["id"]]
    assert len(world.ours(applied["dup1"])) == 1
    # removed files are treated like enabled: false; the foreign object stays
    assert world.ours(applied["rm1"]) == [] and world.ours(applied["rm2"]) == []
    assert world.sandbox.control.widgets(applied["rm2"]) == []
    assert [i["id"] for i in world.sandbox.control.integrations(applied["rm1"])] == [foreign["id"]]


def test_deletes_max_deletes_raises_the_cap(world: World) -> None:
    subs = [unique("cap") for _ in range(4)]
    for sub in subs:
        world.write_account(sub)
    world.connect(*subs)
    assert world.cli("apply", "--yes").code == 0
    for sub in subs:
        world.write_account(sub, "enabled: false\n")
    assert world.cli("apply", "--yes").code == 3
    done = world.cli("apply", "--yes", "--max-deletes", "4", "--concurrency", "2")
    assert done.code == 0, done.output
    assert all(world.ours(sub) == [] for sub in subs)
