"""SPEC "Precise rules" — Keys: Fernet-format entries; a malformed one is named by position."""

from __future__ import annotations

import json
from pathlib import Path

from tests.contract.conftest import World, remember_secret, run_cli
from together_reconcile.secrets import generate_key

MALFORMED = "this-is-not-a-fernet-key-but-a-damaged-one"


def test_keys_malformed_entry_names_its_position_not_its_value(tmp_path: Path) -> None:
    good = generate_key()
    remember_secret(good, MALFORMED)
    done = run_cli(
        "credentials",
        "put",
        "shopify",
        "acme.myshopify.com",
        env={
            "TOGETHER_SECRET_KEYS": f"{good},{MALFORMED}",
            "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/s.db",
        },
        stdin=json.dumps({"access_token": "shpat_x"}),
    )
    assert done.code == 1
    assert "entry 2 of TOGETHER_SECRET_KEYS" in done.output
    assert MALFORMED not in done.output
    assert not (tmp_path / "s.db").exists()


def test_keys_malformed_entry_stops_plan_naming_its_position(world: World) -> None:
    world.write_account("acme")
    short = generate_key()[:20]
    remember_secret(short)
    done = world.cli("plan", TOGETHER_SECRET_KEYS=f"{short},{generate_key()}")
    assert done.code == 1
    assert "entry 1 of TOGETHER_SECRET_KEYS" in done.output
    assert short not in done.output


def test_keys_malformed_entry_stops_serve_naming_its_position(world: World) -> None:
    world.write_account("acme")
    remember_secret(MALFORMED)
    done = world.cli("serve", "--port", "0", TOGETHER_SECRET_KEYS=MALFORMED)
    assert done.code == 1
    assert "entry 1 of TOGETHER_SECRET_KEYS" in done.output
    assert MALFORMED not in done.output


def test_keys_keygen_output_is_accepted_as_a_key(tmp_path: Path) -> None:
    key = run_cli("keygen").stdout.strip()  # printing it is keygen's job
    done = run_cli(
        "credentials",
        "put",
        "shopify",
        "acme.myshopify.com",
        env={"TOGETHER_SECRET_KEYS": key, "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/s.db"},
        stdin=json.dumps({"access_token": "shpat_y"}),
    )
    assert done.code == 0, done.output
