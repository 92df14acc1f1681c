"""SPEC "Account file": the two-line file, optional keys and defaults, strict errors, secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.contract.conftest import Result, remember_secret, run_cli

SECRET_VALUES = {
    "shpat": "shpat_0123456789abcdef0123456789abcdef",
    "shpca": "shpca_0123456789abcdef0123456789abcdef",
    "shppa": "shppa_0123456789abcdef0123456789abcdef",
    "shpss": "shpss_0123456789abcdef0123456789abcdef",
    "base64": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkw",
    "base64url": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY-_0NTY3ODkw",
    "hex": "0123456789abcdef0123456789abcdef",
}
SECRET_KEYS = ["token", "secret", "password", "api_key", "access_token", "refresh_token"]


def account(sub: str, extra: str = "", store: str | None = None) -> str:
    return (
        f"shopify_store: {store or sub + '.myshopify.com'}\ngorgias_account: {sub}.gorgias.com\n"
        + extra
    )


BAD = {
    "unknown.yaml": account("unknown", "enabeld: true\n"),
    "strictbool.yaml": account("strictbool", 'enabled: "false"\n'),
    "strictint.yaml": account("strictint", 'lookback_days: "30"\n'),
    "range.yaml": account("range", "lookback_days: 61\n"),
    "rangelow.yaml": account("rangelow", "lookback_days: 0\n"),
    "context.yaml": account("context", "widget:\n  context: order\n"),
    "order.yaml": account("order", "widget:\n  order: 1.5\n"),
    "baddomain.yaml": account("baddomain", store="baddomain.example.com"),
    "badgorgias.yaml": "shopify_store: badgorgias.myshopify.com\ngorgias_account: badgorgias\n",
    **{
        f"val{name}.yaml": account(f"val{name}", f"notes: {value}\n")
        for name, value in SECRET_VALUES.items()
    },
    **{
        f"key{n}.yaml": account(f"key{n}", f"widget:\n  {key}: plain\n")
        for n, key in enumerate(SECRET_KEYS)
    },
    "nested.yaml": account("nested", "notes:\n  deeper:\n    password: x\n"),
    "dupgorgias.yaml": account("dupgorgias"),
}


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Result:
    folder = tmp_path_factory.mktemp("bad") / "accounts"
    folder.mkdir()
    for name, text in BAD.items():
        (folder / name).write_text(text)
    remember_secret(*SECRET_VALUES.values())
    return run_cli("validate", cwd=folder.parent)


def problems(result: Result, name: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(f"accounts/{name}:")]


def test_account_file_two_lines_are_enough_and_defaults_apply(tmp_path: Path) -> None:
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "acme.yaml").write_text(
        "# yaml-language-server: $schema=../schemas/account.schema.json\n" + account("acme")
    )
    done = run_cli("validate", cwd=tmp_path)
    assert done.code == 0, done.output


def test_account_file_optional_keys_are_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "acme.yaml").write_text(
        account(
            "acme",
            "enabled: false\nlookback_days: 1\nnotes: asked in ticket 42\n"
            "widget:\n  context: customer\n  order: 3\n  title: Final sale\n",
        )
    )
    hexstore = "0123456789abcdef0123456789abcdef.myshopify.com"  # domains are exempt
    (folder / "hexy.yaml").write_text(account("hexy", store=hexstore))
    (folder / "beta.yaml").write_text(
        account("beta", "lookback_days: 60\nwidget:\n  context: ticket\n")
    )
    done = run_cli("validate", cwd=tmp_path)
    assert done.code == 0, done.output


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("unknown.yaml", 'unknown key "enabeld"'),
        ("strictbool.yaml", "enabled"),
        ("strictint.yaml", "lookback_days"),
        ("range.yaml", "lookback_days"),
        ("rangelow.yaml", "lookback_days"),
        ("context.yaml", "widget.context"),
        ("order.yaml", "widget.order"),
        ("baddomain.yaml", "shopify_store"),
        ("badgorgias.yaml", "gorgias_account"),
    ],
)
def test_account_file_unknown_keys_wrong_types_bad_domains_are_errors(
    bad: Result, name: str, words: str
) -> None:
    assert bad.code == 1
    found = problems(bad, name)
    assert found, f"{name} was accepted"
    assert any(words in line for line in found), found


@pytest.mark.parametrize("name", sorted(SECRET_VALUES))
def test_account_file_secret_looking_value_is_an_error_never_echoed(bad: Result, name: str) -> None:
    found = problems(bad, f"val{name}.yaml")
    assert any("looks like a secret" in line for line in found), found
    assert SECRET_VALUES[name] not in bad.output


@pytest.mark.parametrize("n", range(len(SECRET_KEYS)))
def test_account_file_secret_named_key_at_any_depth_is_an_error(bad: Result, n: int) -> None:
    found = problems(bad, f"key{n}.yaml")
    assert any("looks like a secret" in line for line in found), (SECRET_KEYS[n], found)


def test_account_file_secret_named_key_deeply_nested_is_an_error(bad: Result) -> None:
    assert any("looks like a secret" in line for line in problems(bad, "nested.yaml"))


def test_account_file_same_store_in_two_files_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "one.yaml").write_text(account("one", store="shop.myshopify.com"))
    (folder / "two.yaml").write_text(account("two", store="Shop.MyShopify.com"))
    done = run_cli("validate", cwd=tmp_path)
    assert done.code == 1
    assert "accounts/one.yaml:1:" in done.stdout and "accounts/two.yaml:1:" in done.stdout


def test_account_file_domains_are_case_insensitive_and_stored_lower_case(tmp_path: Path) -> None:
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "acme.yaml").write_text(
        "shopify_store: ACME.MyShopify.com\ngorgias_account: Acme.Gorgias.COM\n"
    )
    done = run_cli("validate", cwd=tmp_path)
    assert done.code == 0, done.output
    # what the product loads is lower case: the plan names the account in lower case
    planned = run_cli(
        "plan",
        "--json",
        cwd=tmp_path,
        env={
            "TOGETHER_SECRET_KEYS": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "TOGETHER_PUBLIC_URL": "https://together.example.com",
            "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/state.db",
        },
    )
    assert planned.code == 0, planned.output
    (entry,) = planned.json()["accounts"]
    assert entry["gorgias_account"] == "acme.gorgias.com"
    assert entry["action"] == "blocked" and entry["reason"] == "not_connected"


def test_account_file_schema_command_prints_the_committed_schema() -> None:
    from tests.contract.conftest import REPO

    done = run_cli("schema", cwd=REPO)
    assert done.code == 0
    schema = json.loads(done.stdout)
    assert set(schema["required"]) == {"shopify_store", "gorgias_account"}
    assert schema.get("additionalProperties") is False
    assert done.stdout == (REPO / "schemas/account.schema.json").read_text()
