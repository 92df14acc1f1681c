"""SPEC "Sandbox": one loopback port, the URL layout, the start-up output, --seed."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import httpx

from tests.contract.conftest import (
    SandboxProcess,
    keep_output,
    start_sandbox_process,
    stop_process,
    unique,
)
from together_reconcile.secrets import Keyring, generate_key


def test_sandbox_start_up_prints_base_url_and_url_templates(
    sandbox_process: SandboxProcess,
) -> None:
    banner = sandbox_process.banner
    assert re.fullmatch(r"Sandbox listening on http://127\.0\.0\.1:\d+", banner[0])
    url = sandbox_process.url
    assert f"TOGETHER_GORGIAS_URL={url}/gorgias/{{account}}" in banner
    assert f"TOGETHER_SHOPIFY_URL={url}/shopify/{{store}}" in banner


def test_sandbox_start_up_prints_demo_accounts_stores_and_their_tokens(
    sandbox_process: SandboxProcess,
) -> None:
    gorgias = [line for line in sandbox_process.banner if line.strip().startswith("Gorgias ")]
    shopify = [line for line in sandbox_process.banner if line.strip().startswith("Shopify ")]
    assert gorgias and shopify
    for line in gorgias:
        domain, token = re.search(r"(\S+\.gorgias\.com)\s.*Bearer (\S+)", line).groups()  # type: ignore[union-attr]
        sub = domain.removesuffix(".gorgias.com")
        answer = httpx.get(
            f"{sandbox_process.url}/gorgias/{sub}/api/integrations",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200
    for line in shopify:
        assert re.search(r"\S+\.myshopify\.com\s.*X-Shopify-Access-Token: \S+", line)


def test_sandbox_url_layout_gorgias_and_shopify_under_one_port(
    sandbox_process: SandboxProcess,
) -> None:
    sub = unique("lay")
    sandbox_process.control.add_gorgias_account(sub, "sandbox-token-layout")
    sandbox_process.control.add_shopify_store(sub, "sandbox-shopify-layout")
    base = sandbox_process.gorgias_url.format(account=sub)
    assert httpx.get(f"{base}/api/widgets").status_code == 401  # Bearer auth
    listed = httpx.get(
        f"{base}/api/integrations?limit=1",
        headers={"Authorization": "Bearer sandbox-token-layout"},
    ).json()
    assert set(listed) >= {"data", "meta"} and "next_cursor" in listed["meta"]
    shop = sandbox_process.shopify_url.format(store=sub)
    answer = httpx.post(
        f"{shop}/admin/api/2026-04/graphql.json",
        json={"query": "{ orders(first: 1) { nodes { id } } }"},
        headers={"X-Shopify-Access-Token": "sandbox-shopify-layout"},
    )
    assert answer.status_code == 200 and "errors" not in answer.json()


def test_sandbox_rate_limit_answers_429_with_retry_after(sandbox_process: SandboxProcess) -> None:
    sub = unique("rl")
    sandbox_process.control.add_gorgias_account(sub, "rl-token")
    sandbox_process.control.add_fault(kind="status", status=429, account=sub, count=1)
    answer = httpx.get(
        f"{sandbox_process.gorgias_url.format(account=sub)}/api/integrations",
        headers={"Authorization": "Bearer rl-token"},
    )
    assert answer.status_code == 429
    assert answer.headers["Retry-After"].isdigit()


def test_sandbox_seed_file_adds_accounts_stores_and_orders(tmp_path: Path) -> None:
    seed = {
        "gorgias_accounts": [{"account": "casefile", "token": "seeded-gorgias-token"}],
        "shopify_stores": [
            {
                "store": "casefile",
                "token": "seeded-shopify-token",
                "orders": [
                    {
                        "id": 7,
                        "name": "#7",
                        "email": "case@example.com",
                        "created_at": "2026-01-01T00:00:00Z",
                        "tags": ["together-final-sale"],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    process, banner = start_sandbox_process("--seed", str(path), "--no-demo")
    try:
        keep_output("\n".join(banner))
        url = banner[0].removeprefix("Sandbox listening on ")
        assert any(
            "casefile.gorgias.com" in line and "seeded-gorgias-token" in line for line in banner
        )
        assert any("casefile.myshopify.com" in line for line in banner)
        answer = httpx.post(
            f"{url}/shopify/casefile/admin/api/2026-04/graphql.json",
            json={"query": "{ orders(first: 5) { nodes { name } } }"},
            headers={"X-Shopify-Access-Token": "seeded-shopify-token"},
        )
        assert [n["name"] for n in answer.json()["data"]["orders"]["nodes"]] == ["#7"]
    finally:
        out, _ = stop_process(process)
    assert process.returncode == 0
    assert out.strip().endswith("Sandbox stopped.")


def test_sandbox_seed_file_in_yaml_with_foreign_objects(tmp_path: Path) -> None:
    """Issue 8: --seed takes YAML or JSON: accounts, tokens, orders, foreign objects."""
    path = tmp_path / "seed.yaml"
    path.write_text(
        "gorgias_accounts:\n"
        "  - account: yamlcase\n"
        "    token: seeded-yaml-token\n"
        "    integrations:\n"
        "      - {name: Someone else's, type: http, description: made by hand}\n"
        "    widgets:\n"
        "      - {type: custom, template: {}}\n"
    )
    process, banner = start_sandbox_process("--seed", str(path), "--no-demo")
    try:
        keep_output("\n".join(banner))
        url = banner[0].removeprefix("Sandbox listening on ")
        base = f"{url}/gorgias/yamlcase/api"
        auth = {"Authorization": "Bearer seeded-yaml-token"}
        integrations = httpx.get(f"{base}/integrations", headers=auth).json()["data"]
        assert [i["name"] for i in integrations] == ["Someone else's"]
        assert len(httpx.get(f"{base}/widgets", headers=auth).json()["data"]) == 1
    finally:
        stop_process(process)
    assert process.returncode == 0


def test_sandbox_bad_seed_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text("{not json")
    process, _banner = start_sandbox_process("--seed", str(path))
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=15)
    assert process.returncode == 1
    assert "seed.json" in err


def test_sandbox_fires_an_integration_the_way_gorgias_does(
    sandbox_process: SandboxProcess, served: object
) -> None:
    """The stand-in renders the templated form, sends the headers, keeps the answer."""
    from tests.contract.conftest import Served

    assert isinstance(served, Served)
    sub = served.accounts["main"]
    domain = f"{sub}.gorgias.com"
    keys = Keyring.from_env(served.world.keys)
    sandbox_process.control.add_gorgias_account(sub, f"fire-{generate_key()[:8]}")
    made = sandbox_process.control.insert_integration(
        sub,
        {
            "name": "Together",
            "type": "http",
            "http": {
                "url": served.url + "/gorgias/events",
                "method": "POST",
                "request_content_type": "application/json",
                "response_content_type": "application/json",
                "headers": {"X-Together-Token": keys.event_token(domain)},
                "form": {
                    "ticket_id": "{{ticket.id}}",
                    "account_domain": domain,
                    "customer_email": "{{ticket.customer.email}}",
                },
            },
        },
    )
    fired = sandbox_process.control.fire(
        sub, made["id"], {"id": 99, "customer": {"email": "nobody@example.com"}}
    )
    assert fired["status"] == 200, fired
    kept = sandbox_process.control.customer_data(sub, "nobody@example.com")
    assert kept[str(made["id"])] == {}
    sandbox_process.control.remove_integration(sub, made["id"])
