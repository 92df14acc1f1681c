"""`together-reconcile new`: writes a valid account file, validates its inputs, never overwrites."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from together_reconcile.cli import main
from together_reconcile.config import load_accounts, validate_paths


def new(accounts: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--accounts-dir", str(accounts), "new", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("subdomain", ["acme", "ACME.Gorgias.com"])
def test_writes_a_file_that_validates(tmp_path: Path, subdomain: str) -> None:
    accounts = tmp_path / "accounts"
    code, output = new(accounts, subdomain, "--store", "Acme.MyShopify.com")
    path = accounts / "acme.yaml"
    assert (code, output) == (0, f"wrote {path}\n")
    assert path.read_text() == (
        "# yaml-language-server: $schema=../schemas/account.schema.json\n"
        "shopify_store: acme.myshopify.com\n"
        "gorgias_account: acme.gorgias.com\n"
    )
    assert validate_paths([path], accounts).problems == []
    assert load_accounts(accounts)["acme.gorgias.com"].account.shopify_store == "acme.myshopify.com"


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    existing = accounts / "acme.yaml"
    existing.write_text("keep me\n")
    code, output = new(accounts, "acme", "--store", "acme.myshopify.com")
    assert (code, output) == (1, f"Error: {existing} already exists: edit it instead\n")
    assert existing.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["acme", "--store", "https://acme.myshopify.com/"],
            '--store: write only the domain "acme.myshopify.com", not a URL',
        ),
        (
            ["acme", "--store", "acme.example.com"],
            '--store: "acme.example.com" is not a Shopify store domain: '
            'write <name>.myshopify.com, e.g. "acme.myshopify.com"',
        ),
        (
            ["acme.zendesk.com", "--store", "acme.myshopify.com"],
            'SUBDOMAIN: "acme.zendesk.com" is not a Gorgias account domain: '
            'write <name>.gorgias.com, e.g. "acme.gorgias.com"',
        ),
        (
            ["acme_corp", "--store", "acme.myshopify.com"],
            'SUBDOMAIN: "acme_corp.gorgias.com" has an invalid name before .gorgias.com: '
            "use 1 to 63 letters, digits or hyphens, starting with a letter or digit",
        ),
    ],
)
def test_bad_input_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    accounts = tmp_path / "accounts"
    assert new(accounts, *args) == (1, f"Error: {message}\n")
    assert not accounts.exists() or list(accounts.iterdir()) == []


def test_refuses_a_store_already_linked(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    assert new(accounts, "acme", "--store", "acme.myshopify.com")[0] == 0
    code, output = new(accounts, "beta", "--store", "ACME.myshopify.com")
    assert (code, output) == (
        1,
        f"Error: --store: acme.myshopify.com is already linked in {accounts / 'acme.yaml'}: "
        "a store links to one Gorgias account\n",
    )
    assert not (accounts / "beta.yaml").exists()
