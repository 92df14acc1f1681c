"""SPEC "Precise rules" — Domains: commands take and print full domains, input is
case-insensitive, `gorgias_account` in JSON output is the full domain."""

from __future__ import annotations

import json
from pathlib import Path

from tests.contract.conftest import Scenario, remember_secret, run_cli
from together_reconcile.secrets import generate_key


def test_domains_credentials_take_full_domains_case_insensitively(tmp_path: Path) -> None:
    key = generate_key()
    remember_secret(key)
    env = {"TOGETHER_SECRET_KEYS": key, "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/s.db"}
    stdin = json.dumps({"access_token": "domain-token-" + "4" * 16})
    remember_secret("domain-token-" + "4" * 16)
    put = run_cli("credentials", "put", "gorgias", "MiXeD.Gorgias.COM", env=env, stdin=stdin)
    assert put.code == 0, put.output
    assert "mixed.gorgias.com" in put.stdout
    again = run_cli("credentials", "put", "shopify", "MiXeD.MyShopify.com", env=env, stdin=stdin)
    assert again.code == 0
    listed = run_cli("credentials", "list", env=env).stdout
    assert "mixed.gorgias.com" in listed and "mixed.myshopify.com" in listed
    assert "MiXeD" not in listed


def test_domains_a_bare_subdomain_is_refused_where_a_domain_is_expected(tmp_path: Path) -> None:
    key = generate_key()
    remember_secret(key)
    env = {"TOGETHER_SECRET_KEYS": key, "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/s.db"}
    done = run_cli("credentials", "put", "shopify", "acme", env=env, stdin='{"access_token": "t"}')
    assert done.code == 1
    assert "acme.myshopify.com" in done.output  # says what a full domain looks like


def test_domains_new_prints_and_writes_full_lower_case_domains(tmp_path: Path) -> None:
    done = run_cli("new", "ACME.Gorgias.com", "--store", "ACME.MyShopify.com", cwd=tmp_path)
    assert done.code == 0, done.output
    text = (tmp_path / "accounts/acme.yaml").read_text()
    assert "gorgias_account: acme.gorgias.com" in text
    assert "shopify_store: acme.myshopify.com" in text


def test_domains_plan_account_filter_is_case_insensitive_and_prints_full_domains(
    scenario: Scenario,
) -> None:
    domain = scenario.domain("sync")
    done = scenario.world.cli("plan", "--json", "--account", domain.upper())
    assert done.code == 0, done.output
    assert [a["gorgias_account"] for a in done.json()["accounts"]] == [domain]
