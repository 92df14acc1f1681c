"""`together-reconcile sandbox` as a real process: prints its address, stops on signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest


def start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "together_reconcile", "sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Control API:"):
            break
    return process, lines


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_prints_address_serves_and_stops_cleanly(sig: signal.Signals) -> None:
    process, lines = start()
    try:
        assert lines[0].startswith("Sandbox listening on http://127.0.0.1:")
        url = lines[0].removeprefix("Sandbox listening on ")
        assert lines[1] == f"TOGETHER_GORGIAS_URL={url}/gorgias/{{account}}"
        assert lines[2] == f"TOGETHER_SHOPIFY_URL={url}/shopify/{{store}}"
        assert "Sandbox-only tokens" in lines[3]
        assert "  Gorgias acme.gorgias.com  Authorization: Bearer sandbox-gorgias-acme" in lines
        answer = httpx.get(
            f"{url}/gorgias/acme/api/integrations",
            headers={"Authorization": "Bearer sandbox-gorgias-acme"},
        )
        assert answer.status_code == 200
    finally:
        process.send_signal(sig)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert out.strip().endswith("Sandbox stopped.")
    assert err == ""


def test_demo_data(tmp_path: Path) -> None:
    process, lines = start()
    url = lines[0].removeprefix("Sandbox listening on ")
    try:
        query = (
            '{ orders(first: 50, query: "tag:together-final-sale") { nodes { email createdAt } } }'
        )
        for store in ("acme", "globex-shop", "initech"):
            answer = httpx.post(
                f"{url}/shopify/{store}/admin/api/2026-04/graphql.json",
                json={"query": query},
                headers={"X-Shopify-Access-Token": f"sandbox-shopify-{store}"},
            )
            nodes = answer.json()["data"]["orders"]["nodes"]
            assert len({n["email"] for n in nodes}) >= 2  # other customers too
            assert len(nodes) >= 3
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)


def test_seed_file_and_no_demo(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "gorgias_accounts": [{"account": "umbrella", "token": "sandbox-umbrella"}],
                "shopify_stores": [{"store": "umbrella", "token": "sandbox-shop-umbrella"}],
            }
        )
    )
    process, lines = start("--no-demo", "--seed", str(seed))
    url = lines[0].removeprefix("Sandbox listening on ")
    try:
        assert not any("acme" in line for line in lines)
        headers = {"Authorization": "Bearer sandbox-umbrella"}
        assert httpx.get(f"{url}/gorgias/umbrella/api/widgets", headers=headers).is_success
        assert httpx.get(f"{url}/gorgias/acme/api/widgets", headers=headers).status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_bad_seed_file_is_a_clear_error(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text('{"gorgias_accounts": [{"account": "x"}]}')
    result = subprocess.run(
        [sys.executable, "-m", "together_reconcile", "sandbox", "--port", "0", "--seed", str(seed)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"Error: {seed}: each entry needs 'account'/'store' and 'token'" in result.stderr
