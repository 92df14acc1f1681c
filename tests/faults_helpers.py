"""Real processes for the fault tests and `benchmarks/handler_faults.py`: a PostgreSQL of our
own (so it can be frozen and stopped), `serve` as a process, a load of keep-alive clients that
counts every answer, and a `/readyz` prober.

The PostgreSQL comes from this machine's `initdb`/`pg_ctl`, on a free loopback port, in a
folder of its own; as root it runs as the `postgres` user. Only processes started here are ever
signalled: the postmaster whose pid its own `postmaster.pid` names, and that postmaster's
children.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.serve_helpers import ServedHandler


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(f"{folder}/initdb") and os.path.exists(f"{folder}/pg_ctl"):
            return Path(folder)
    return None


class OwnPostgres:
    """A throw-away PostgreSQL cluster on a free loopback port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="together-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:  # initdb refuses root: the postgres user must own and enter it
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=check, cwd=self.root
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c max_connections=60 -c synchronous_commit=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def processes(self) -> list[int]:
        """The postmaster and its children (the backends), by their parent pid."""
        master = self.postmaster_pid()
        pids = [master]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = Path(stat).read_text()
                if int(text.rsplit(")", 1)[1].split()[1]) == master:
                    pids.append(int(stat.split("/")[2]))
        return pids

    def freeze(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.thaw()
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Served(ServedHandler):
    """A `serve` started by these helpers: its log lines and its workers too."""

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.stderr().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines

    def workers(self) -> list[int]:
        """The worker pids (children of this serve process)."""
        found = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = Path(stat).read_text()
                fields = text.rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid and fields[0] != "Z":
                    found.append(int(stat.split("/")[2]))
        return found


@contextlib.contextmanager
def run_serve(
    tmp: Path,
    *,
    accounts_dir: Path,
    state_url: str,
    secret_keys: str,
    shopify_url: str,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    port = free_port()
    stderr_path = tmp / f"serve-{port}.log"
    full_env = {
        **os.environ,
        "TOGETHER_SECRET_KEYS": secret_keys,
        "TOGETHER_ACCOUNTS_DIR": str(accounts_dir),
        "TOGETHER_STATE_URL": state_url,
        "TOGETHER_SHOPIFY_URL": shopify_url,
        **(env or {}),
    }
    command = [sys.executable, "-m", "together_reconcile", "serve", "--port", str(port), *args]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, env=full_env, stdout=stderr, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited: {stderr_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("serve was not ready in 30 s")
            time.sleep(0.1)
        yield Served(url, port, process, stderr_path)
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Outcome:
    at: float  # monotonic, when the request was sent
    seconds: float
    status: int | None  # None: connection error
    detail: str  # error code, or exception type
    account: str
    closed: bool = False  # the answer carried Connection: close


@dataclass
class Load:
    """`clients` threads, each with its own keep-alive connection, each sending an event every
    `interval_s` for the accounts given; every answer is recorded. While `in_rotation()` is
    False (a load balancer that saw /readyz fail) no request is sent."""

    url: str
    events: list[tuple[str, str, str]]  # (account domain, token, email)
    clients: int = 8
    interval_s: float = 0.02
    timeout_s: float = 10.0
    in_rotation: Callable[[], bool] = lambda: True
    stop_on_close: bool = False  # a client that honours Connection: close by leaving
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for number in range(self.clients):
            thread = threading.Thread(target=self._client, args=(number,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)

    def _client(self, number: int) -> None:
        turn = number
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                if not self.in_rotation():
                    time.sleep(0.02)
                    continue
                account, token, email = self.events[turn % len(self.events)]
                turn += 1
                body = {"ticket_id": turn, "account_domain": account, "customer_email": email}
                sent = time.monotonic()
                try:
                    answer = client.post(
                        self.url + "/gorgias/events",
                        json=body,
                        headers={"X-Together-Token": token},
                    )
                except httpx.HTTPError as error:
                    self.outcomes.append(
                        Outcome(sent, time.monotonic() - sent, None, type(error).__name__, account)
                    )
                else:
                    code = ""
                    if answer.status_code != 200:
                        with contextlib.suppress(ValueError, KeyError, TypeError):
                            code = answer.json()["error"]["code"]
                    self.outcomes.append(
                        Outcome(
                            sent,
                            time.monotonic() - sent,
                            answer.status_code,
                            code,
                            account,
                            answer.headers.get("connection", "").lower() == "close",
                        )
                    )
                    if self.stop_on_close and self.outcomes[-1].closed:
                        return
                self._stop.wait(self.interval_s)

    def failures(self, since: float = 0.0, account: str | None = None) -> list[Outcome]:
        return [
            o
            for o in list(self.outcomes)
            if o.status != 200 and o.at >= since and (account is None or o.account == account)
        ]

    def settled(self, window_s: float = 1.0, least: int = 10) -> bool:
        """The last `window_s` seconds had at least `least` answers, all 200 (warm)."""
        now = time.monotonic()
        recent = [o for o in list(self.outcomes) if o.at >= now - window_s - 0.5]
        return len(recent) >= least and all(o.status == 200 for o in recent)

    def wait_settled(self, timeout_s: float = 15.0) -> float:
        """Wait until settled; returns the time from which failures count."""
        wait_until(self.settled, timeout_s)
        return time.monotonic()

    def max_seconds(self) -> float:
        return max((o.seconds for o in list(self.outcomes)), default=0.0)


@dataclass
class Probe:
    """GET `path` every `interval_s`; records (time, status or None, seconds)."""

    url: str
    path: str = "/readyz"
    interval_s: float = 0.1
    seen: list[tuple[float, int | None, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            status: int | None
            # a new connection each time, as a load balancer's health check does (http.client:
            # cheap enough to probe often while the machine is loaded)
            host, port = self.url.removeprefix("http://").rsplit(":", 1)
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            try:
                connection.request("GET", self.path)
                status = connection.getresponse().status
            except (OSError, http.client.HTTPException):
                status = None
            finally:
                connection.close()
            self.seen.append((started, status, time.monotonic() - started))
            self._stop.wait(self.interval_s)

    def last_status(self) -> int | None:
        return self.seen[-1][1] if self.seen else None

    def slowest(self) -> float:
        return max((s for _t, _st, s in self.seen), default=0.0)

    def statuses(self, start: float, end: float) -> list[int | None]:
        return [status for t, status, _s in list(self.seen) if start <= t <= end]


def wait_until(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> float:
    """Seconds until `condition()` held; raises AssertionError after `timeout_s`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(step_s)
    return time.monotonic() - started
