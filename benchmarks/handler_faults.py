"""The event handler under load while things break: one row per fault.

    .venv/bin/python benchmarks/handler_faults.py [--clients 32] [--interval 0.1] [--hold 10]

Starts the sandbox (Shopify answering after 50 ms), a PostgreSQL of its own on a free port
(this machine's initdb/pg_ctl; as root it runs as the `postgres` user), and, for each fault, a
fresh `together-reconcile serve` (serve's defaults: 2 workers × 32 threads) with keep-alive
clients sending events for warm accounts (`--clients`, each every `--interval` s), a `/readyz`
prober (every 0.1 s, new connection each time, like a load balancer), then:

| fault | what is done |
|---|---|
| db hang | SIGSTOP on the postmaster and its backends for `--hold` s, then SIGCONT |
| db stop | `pg_ctl stop -m fast`, `--hold` s, `pg_ctl start` |
| worker SIGKILL | one worker killed |
| SIGHUP | sent to the master |
| new account | a new account file written (no signal); time until its event is served |
| slow headers | 80 sockets sending one header line per second beside the load |
| SIGTERM | `--drain-delay 1`; the clients leave once `/readyz` fails (as a balancer would) |

Columns: requests answered, failures (every non-200 and connection error), the slowest
answer, `/readyz` truth (probes that said what was true: 503 while the store does not answer
or after SIGTERM, else 200), and recovery (time from the fault's end to `/readyz` 200 and a
served event; for SIGKILL until the worker is replaced; new account: until served; SIGTERM:
until the process exited). Goals: 0 answers over 6 s; 0 failures (SIGKILL: at most what the
killed worker held).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults_helpers import (  # noqa: E402
    Load,
    OwnPostgres,
    Probe,
    Served,
    postgres_bin,
    run_serve,
    wait_until,
)

from together_reconcile.sandbox import start_sandbox  # noqa: E402
from together_reconcile.secrets import Keyring, generate_key  # noqa: E402
from together_reconcile.store import Credential, Store  # noqa: E402

SHOPIFY_TOKEN = "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"
KEYS = generate_key()
KEYRING = Keyring.from_env(KEYS)
WARM = [f"shop{n}" for n in range(8)]


def account_yaml(name: str) -> str:
    return f"shopify_store: {name}.myshopify.com\ngorgias_account: {name}.gorgias.com\n"


def event(name: str) -> tuple[str, str, str]:
    domain = f"{name}.gorgias.com"
    return domain, KEYRING.event_token(domain), "jane@example.com"


def served_event(served: Served, name: str) -> bool:
    import httpx

    domain, token, email = event(name)
    try:
        answer = httpx.post(
            served.url + "/gorgias/events",
            json={"ticket_id": 1, "account_domain": domain, "customer_email": email},
            headers={"X-Together-Token": token},
            timeout=6,
        )
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


class Row:
    def __init__(self, name: str) -> None:
        self.name = name
        self.requests = 0
        self.failures = 0
        self.max_s = 0.0
        self.truth = ""
        self.recovery = "-"
        self.note = ""

    def line(self) -> str:
        return (
            f"{self.name:<15} {self.requests:>8} {self.failures:>8} {self.max_s:>8.2f} s "
            f"{self.truth:>16} {self.recovery:>10}  {self.note}"
        )


def truth(probe: Probe, windows: list[tuple[float, float, int]]) -> str:
    """How many probes sent and answered inside each (start, end, expected) window said what
    was expected (one sent just before the end but answered after it, once the store was
    back, rightly says 200: it is not judged against the fault)."""
    total = right = 0
    wrong: dict[str, int] = {}
    for start, end, expected in windows:
        answered = [status for sent, status, took in probe.seen if start <= sent <= end - took]
        for status in answered:
            total += 1
            right += status == expected
            if status != expected:
                wrong[str(status)] = wrong.get(str(status), 0) + 1
    others = ", ".join(f"{k}×{v}" for k, v in wrong.items())
    return f"{right}/{total}" + (f" ({others})" if others else "")


def slow_header_sockets(port: int, count: int, stop: threading.Event) -> None:
    def one() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"POST /gorgias/events HTTP/1.1\r\nHost: x\r\n")
                for n in range(60):
                    if stop.wait(1.0):
                        return
                    sock.sendall(f"X-Slow-{n}: {n}\r\n".encode())
        except OSError:
            return  # the server cut it off

    for _ in range(count):
        threading.Thread(target=one, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--hold", type=float, default=10.0, help="seconds a db fault lasts")
    parser.add_argument("--only", help="comma-separated fault names")
    args = parser.parse_args()
    folder = postgres_bin()
    if folder is None:
        raise SystemExit("PostgreSQL's initdb/pg_ctl are not installed")
    tmp = Path(tempfile.mkdtemp(prefix="handler-faults-"))
    pg = OwnPostgres(folder)
    rows: list[Row] = []
    try:
        with start_sandbox() as sandbox:
            sandbox.control.set_latency(shopify_ms=50)
            with Store.open(pg.url, KEYRING) as store:
                for name in [*WARM, "newco"]:
                    store.put_credential(
                        Credential("shopify", f"{name}.myshopify.com", SHOPIFY_TOKEN)
                    )
            for name in [*WARM, "newco"]:
                sandbox.control.add_shopify_store(name, SHOPIFY_TOKEN)
            scenarios: dict[str, Callable[[Served, Load, Probe, Row, Path], None]] = {
                "db hang": lambda s, ld, p, r, a: db_fault(pg, s, ld, p, r, args.hold, "hang"),
                "db stop": lambda s, ld, p, r, a: db_fault(pg, s, ld, p, r, args.hold, "stop"),
                "worker SIGKILL": sigkill,
                "SIGHUP": sighup,
                "new account": new_account,
                "slow headers": slow_headers,
                "SIGTERM": sigterm,
            }
            chosen = args.only.split(",") if args.only else list(scenarios)
            for number, name in enumerate(chosen):
                accounts = tmp / f"accounts-{number}"
                accounts.mkdir()
                for account in WARM:
                    (accounts / f"{account}.yaml").write_text(account_yaml(account))
                extra = ("--drain-delay", "1") if name == "SIGTERM" else ()
                row = Row(name)
                with run_serve(
                    tmp,
                    accounts_dir=accounts,
                    state_url=pg.url,
                    secret_keys=KEYS,
                    shopify_url=sandbox.shopify_url_template,
                    args=extra,
                ) as served:
                    probe = Probe(served.url, "/readyz")
                    load = Load(
                        served.url,
                        [event(a) for a in WARM],
                        clients=args.clients,
                        interval_s=args.interval,
                        in_rotation=(
                            (lambda probe=probe: probe.last_status() == 200)
                            if name == "SIGTERM"
                            else (lambda: True)
                        ),
                    )
                    with probe, load:
                        since = load.wait_settled(30)
                        scenarios[name](served, load, probe, row, accounts)
                    counted = [o for o in list(load.outcomes) if o.at >= since]
                    row.requests = len(counted)
                    row.failures = sum(o.status != 200 for o in counted)
                    row.max_s = max((o.seconds for o in counted), default=0.0)
                rows.append(row)
                print(row.line(), flush=True)
    finally:
        pg.close()
    print()
    print(
        f"{args.clients} keep-alive clients, one event each every {args.interval:g} s, sandbox "
        f"Shopify at 50 ms, serve defaults; {os.cpu_count()} CPUs shared by all"
    )
    print(f"{'fault':<15} {'requests':>8} {'failures':>8} {'max':>10} {'readyz truth':>16} "
          f"{'recovery':>10}")  # fmt: skip
    for row in rows:
        print(row.line())
    load_avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min) at the end: {load_avg}")


def recover(served: Served, probe: Probe, since: float) -> str:
    wait_until(lambda: probe.last_status() == 200 and served_event(served, WARM[0]), 30, 0.05)
    return f"{time.monotonic() - since:.2f} s"


def db_fault(
    pg: OwnPostgres, served: Served, load: Load, probe: Probe, row: Row, hold: float, kind: str
) -> None:
    start = time.monotonic()
    if kind == "hang":
        pg.freeze()
    else:
        pg.stop("fast")
    try:
        time.sleep(hold)
    finally:
        end = time.monotonic()  # the fault ends now; truth is judged up to here
        if kind == "hang":
            pg.thaw()
        else:
            pg.start()
    row.recovery = recover(served, probe, end)
    # 503 expected once the store has had 1 s to answer, until it is back
    row.truth = truth(probe, [(start + 1.2, end, 503)])
    stale = sum(1 for line in served.log_lines() if line.get("credential_stale_s") is not None)
    row.note = f"{stale} served with a stale token"


def sigkill(served: Served, load: Load, probe: Probe, row: Row, _accounts: Path) -> None:
    victim = served.workers()[0]
    start = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(served.workers()) == 2 and victim not in served.workers(), 30)
    row.recovery = f"{time.monotonic() - start:.2f} s"
    time.sleep(2)
    row.truth = truth(probe, [(start, time.monotonic(), 200)])
    row.note = "failures: requests the killed worker held"


def sighup(served: Served, load: Load, probe: Probe, row: Row, _accounts: Path) -> None:
    start = time.monotonic()
    os.kill(served.process.pid, signal.SIGHUP)
    wait_until(
        lambda: (
            sum(1 for line in served.log_lines() if line.get("event") == "config_reloaded") >= 1
        ),
        30,
    )
    row.recovery = f"{time.monotonic() - start:.2f} s"
    time.sleep(4)
    row.truth = truth(probe, [(start, time.monotonic(), 200)])
    row.note = "recovery: until the master reloaded"


def new_account(served: Served, load: Load, probe: Probe, row: Row, accounts: Path) -> None:
    start = time.monotonic()
    (accounts / "newco.yaml").write_text(account_yaml("newco"))
    wait_until(lambda: served_event(served, "newco"), 30, 0.02)
    row.recovery = f"{time.monotonic() - start:.2f} s"
    time.sleep(1)
    row.truth = truth(probe, [(start, time.monotonic(), 200)])
    row.note = "recovery: until the new account's event is served"


def slow_headers(served: Served, load: Load, probe: Probe, row: Row, _accounts: Path) -> None:
    stop = threading.Event()
    start = time.monotonic()
    slow_header_sockets(served.port, 80, stop)
    time.sleep(8)
    stop.set()
    row.truth = truth(probe, [(start, time.monotonic(), 200)])
    row.note = "80 sockets, one header line a second"


def sigterm(served: Served, load: Load, probe: Probe, row: Row, _accounts: Path) -> None:
    # Beside the balanced clients (they leave once /readyz fails), 8 that keep sending until an
    # answer says Connection: close.
    stubborn = Load(
        served.url, [event(a) for a in WARM], clients=8, interval_s=0.05, stop_on_close=True
    )
    with stubborn:
        time.sleep(1.0)
        start = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=60)
        row.recovery = f"{time.monotonic() - start:.2f} s"
    load.outcomes.extend(stubborn.outcomes)
    closes = sum(o.closed for o in stubborn.outcomes)
    seen = [(t, s) for t, s, _d in probe.seen if t >= start]
    first_503 = next((t for t, s in seen if s == 503), None)
    first_down = next((t for t, s in seen if s is None), None)
    ok = first_503 is not None and (first_down is None or first_503 < first_down)
    after = f"503 after {first_503 - start:.2f} s" if first_503 else "no 503"
    row.truth = f"{'ok' if ok else 'WRONG'} ({after})"
    row.note = (
        f"recovery: until exit (status {served.process.returncode}); "
        f"{closes}/8 persistent clients got Connection: close"
    )


if __name__ == "__main__":
    main()
