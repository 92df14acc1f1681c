"""SPEC "Command line": every command row and its exit statuses (plan/apply rows live in
test_plan_json.py, test_deletes.py, test_saved_plans.py, test_blocked_reasons.py)."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.contract.conftest import REPO, World, remember_secret, run_cli, unique
from together_reconcile.secrets import generate_key


def creds_env(tmp_path: Path, keys: str) -> dict[str, str]:
    remember_secret(*keys.split(","))
    return {"TOGETHER_SECRET_KEYS": keys, "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/s.db"}


def test_python_dash_m_is_the_same_cli() -> None:
    done = run_cli("keygen", module=True)
    assert done.code == 0
    assert len(base64.urlsafe_b64decode(done.stdout.strip())) == 32


def test_usage_error_exits_1_not_2() -> None:
    """2 means "changes" under plan --detailed-exitcode; a usage error is an error: 1."""
    unknown_flag = run_cli("plan", "--no-such-flag")
    assert unknown_flag.code == 1, unknown_flag.output
    assert "no-such-flag" in unknown_flag.stderr
    bad_value = run_cli("apply", "--max-deletes", "many")
    assert bad_value.code == 1, bad_value.output
    unknown_command = run_cli("no-such-command")
    assert unknown_command.code == 1


def test_global_options_accounts_dir_and_state_url(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "acme.yaml").write_text("shopify_store: acme\ngorgias_account: acme.gorgias.com\n")
    done = run_cli("--accounts-dir", str(folder), "validate", cwd=tmp_path)
    assert done.code == 1 and "acme.yaml:1:" in done.stdout
    keys = generate_key()
    env = {"TOGETHER_SECRET_KEYS": keys}
    remember_secret(keys)
    stored = run_cli(
        "--state-url",
        f"sqlite:///{tmp_path}/given.db",
        "credentials",
        "put",
        "shopify",
        "acme.myshopify.com",
        env=env,
        stdin='{"access_token": "shpat_aaaaaaaa"}',
        cwd=tmp_path,
    )
    assert stored.code == 0, stored.output
    assert (tmp_path / "given.db").exists()


def test_credentials_put_gorgias_and_shopify_exit_0_and_never_print_the_token(
    tmp_path: Path,
) -> None:
    env = creds_env(tmp_path, generate_key())
    token, refresh = "gorgias-access-" + "ab12" * 8, "gorgias-refresh-" + "cd34" * 8
    remember_secret(token, refresh)
    gorgias = run_cli(
        "credentials",
        "put",
        "gorgias",
        "ACME.gorgias.com",
        env=env,
        stdin=json.dumps({"access_token": token, "refresh_token": refresh, "expires_in": 86400}),
    )
    assert gorgias.code == 0, gorgias.output
    assert "acme.gorgias.com" in gorgias.stdout
    shopify = run_cli(
        "credentials",
        "put",
        "shopify",
        "acme.myshopify.com",
        env=env,
        stdin=json.dumps({"access_token": "shpat_" + "ef56" * 8}),
    )
    assert shopify.code == 0, shopify.output
    remember_secret("shpat_" + "ef56" * 8)
    assert "shpat_" not in shopify.output


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        (("gorgias", "acme.gorgias.com"), "", "nothing on stdin"),
        (("gorgias", "acme.gorgias.com"), "{}", '"access_token" is missing'),
        (("gorgias", "acme"), '{"access_token": "x"}', "not a gorgias domain"),
        (("shopify", "acme.gorgias.com"), '{"access_token": "x"}', "shopify"),
    ],
)
def test_credentials_put_bad_input_exits_1_and_stores_nothing(
    tmp_path: Path, args: tuple[str, ...], stdin: str, words: str
) -> None:
    env = creds_env(tmp_path, generate_key())
    done = run_cli("credentials", "put", *args, env=env, stdin=stdin)
    assert done.code == 1
    assert words in done.output
    assert not (tmp_path / "s.db").exists()  # the input is checked before the store opens


def test_credentials_import_is_all_or_nothing_and_names_the_bad_line(tmp_path: Path) -> None:
    env = creds_env(tmp_path, generate_key())
    secret = "imported-" + "77" * 20
    remember_secret(secret)
    lines = [
        {"kind": "gorgias", "domain": "one.gorgias.com", "access_token": secret},
        {"kind": "shopify", "domain": "one.myshopify.com", "access_token": secret},
        {"kind": "shopify", "domain": "two.myshopify.com"},
    ]
    source = tmp_path / "tokens.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    refused = run_cli("credentials", "import", str(source), env=env)
    assert refused.code == 1
    assert "line 3" in refused.output
    assert run_cli("credentials", "list", env=env).stdout.strip().splitlines()[1:] == []
    source.write_text("\n".join(json.dumps(line) for line in lines[:2]) + "\n")
    done = run_cli("credentials", "import", "-", env=env, stdin=source.read_text())
    assert done.code == 0, done.output
    listed = run_cli("credentials", "list", env=env).stdout
    assert "one.gorgias.com" in listed and "one.myshopify.com" in listed


def test_credentials_list_shows_kind_domain_expiry_status_never_a_secret(tmp_path: Path) -> None:
    env = creds_env(tmp_path, generate_key())
    secret = "listed-" + "5a" * 20
    remember_secret(secret)
    rows = [
        {"kind": "gorgias", "domain": "soon.gorgias.com", "access_token": secret, "expires_in": 60},
        {"kind": "shopify", "domain": "fine.myshopify.com", "access_token": secret},
    ]
    stdin = "\n".join(json.dumps(r) for r in rows)
    assert run_cli("credentials", "import", "-", env=env, stdin=stdin).code == 0
    listed = run_cli("credentials", "list", env={"TOGETHER_STATE_URL": env["TOGETHER_STATE_URL"]})
    assert listed.code == 0, listed.output
    header, *body = listed.stdout.strip().splitlines()
    assert header.split() == ["KIND", "DOMAIN", "EXPIRES", "STATUS"]
    soon = next(line for line in body if "soon.gorgias.com" in line)
    fine = next(line for line in body if "fine.myshopify.com" in line)
    assert soon.split()[0] == "gorgias" and soon.rstrip().endswith("expires soon")
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", soon)
    assert fine.split()[0] == "shopify" and fine.rstrip().endswith("ok")
    assert secret not in listed.output


def test_credentials_rotate_lets_the_older_key_be_dropped(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    env_old = creds_env(tmp_path, old)
    secret = "rotated-" + "3c" * 20
    remember_secret(secret, new)
    put = run_cli(
        "credentials",
        "put",
        "shopify",
        "r.myshopify.com",
        env=env_old,
        stdin=json.dumps({"access_token": secret}),
    )
    assert put.code == 0
    only_new = {**env_old, "TOGETHER_SECRET_KEYS": new}
    before = run_cli("credentials", "rotate", env=only_new)
    assert before.code == 1
    assert "cannot be decrypted" in before.output
    rotated = run_cli(
        "credentials", "rotate", env={**env_old, "TOGETHER_SECRET_KEYS": f"{new},{old}"}
    )
    assert rotated.code == 0, rotated.output
    assert "1 credential" in rotated.stdout
    after = run_cli("credentials", "rotate", env=only_new)
    assert after.code == 0, after.output


def test_keygen_prints_a_fernet_key_and_exits_0() -> None:
    done = run_cli("keygen")
    assert done.code == 0
    key = done.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}=", key)
    assert len(base64.urlsafe_b64decode(key)) == 32


def test_new_writes_a_valid_account_file_then_refuses_to_overwrite(tmp_path: Path) -> None:
    done = run_cli("new", "acme", "--store", "ACME.myshopify.com", cwd=tmp_path)
    assert done.code == 0, done.output
    text = (tmp_path / "accounts/acme.yaml").read_text()
    assert "shopify_store: acme.myshopify.com" in text
    assert "gorgias_account: acme.gorgias.com" in text
    assert run_cli("validate", cwd=tmp_path).code == 0
    again = run_cli("new", "acme", "--store", "acme.myshopify.com", cwd=tmp_path)
    assert again.code == 1
    assert "already exists" in again.output
    bad = run_cli("new", "beta", "--store", "not a store", cwd=tmp_path)
    assert bad.code == 1
    assert not (tmp_path / "accounts/beta.yaml").exists()


def test_schema_check_exits_0_when_fresh_and_1_when_stale(tmp_path: Path) -> None:
    assert run_cli("schema", "--check", cwd=REPO).code == 0
    (tmp_path / "schemas").mkdir()
    shutil.copy(REPO / "schemas/account.schema.json", tmp_path / "schemas/account.schema.json")
    assert run_cli("schema", "--check", cwd=tmp_path).code == 0
    (tmp_path / "schemas/account.schema.json").write_text("{}\n")
    stale = run_cli("schema", "--check", cwd=tmp_path)
    assert stale.code == 1
    assert "stale" in stale.output


def test_plan_needs_secret_keys_and_public_url_with_a_clear_message(world: World) -> None:
    world.write_account("acme")
    no_keys = world.cli("plan", TOGETHER_SECRET_KEYS="")
    assert no_keys.code == 1 and "TOGETHER_SECRET_KEYS is not set" in no_keys.output
    assert "keygen" in no_keys.output
    no_url = world.cli("plan", TOGETHER_PUBLIC_URL="")
    assert no_url.code == 1 and "TOGETHER_PUBLIC_URL is not set" in no_url.output


def test_apply_exit_1_when_an_account_fails_and_the_others_still_apply(world: World) -> None:
    failing, fine = unique("fail"), unique("fine")
    for sub in (failing, fine):
        world.write_account(sub)
    world.connect(failing, fine)
    world.sandbox.control.add_fault(
        kind="status", status=400, method="POST", path_contains="/widgets", account=failing
    )
    try:
        done = world.cli("apply", "--yes")
    finally:
        world.sandbox.control.clear_faults()
    assert done.code == 1, done.output
    assert f"{failing}.gorgias.com" in done.output.split("Failed:")[1]
    assert len(world.ours(fine)) == 1 and len(world.sandbox.control.widgets(fine)) == 1
    assert world.cli("apply", "--yes").code == 0  # once fixed, a rerun completes it
