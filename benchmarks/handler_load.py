"""Load benchmark of the event handler, beside a baseline, in one run.

    .venv/bin/python benchmarks/handler_load.py [--requests 2000] [--concurrency 64]

Starts the sandbox (Shopify answering after 50 ms) and `together-reconcile serve` on loopback,
then sends 2,000 event requests from 64 concurrent keep-alive connections with `wrk` (C, one
thread, a small Lua script for the POST bodies and headers; installed with apt-get when
missing), so the generator does not eat the CPU it measures; without wrk, a lean asyncio client
in this process does it (`--generator asyncio` forces it). The CPU each process used per request
(generator, server, sandbox) is printed beside the figures.

The baseline is a minimal WSGI app, under the same gunicorn settings, that makes the same single
POST to the same sandbox Shopify endpoint and returns its JSON: the ratio isolates what the
handler adds (parsing, auth, config lookup, credential, re-checks, logging). Everything shares
this machine's cores: generator, handler and sandbox — and, on a shared machine, whatever else
runs.

Goals: zero errors, ≥ 0.9 of the baseline's throughput (issue 13), p99 ≤ 200 ms, ≥ 300 req/s.

With wrk and nginx installed, the same load also goes through the shipped nginx configuration
(deploy/nginx: TLS, buffering, keep-alive upstream) in front of two replicas with half the
workers each (`nginx+2`; `--no-nginx` skips it). Goals there: ≥ 0.9 of the direct run's
throughput, p99 ≤ 200 ms, zero errors. tests/ops/test_nginx.py proves the rolling restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SHOPIFY_TOKEN = "shpat_benchmark0123456789abcdef0123"
EMAIL = "jane@example.com"
WORKERS = 2
THREADS = 32  # serve's default: 64 requests in flight for 64 clients
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
def process(
    command: list[str], env: dict[str, str], url: str, what: str
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        wait_until_up(url, proc, what)
        yield proc
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
    from together_reconcile.events.shopify import FINAL_SALE_ORDERS_QUERY, build_search_query

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
    p50_ms: float | None = None  # given by wrk; else computed from latencies_ms
    p99_ms: float | None = None
    mean_ms: float | None = None
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per request, by process

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        given = {50: self.p50_ms, 99: self.p99_ms}.get(int(p))
        if given is not None:
            return given
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    @property
    def mean(self) -> float:
        return self.mean_ms if self.mean_ms is not None else statistics.fmean(self.latencies_ms)

    def line(self, name: str) -> str:
        cpu = ", ".join(f"{who} {ms:.2f}" for who, ms in self.cpu_ms.items())
        return (
            f"{name:<9} {self.rate:8.1f} req/s   p50 {self.percentile(50):6.1f} ms   "
            f"p99 {self.percentile(99):6.1f} ms   mean {self.mean:6.1f} ms   "
            f"errors {self.errors}/{self.requests}\n"
            f"{'':<9} CPU ms per request: {cpu} (total {sum(self.cpu_ms.values()):.2f})"
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


@dataclass
class Load:
    """How to load a server: wrk when there is one, else the asyncio client."""

    wrk: str | None
    total: int
    concurrency: int
    tmp: Path

    @property
    def generator(self) -> str:
        return "wrk (1 thread, Lua)" if self.wrk else "asyncio client (in this process)"

    def run(
        self,
        port: int,
        events: list[tuple[str, str]],
        server: int | list[int],
        sandbox: int,
        url: str | None = None,
    ) -> Result:
        """Load `port` (or `url`, wrk only: e.g. nginx over TLS); `server`: the pid(s) whose
        CPU counts as the server's."""
        servers = server if isinstance(server, list) else [server]
        before = {"server": sum(map(tree_cpu_s, servers)), "sandbox": tree_cpu_s(sandbox)}
        own = time.process_time()
        if self.wrk:
            target = url or f"http://127.0.0.1:{port}/gorgias/events"
            result, generator_cpu = run_wrk(
                self.wrk, target, events, self.total, self.concurrency, self.tmp
            )
        else:
            requests = [event_request(account, token) for account, token in events]
            result = run_load(port, requests, self.total, self.concurrency)
            generator_cpu = time.process_time() - own
        used = {
            "generator": generator_cpu,
            "server": sum(map(tree_cpu_s, servers)) - before["server"],
            "sandbox": tree_cpu_s(sandbox) - before["sandbox"],
        }
        warmed = min(200, self.total) + self.total  # the warm-up's CPU is in there too
        result.cpu_ms = {who: seconds * 1000 / warmed for who, seconds in used.items()}
        return result


# -- wrk: the load generator in C, with a Lua script that stops after a request count ---------

WRK_SCRIPT = """
local requests = {%(requests)s}
local quota = %(quota)d
local threads = {}
local counter = 0
bad = 0  -- a global, so done() can read it from the thread

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for i, r in ipairs(requests) do
    requests[i] = wrk.format("POST", "/gorgias/events", r.headers, r.body)
  end
end

function request()
  counter = counter + 1
  return requests[(counter %% #requests) + 1]
end

function response(status, headers, body)
  if status ~= 200 or not body:find("orders", 1, true) then
    bad = bad + 1
  end
  quota = quota - 1
  if quota == 0 then
    io.write("DONE\\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local bad_bodies = 0
  for _, thread in ipairs(threads) do bad_bodies = bad_bodies + thread:get("bad") end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%%d duration_us=%%d bad=%%d connect=%%d read=%%d write=%%d status=%%d "
    .. "timeout=%%d p50_us=%%d p99_us=%%d mean_us=%%d\\n",
    summary.requests, summary.duration, bad_bodies, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(events: list[tuple[str, str]], total: int) -> str:
    """The Lua script: one request per (account, token), `total` responses, then stop."""
    entries = []
    for account, token in events:
        body = json.dumps(
            {"ticket_id": 1, "account_domain": f"{account}.gorgias.com", "customer_email": EMAIL}
        )
        headers = (
            '{["Content-Type"]="application/json", ["X-Together-Token"]=' + _lua_string(token) + "}"
        )
        entries.append("{headers=" + headers + ", body=" + _lua_string(body) + "}")
    return WRK_SCRIPT % {"requests": ",\n".join(entries), "quota": total}


def ensure_wrk() -> str | None:
    """The wrk binary, installed from Debian's packages when missing; None if impossible."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    print("wrk is missing: apt-get install -y wrk ...", flush=True)
    for command in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"]):
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if shutil.which("wrk"):
            return shutil.which("wrk")
    subprocess.run(
        ["apt-get", "install", "-y", "wrk"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return shutil.which("wrk")


def run_wrk(
    wrk: str, url: str, events: list[tuple[str, str]], total: int, concurrency: int, tmp: Path
) -> tuple[Result, float]:
    """Warm up, then `total` requests over `concurrency` connections; the result and wrk's CPU."""

    def once(count: int) -> tuple[dict[str, int], float]:
        script = tmp / "events.lua"
        script.write_text(wrk_script(events, count), encoding="utf-8")
        started = resource.getrusage(resource.RUSAGE_CHILDREN)
        # wrk runs for a duration: the script prints DONE after `count` answers, and SIGINT
        # ends the run there (wrk then prints the summary of what it did).
        proc = subprocess.Popen(
            [wrk, "-t1", f"-c{concurrency}", "-d60s", "--timeout", "10s", "-s", str(script),
             url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        output = []
        for line in proc.stdout:
            output.append(line)
            if line.strip() == "DONE":
                proc.send_signal(signal.SIGINT)
                break
        rest, errors = proc.communicate(timeout=120)
        output.append(rest)
        ended = resource.getrusage(resource.RUSAGE_CHILDREN)
        script.unlink()
        stdout = "".join(output)
        line = next((x for x in stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"wrk failed: {stdout[-500:]} {errors[-500:]}")
        fields = dict(item.split("=") for item in line.split()[1:])
        cpu = (ended.ru_utime + ended.ru_stime) - (started.ru_utime + started.ru_stime)
        return {key: int(value) for key, value in fields.items()}, cpu

    once(min(200, total))  # warm up
    fields, cpu = once(total)
    errors = sum(fields[k] for k in ("bad", "connect", "read", "write", "timeout"))
    return (
        Result(
            requests=fields["requests"],
            errors=errors,
            seconds=fields["duration_us"] / 1e6,
            latencies_ms=[],
            p50_ms=fields["p50_us"] / 1000,
            p99_ms=fields["p99_us"] / 1000,
            mean_ms=fields["mean_us"] / 1000,
        ),
        cpu,
    )


# -- CPU accounting --------------------------------------------------------------------------


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants (Linux /proc)."""
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo.extend(int(child) for child in children)
    return total


def through_nginx(
    load: Load,
    args: argparse.Namespace,
    tmp: Path,
    serve_env: dict[str, str],
    names: list[str],
    keyring: Any,
    sandbox_pid: int,
) -> Result:
    """The same load through the shipped nginx configuration (deploy/nginx, TLS) in front of
    two replicas, each with half the direct run's workers (the same cores in all)."""
    sys.path.insert(0, str(ROOT))
    from tests.ops.helpers import run_nginx

    ports = [free_port(), free_port()]
    workers = max(1, args.workers // 2)
    commands = [
        [
            PYTHON, "-m", "together_reconcile", "serve", "--port", str(port),
            "--workers", str(workers), "--threads", str(args.threads),
        ]
        for port in ports
    ]  # fmt: skip
    (tmp / "nginx-run").mkdir()
    with (
        process(commands[0], serve_env, f"http://127.0.0.1:{ports[0]}/healthz", "one") as one,
        process(commands[1], serve_env, f"http://127.0.0.1:{ports[1]}/healthz", "two") as two,
        run_nginx(tmp / "nginx-run", free_port(), ports) as nginx,
    ):
        return load.run(
            0,
            [(n, keyring.event_token(f"{n}.gorgias.com")) for n in names],
            [one.pid, two.pid, nginx.process.pid],
            sandbox_pid,
            url=nginx.url + "/gorgias/events",
        )


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
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--generator", choices=["wrk", "asyncio"], default="wrk")
    parser.add_argument(
        "--no-nginx", action="store_true", help="skip the run through nginx and two replicas"
    )
    args = parser.parse_args()
    wrk = ensure_wrk() if args.generator == "wrk" else None

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
        load = Load(wrk, args.requests, args.concurrency, tmp)
        with process(sandbox_cmd, env, sandbox_url + "/_control/requests", "sandbox") as sandbox:
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
                "--workers", str(args.workers), "--threads", str(args.threads),
            ]  # fmt: skip
            health = f"http://127.0.0.1:{handler_port}/healthz"
            with process(serve_cmd, serve_env, health, "serve") as server:
                handler = load.run(
                    handler_port,
                    [(n, keyring.event_token(f"{n}.gorgias.com")) for n in names],
                    server.pid,
                    sandbox.pid,
                )
            proxied = None
            if load.wrk and shutil.which("nginx") and not args.no_nginx:
                proxied = through_nginx(load, args, tmp, serve_env, names, keyring, sandbox.pid)

            baseline_env = {
                **env,
                "BASELINE_SHOPIFY_ENDPOINT": (
                    f"{sandbox_url}/shopify/{{store}}/admin/api/2026-04/graphql.json"
                ),
            }
            baseline_cmd = [
                PYTHON, "-m", "gunicorn", "--worker-class", "gthread",
                "--workers", str(args.workers), "--threads", str(args.threads),
                "--keep-alive", "5", "--bind", f"127.0.0.1:{baseline_port}",
                "benchmarks.handler_load:baseline_app",
            ]  # fmt: skip
            base_url = f"http://127.0.0.1:{baseline_port}/"
            with process(baseline_cmd, baseline_env, base_url, "base") as base_server:
                baseline = load.run(
                    baseline_port,
                    [(name, "unused") for name in names],
                    base_server.pid,
                    sandbox.pid,
                )

    print(
        f"{args.requests} requests, {args.concurrency} concurrent clients ({load.generator}), "
        f"sandbox Shopify at {args.shopify_ms:.0f} ms; gunicorn gthread {args.workers} workers × "
        f"{args.threads} threads; {os.cpu_count()} CPUs shared by generator, server and sandbox"
    )
    print(handler.line("handler"))
    if proxied is not None:
        print(proxied.line("nginx+2"))
    print(baseline.line("baseline"))
    ratio = handler.rate / baseline.rate
    print(f"ratio     {ratio:.2f} of baseline throughput")
    goals = {
        "zero errors": handler.errors == 0,
        "≥ 0.9 of baseline": ratio >= 0.9,
        "p99 ≤ 200 ms": handler.percentile(99) <= 200,
        "≥ 300 req/s": handler.rate >= 300,
    }
    print("goals     " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in goals.items()))
    if proxied is not None:
        share = proxied.rate / handler.rate
        print(f"nginx     {share:.2f} of the direct handler's throughput (TLS, two replicas)")
        nginx_goals = {
            "zero errors": proxied.errors == 0,
            "≥ 0.9 of direct": share >= 0.9,
            "p99 ≤ 200 ms": proxied.percentile(99) <= 200,
        }
        print(
            "goals     "
            + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in nginx_goals.items())
        )
    load_avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min) at the end: {load_avg}")


if __name__ == "__main__":
    main()
