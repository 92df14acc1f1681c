"""Load benchmark of the event handler, beside a baseline, in one run.

    .venv/bin/python benchmarks/handler_load.py [--requests 2000] [--concurrency 64]

Starts the sandbox (Shopify answering after 50 ms) and `together-reconcile serve` on loopback,
then sends 2,000 event requests from 64 concurrent keep-alive clients (a lean asyncio client,
so the generator does not eat the CPU it measures). The baseline is a minimal WSGI app, under
the same gunicorn settings, that makes the same single POST to the same sandbox Shopify endpoint
and returns its JSON: the ratio isolates what the handler adds (parsing, auth, config lookup,
credential, re-checks, logging). Everything shares this machine's cores: generator, handler and
sandbox — and, on a shared machine, whatever else runs.

Goals: zero errors, ≥ 0.8 of the baseline's throughput, p99 ≤ 200 ms, ≥ 300 req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SHOPIFY_TOKEN = "shpat_benchmark0123456789abcdef0123"
EMAIL = "jane@example.com"
WORKERS = 2
THREADS = 16
# Shopify limits each store (the sandbox too: 2000 points, 100/s); Gorgias traffic comes from
# many merchants, so the load is spread over this many accounts and stores.
ACCOUNTS = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


@contextmanager
def process(command: list[str], env: dict[str, str], url: str, what: str) -> Iterator[None]:
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        wait_until_up(url, proc, what)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the baseline app (imported by gunicorn from this file) ------------------------------------

_baseline_client: httpx.Client | None = None


def baseline_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Read the body, make the same single POST to the sandbox Shopify, return its JSON."""
    global _baseline_client
    if _baseline_client is None:
        _baseline_client = httpx.Client(
            limits=httpx.Limits(max_connections=128, max_keepalive_connections=64)
        )
    length = int(environ.get("CONTENT_LENGTH") or 0)
    event = json.loads(environ["wsgi.input"].read(length))
    subdomain = event["account_domain"].split(".", 1)[0]
    from together_reconcile.shopify import FINAL_SALE_ORDERS_QUERY, build_search_query

    cutoff = datetime.now(UTC) - timedelta(days=60)
    answer = _baseline_client.post(
        os.environ["BASELINE_SHOPIFY_ENDPOINT"].format(store=subdomain),
        json={
            "query": FINAL_SALE_ORDERS_QUERY,
            "variables": {"query": build_search_query(EMAIL, cutoff), "first": 25, "after": None},
        },
        headers={"X-Shopify-Access-Token": SHOPIFY_TOKEN},
        timeout=5,
    )
    body = answer.content
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


# -- the load generator ------------------------------------------------------------------------


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    def line(self, name: str) -> str:
        return (
            f"{name:<9} {self.rate:8.1f} req/s   p50 {self.percentile(50):6.1f} ms   "
            f"p99 {self.percentile(99):6.1f} ms   errors {self.errors}/{self.requests}"
        )


async def _client(
    port: int, request: bytes, todo: list[int], latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while todo:
            todo.pop()
            started = time.perf_counter()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                close = False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    if name.strip().lower() == b"connection" and b"close" in value.lower():
                        close = True
                body = await reader.readexactly(length)
                if status != 200 or b"orders" not in body:
                    errors.append(status)
                latencies.append((time.perf_counter() - started) * 1000)
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors.append(0)
                latencies.append((time.perf_counter() - started) * 1000)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def _load(port: int, requests: list[bytes], total: int, concurrency: int) -> Result:
    todo = list(range(total))
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _client(port, requests[i % len(requests)], todo, latencies, errors)
            for i in range(concurrency)
        )
    )
    return Result(total, len(errors), time.perf_counter() - started, latencies)


def run_load(port: int, requests: list[bytes], total: int, concurrency: int) -> Result:
    asyncio.run(_load(port, requests, min(200, total), concurrency))  # warm up
    return asyncio.run(_load(port, requests, total, concurrency))


def event_request(account: str, token: str) -> bytes:
    body = json.dumps(
        {"ticket_id": 1, "account_domain": f"{account}.gorgias.com", "customer_email": EMAIL}
    ).encode()
    head = (
        "POST /gorgias/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"X-Together-Token: {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--shopify-ms", type=float, default=50.0)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from together_reconcile.sandbox import SandboxController
    from together_reconcile.secrets import Keyring, generate_key
    from together_reconcile.store import Credential, Store

    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    sandbox_port, handler_port, baseline_port = free_port(), free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    keys = generate_key()
    keyring = Keyring.from_env(keys)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        accounts = tmp / "accounts"
        accounts.mkdir()
        names = [f"shop{i}" for i in range(ACCOUNTS)]
        state_url = f"sqlite:///{tmp}/state.db"
        with Store.open(state_url, keyring) as store:
            for name in names:
                (accounts / f"{name}.yaml").write_text(
                    f"shopify_store: {name}.myshopify.com\ngorgias_account: {name}.gorgias.com\n"
                )
                store.put_credential(Credential("shopify", f"{name}.myshopify.com", SHOPIFY_TOKEN))

        sandbox_cmd = [PYTHON, "-m", "together_reconcile", "sandbox", "--port", str(sandbox_port)]
        with process(sandbox_cmd, env, sandbox_url + "/_control/requests", "sandbox"):
            control = SandboxController(sandbox_url)
            now = datetime.now(UTC)
            for name in names:
                control.add_shopify_store(name, SHOPIFY_TOKEN)
                control.add_orders(
                    name,
                    [
                        {
                            "id": 100 + i,
                            "name": f"#{100 + i}",
                            "email": EMAIL if i % 2 == 0 else f"other{i}@example.com",
                            "created_at": (now - timedelta(days=i + 1)).strftime(
                                "%Y-%m-%dT%H:%M:%SZ"
                            ),
                            "tags": ["together-final-sale"],
                            "total": "10.00",
                            "currency": "EUR",
                            "financial_status": "PAID",
                            "fulfillment_status": "FULFILLED",
                            "line_items": [{"name": "Hat", "quantity": 1}],
                        }
                        for i in range(6)
                    ],
                )
            control.set_latency(shopify_ms=args.shopify_ms)

            serve_env = {
                **env,
                "TOGETHER_SECRET_KEYS": keys,
                "TOGETHER_ACCOUNTS_DIR": str(accounts),
                "TOGETHER_STATE_URL": state_url,
                "TOGETHER_SHOPIFY_URL": sandbox_url + "/shopify/{store}",
            }
            serve_cmd = [
                PYTHON, "-m", "together_reconcile", "serve", "--port", str(handler_port),
                "--workers", str(WORKERS), "--threads", str(THREADS),
            ]  # fmt: skip
            with process(serve_cmd, serve_env, f"http://127.0.0.1:{handler_port}/healthz", "serve"):
                handler = run_load(
                    handler_port,
                    [event_request(n, keyring.event_token(f"{n}.gorgias.com")) for n in names],
                    args.requests,
                    args.concurrency,
                )

            baseline_env = {
                **env,
                "BASELINE_SHOPIFY_ENDPOINT": (
                    f"{sandbox_url}/shopify/{{store}}/admin/api/2026-04/graphql.json"
                ),
            }
            baseline_cmd = [
                PYTHON, "-m", "gunicorn", "--worker-class", "gthread",
                "--workers", str(WORKERS), "--threads", str(THREADS),
                "--keep-alive", "5", "--bind", f"127.0.0.1:{baseline_port}",
                "benchmarks.handler_load:baseline_app",
            ]  # fmt: skip
            with process(baseline_cmd, baseline_env, f"http://127.0.0.1:{baseline_port}/", "base"):
                baseline = run_load(
                    baseline_port,
                    [event_request(name, "unused") for name in names],
                    args.requests,
                    args.concurrency,
                )

    print(
        f"{args.requests} requests, {args.concurrency} concurrent clients, sandbox Shopify at "
        f"{args.shopify_ms:.0f} ms; gunicorn gthread {WORKERS} workers × {THREADS} threads; "
        f"{os.cpu_count()} CPUs shared by generator, server and sandbox"
    )
    print(handler.line("handler"))
    print(baseline.line("baseline"))
    ratio = handler.rate / baseline.rate
    print(f"ratio     {ratio:.2f} of baseline throughput")
    goals = {
        "zero errors": handler.errors == 0,
        "≥ 0.8 of baseline": ratio >= 0.8,
        "p99 ≤ 200 ms": handler.percentile(99) <= 200,
        "≥ 300 req/s": handler.rate >= 300,
    }
    print("goals     " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in goals.items()))
    print(f"(mean handler latency {statistics.fmean(handler.latencies_ms):.1f} ms)")


if __name__ == "__main__":
    main()
