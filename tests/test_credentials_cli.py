"""`credentials put|list` and `keygen`: in-process via CliRunner, and once as a real process."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from together_reconcile.cli import main
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Credential, Store

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "together-reconcile"
ACCESS = "gorgias-access-SECRET-0123456789"
REFRESH = "gorgias-refresh-SECRET-9876543210"
SHOPIFY = "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"


def run(state_url: str, args: list[str], stdin: str = "", keys: str | None = None) -> Result:
    runner = CliRunner(env={"TOGETHER_SECRET_KEYS": keys, "TOGETHER_STATE_URL": state_url})
    return runner.invoke(main, args, input=stdin, catch_exceptions=False)


def assert_no_secret(result: Result, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.output
        assert secret not in result.stderr


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state/state.db"


def test_put_then_list_on_both_backends(state_url: str, secret_keys_env: str) -> None:
    body = json.dumps({"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 86400})
    put = run(
        state_url, ["credentials", "put", "gorgias", "ACME.Gorgias.com"], body, secret_keys_env
    )
    assert put.exit_code == 0, put.output
    assert put.stdout.startswith("stored gorgias credential for acme.gorgias.com, expires ")
    shop = run(
        state_url,
        ["credentials", "put", "shopify", "acme.myshopify.com"],
        json.dumps({"access_token": SHOPIFY}),
        secret_keys_env,
    )
    assert shop.exit_code == 0, shop.output
    assert shop.stdout == "stored shopify credential for acme.myshopify.com\n"

    listed = run(state_url, ["credentials", "list"], keys=None)  # list needs no key
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["KIND", "DOMAIN", "EXPIRES", "STATUS"]
    assert lines[1].split()[:2] == ["gorgias", "acme.gorgias.com"]
    assert lines[1].split()[3] == "ok"
    assert lines[2].split() == ["shopify", "acme.myshopify.com", "-", "ok"]
    assert_no_secret(put, ACCESS, REFRESH)
    assert_no_secret(listed, ACCESS, REFRESH, SHOPIFY)

    with Store.open(state_url, Keyring.from_env(secret_keys_env)) as store:
        stored = store.get_credential("gorgias", "acme.gorgias.com")
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == (ACCESS, REFRESH)
    assert stored.expires_at is not None
    remaining = stored.expires_at - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < remaining <= timedelta(hours=24)


def test_list_statuses(sqlite_url: str, keyring: Keyring, secret_keys_env: str) -> None:
    now = datetime.now(UTC)
    with Store.open(sqlite_url, keyring) as store:
        store.import_credentials(
            [
                Credential("gorgias", "fine.gorgias.com", "t", "r", now - timedelta(hours=1)),
                Credential("gorgias", "soon.gorgias.com", "t", None, now + timedelta(minutes=30)),
                Credential("gorgias", "gone.gorgias.com", "t", None, now - timedelta(minutes=1)),
                Credential("gorgias", "later.gorgias.com", "t", None, now + timedelta(hours=3)),
                Credential("gorgias", "lost.gorgias.com", "t", "r", now, "reconnect_needed"),
            ]
        )
    listed = run(sqlite_url, ["credentials", "list"])
    assert listed.exit_code == 0
    status = {line.split()[1]: line.split(maxsplit=3)[3] for line in listed.stdout.splitlines()[1:]}
    assert status == {
        "fine.gorgias.com": "ok",
        "gone.gorgias.com": "expired",
        "later.gorgias.com": "ok",
        "lost.gorgias.com": "reconnect_needed",
        "soon.gorgias.com": "expires soon",
    }


def test_list_of_an_empty_store_is_the_header(sqlite_url: str) -> None:
    listed = run(sqlite_url, ["credentials", "list"])
    assert (listed.exit_code, listed.stdout) == (0, "KIND  DOMAIN  EXPIRES  STATUS\n")


# Bad input: exit 1, a clear message, nothing written, no token echoed ----------------------------

MISSING_KEYS = (
    'Error: TOGETHER_SECRET_KEYS is not set: run "together-reconcile keygen" and export '
    "TOGETHER_SECRET_KEYS=<key>\n"
)


@pytest.mark.parametrize("keys", [None, "", "  "])
def test_put_without_keys_writes_nothing(tmp_path: Path, keys: str | None) -> None:
    url = f"sqlite:///{tmp_path}/state/state.db"
    result = run(
        url,
        ["credentials", "put", "gorgias", "acme.gorgias.com"],
        json.dumps({"access_token": ACCESS}),
        keys,
    )
    assert result.exit_code == 1
    assert result.stderr == MISSING_KEYS
    assert not (tmp_path / "state").exists()
    assert_no_secret(result, ACCESS)


def test_put_with_a_malformed_key_names_its_position(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state/state.db"
    bad = "this-is-not-a-key-but-might-be-a-secret"
    result = run(
        url,
        ["credentials", "put", "gorgias", "acme.gorgias.com"],
        json.dumps({"access_token": ACCESS}),
        f"{generate_key()},{bad}",
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: entry 2 of TOGETHER_SECRET_KEYS is not a valid key (expected the url-safe base64 "
        'of 32 bytes, as printed by "together-reconcile keygen")\n'
    )
    assert not (tmp_path / "state").exists()
    assert_no_secret(result, ACCESS, bad)


@pytest.mark.parametrize(
    ("kind", "domain", "stdin", "message"),
    [
        (
            "gorgias",
            "acme.gorgias.com",
            "",
            'nothing on stdin: pipe a JSON object like {"access_token": "..."}',
        ),
        (
            "gorgias",
            "acme.gorgias.com",
            '{"access_token": "' + ACCESS + '"',
            "stdin is not valid JSON (line 1, column 52: Expecting ',' delimiter)",
        ),
        (
            "gorgias",
            "acme.gorgias.com",
            json.dumps([ACCESS]),
            'expected a JSON object like {"access_token": "..."}',
        ),
        (
            "gorgias",
            "acme.gorgias.com",
            json.dumps({"refresh_token": REFRESH}),
            '"access_token" is missing or not a non-empty string',
        ),
        (
            "gorgias",
            "acme.gorgias.com",
            json.dumps({"access_token": ""}),
            '"access_token" is missing or not a non-empty string',
        ),
        (
            "gorgias",
            "acme.gorgias.com",
            json.dumps({"access_token": 12}),
            '"access_token" is missing or not a non-empty string',
        ),
        (
            "gorgias",
            "acme.gorgias.com",
            json.dumps({"access_token": ACCESS, "token_type": "Bearer"}),
            "unknown key 'token_type' for a gorgias credential: allowed keys are access_token, "
            "refresh_token, expires_in, username",
        ),
        (
            "gorgias",
            "acme.gorgias.com",
            json.dumps({"access_token": "x", ACCESS: 1}),
            "unknown key (not shown) for a gorgias credential: allowed keys are access_token, "
            "refresh_token, expires_in, username",
        ),
        (
            "shopify",
            "acme.myshopify.com",
            json.dumps({"access_token": SHOPIFY, "refresh_token": REFRESH}),
            "unknown key 'refresh_token' for a shopify credential: allowed keys are access_token",
        ),
        (
            "gorgias",
            "acme.gorgias.com",
            json.dumps({"access_token": ACCESS, "expires_in": "3600"}),
            '"expires_in" must be a positive whole number of seconds',
        ),
        (
            "gorgias",
            "acme.gorgias.com",
            json.dumps({"access_token": ACCESS, "expires_in": 0}),
            '"expires_in" must be a positive whole number of seconds',
        ),
        (
            "gorgias",
            "acme.gorgias.com",
            json.dumps({"access_token": ACCESS, "expires_in": True}),
            '"expires_in" must be a positive whole number of seconds',
        ),
        (
            "gorgias",
            "acme.myshopify.com",
            json.dumps({"access_token": ACCESS}),
            "'acme.myshopify.com' is not a gorgias domain: give the full domain, like "
            "acme.gorgias.com",
        ),
        (
            "gorgias",
            "acme",
            json.dumps({"access_token": ACCESS}),
            "the domain given is not a gorgias domain: give the full domain, like acme.gorgias.com",
        ),
        (
            "shopify",
            "acme.gorgias.com",
            json.dumps({"access_token": SHOPIFY}),
            "'acme.gorgias.com' is not a shopify domain: give the full domain, like "
            "acme.myshopify.com",
        ),
        (
            "github",
            "acme.github.com",
            json.dumps({"access_token": ACCESS}),
            "unknown credential kind 'github': use gorgias or shopify",
        ),
    ],
)
def test_put_bad_input(
    sqlite_url: str, secret_keys_env: str, kind: str, domain: str, stdin: str, message: str
) -> None:
    result = run(sqlite_url, ["credentials", "put", kind, domain], stdin, secret_keys_env)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message}\n"
    assert result.stdout == ""
    assert_no_secret(result, ACCESS, REFRESH, SHOPIFY)
    assert run(sqlite_url, ["credentials", "list"]).stdout == "KIND  DOMAIN  EXPIRES  STATUS\n"


def test_put_to_a_read_only_store(tmp_path: Path, secret_keys_env: str) -> None:
    path = tmp_path / "state.db"
    Store.open(f"sqlite:///{path}").close()
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    result = run(
        url,
        ["credentials", "put", "gorgias", "acme.gorgias.com"],
        json.dumps({"access_token": ACCESS}),
        secret_keys_env,
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: the state database at sqlite:///file:{path} is read-only: use a writable file "
        "or database for TOGETHER_STATE_URL\n"
    )
    assert_no_secret(result, ACCESS)


def test_list_from_an_unreachable_store_hides_the_password() -> None:
    result = run("postgresql://ops:pa55word@127.0.0.1:1/state", ["credentials", "list"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: cannot reach the state database at postgresql://ops:***@127.0.0.1:1/state: "
        "connection refused\n"
    )
    assert "pa55word" not in result.output


def test_keygen_prints_a_usable_key(sqlite_url: str) -> None:
    result = run(sqlite_url, ["keygen"])
    assert result.exit_code == 0
    key = result.stdout.strip()
    assert result.stdout == key + "\n"
    assert Keyring.from_env(key).key_count == 1
    assert run(sqlite_url, ["keygen"]).stdout != result.stdout


# The installed console script, as a real process ---------------------------------------------


def test_installed_cli_put_and_list_never_print_the_token(tmp_path: Path) -> None:
    keygen = subprocess.run([str(CLI), "keygen"], capture_output=True, text=True, check=True)
    key = keygen.stdout.strip()
    env = {
        **os.environ,
        "TOGETHER_SECRET_KEYS": key,
        "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/.together/state.db",
    }
    put = subprocess.run(
        [str(CLI), "credentials", "put", "gorgias", "acme.gorgias.com"],
        input=json.dumps({"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 3600}),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    bad = subprocess.run(
        [str(CLI), "credentials", "put", "gorgias", "acme.gorgias.com"],
        input=json.dumps({"access_token": ACCESS, "scope": "x"}),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    listed = subprocess.run(
        [str(CLI), "credentials", "list"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert put.returncode == 0, put.stderr
    assert bad.returncode == 1
    assert "unknown key 'scope'" in bad.stderr
    assert listed.returncode == 0
    assert "acme.gorgias.com" in listed.stdout
    everything = "".join(p.stdout + p.stderr for p in (put, bad, listed))
    for secret in (ACCESS, REFRESH, key):
        assert secret not in everything
    raw = b"".join(path.read_bytes() for path in (tmp_path / ".together").iterdir())  # + WAL
    assert ACCESS.encode() not in raw and REFRESH.encode() not in raw


# credentials import / rotate ---------------------------------------------------------------------


def jsonl(*objects: object) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


def test_import_from_stdin_and_file(state_url: str, secret_keys_env: str, tmp_path: Path) -> None:
    lines = jsonl(
        {"kind": "gorgias", "domain": "A.gorgias.com", "access_token": ACCESS, "expires_in": 60},
        {"kind": "shopify", "domain": "a.myshopify.com", "access_token": SHOPIFY},
    )
    result = run(state_url, ["credentials", "import", "-"], lines + "\n", secret_keys_env)
    assert (result.exit_code, result.stdout) == (0, "imported 2 credentials\n")
    source = tmp_path / "more.jsonl"
    source.write_text(jsonl({"kind": "gorgias", "domain": "b.gorgias.com", "access_token": "x"}))
    result = run(state_url, ["credentials", "import", str(source)], keys=secret_keys_env)
    assert (result.exit_code, result.stdout) == (0, "imported 1 credential\n")
    with Store.open(state_url, Keyring.from_env(secret_keys_env)) as store:
        assert [(i.kind, i.domain) for i in store.list_credentials()] == [
            ("gorgias", "a.gorgias.com"),
            ("gorgias", "b.gorgias.com"),
            ("shopify", "a.myshopify.com"),
        ]
        stored = store.get_credential("shopify", "a.myshopify.com")
        assert stored is not None and stored.access_token == SHOPIFY
    assert_no_secret(result, ACCESS, SHOPIFY)


GOOD_LINE = {"kind": "gorgias", "domain": "a.gorgias.com", "access_token": ACCESS}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (
            '{"kind": "gorgias", "access_token": "' + ACCESS,
            "line 2: not valid JSON (column 37: Unterminated string starting at)",
        ),
        ({**GOOD_LINE, "domain": "b.gorgias.com", "access_token": None}, 'line 2: "access_token"'),
        ({"domain": "b.gorgias.com", "access_token": ACCESS}, 'line 2: "kind" is missing'),
        ({**GOOD_LINE, "kind": ACCESS}, "line 2: unknown credential kind: use gorgias or shopify"),
        ({**GOOD_LINE, "domain": ACCESS.replace("-", "")}, "line 2: the domain given is not a"),
        (GOOD_LINE, "line 2: gorgias credential for a.gorgias.com appears twice"),
        ({**GOOD_LINE, "domain": "b.gorgias.com", "secret": 1}, "line 2: unknown key 'secret'"),
    ],
)
def test_import_is_all_or_nothing_and_names_the_line(
    sqlite_url: str, secret_keys_env: str, bad_line: object, message: str
) -> None:
    text = jsonl(GOOD_LINE) + (bad_line if isinstance(bad_line, str) else json.dumps(bad_line))
    result = run(sqlite_url, ["credentials", "import", "-"], text + "\n", secret_keys_env)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}")
    assert_no_secret(result, ACCESS, ACCESS.replace("-", ""))
    assert run(sqlite_url, ["credentials", "list"]).stdout == "KIND  DOMAIN  EXPIRES  STATUS\n"


def test_import_of_nothing_or_of_a_missing_file(sqlite_url: str, secret_keys_env: str) -> None:
    empty = run(sqlite_url, ["credentials", "import", "-"], "\n\n", secret_keys_env)
    assert empty.exit_code == 1
    assert empty.stderr.startswith("Error: no credentials in the input: expected one JSON")
    missing = run(sqlite_url, ["credentials", "import", "/nonexistent.jsonl"], "", secret_keys_env)
    assert missing.exit_code == 1
    assert missing.stderr == "Error: cannot read /nonexistent.jsonl: No such file or directory\n"
    no_keys = run(sqlite_url, ["credentials", "import", "-"], jsonl(GOOD_LINE), None)
    assert (no_keys.exit_code, no_keys.stderr) == (1, MISSING_KEYS)


def test_rotate_then_drop_the_old_key(state_url: str) -> None:
    old, new = generate_key(), generate_key()
    put = run(
        state_url,
        ["credentials", "put", "gorgias", "a.gorgias.com"],
        json.dumps({"access_token": ACCESS, "refresh_token": REFRESH}),
        old,
    )
    assert put.exit_code == 0
    rotated = run(state_url, ["credentials", "rotate"], keys=f"{new},{old}")
    assert (rotated.exit_code, rotated.stdout) == (
        0,
        "re-encrypted 1 credential under the newest key\n",
    )
    with Store.open(state_url, Keyring.from_env(new)) as store:
        stored = store.get_credential("gorgias", "a.gorgias.com")
    assert stored is not None and (stored.access_token, stored.refresh_token) == (ACCESS, REFRESH)
    assert run(state_url, ["credentials", "rotate"], keys=None).stderr == MISSING_KEYS
    unknown = run(state_url, ["credentials", "rotate"], keys=generate_key())
    assert unknown.exit_code == 1
    assert unknown.stderr == (
        "Error: the stored gorgias credential for a.gorgias.com cannot be decrypted with any key "
        "of TOGETHER_SECRET_KEYS: nothing was rotated; restore the key it was encrypted with, or "
        "put that credential again\n"
    )
