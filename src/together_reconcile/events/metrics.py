"""Prometheus metrics of `serve`, summed over its gunicorn workers.

`serve --metrics-port P [--metrics-host H]` turns them on:

- the master makes a fresh directory for this run (`PROMETHEUS_MULTIPROC_DIR`, removed at
  exit) before any worker starts, so a restart never adds up an earlier run's files;
- each worker records into its own files there (`prometheus_client`'s multiprocess mode);
  gunicorn's `child_exit` hook drops a dead worker's live gauges, its counters stay summed;
- the master serves `GET /metrics` on `H:P` (loopback by default; never on the public port)
  from a thread of its own, adding the workers' files up at each scrape.

Families (SPEC "Running in production"), all summed over workers:

    together_events_total{account,outcome}     events answered; outcome `ok` or the error code
    together_requests_total{route,status}      every answer, by route (a fixed set) and status
    together_event_duration_seconds            histogram, request in to answer out (events)
    together_shopify_duration_seconds          histogram, the Shopify lookups
    together_store_errors_total                requests that met a failing state store
    together_stale_credential_answers_total    events answered with a cached token, store down
    together_config_accounts                   accounts configured (the largest over workers)
    together_config_reloads_total{result}      folder reloads by the workers: `ok` or `failed`
    together_config_info{version,commit}       1 for each account-file version being served
    together_config_files_mtime_seconds        newest modification time of the served files
    together_account_failure_streak{account}   consecutive non-200 event answers, all workers

`account` is a configured Gorgias domain, or `none` when the request names no configured
account: the label set is bounded by the account files, whatever requests arrive. No email,
token or ticket id is ever a label or a value.

The failure streak is the whole process's: one small file per account, updated under an
exclusive `flock` by whichever worker answers (a success writes 0, a failure adds 1), so the
order of answers across workers is the order of updates. The master reads the files at scrape.
"""

from __future__ import annotations

import fcntl
import http.server
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
DEFAULT_METRICS_HOST = "127.0.0.1"
NO_ACCOUNT = "none"
EVENTS_ROUTE = "/gorgias/events"
# Outcomes the alert rules watch with increase()/rate(): their series start at 0.
INITIALISED_OUTCOMES = ("ok", "shopify_unauthorized")
STREAKS = "streaks"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 10.0)
_ZERO = (0).to_bytes(8, "little")


class Entry(Protocol):
    """What the handler knows about one answered request (`events.app.RequestLog`)."""

    route: str
    account: str | None
    error: str | None
    shopify_ms: float | None
    credential_stale_s: float | None
    store_error: str | None


class Snapshot(Protocol):
    """A loaded account config (`events.app.ConfigSnapshot`)."""

    accounts: Mapping[str, Any]
    version: str
    commit: str | None


# -- the failure streak, shared by the workers ------------------------------------------------


class FailureStreaks:
    """Per account, the consecutive non-200 answers of every process writing to `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()  # flock does not exclude threads sharing one descriptor

    def _fd(self, account: str) -> int:
        fd = self._fds.get(account)
        if fd is None:
            fd = os.open(self.directory / account, os.O_RDWR | os.O_CREAT, 0o600)
            self._fds[account] = fd
        return fd

    def record(self, account: str, ok: bool) -> None:
        with self._lock:
            fd = self._fd(account)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = int.from_bytes(os.pread(fd, 8, 0).ljust(8, b"\0"), "little")
                if ok:
                    if current:
                        os.pwrite(fd, _ZERO, 0)
                else:
                    os.pwrite(fd, (current + 1).to_bytes(8, "little"), 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def forget_except(self, accounts: Mapping[str, Any]) -> None:
        """Drop the streaks of accounts no longer configured (their label goes away)."""
        with self._lock:
            for path in self.directory.iterdir():
                if path.name not in accounts:
                    fd = self._fds.pop(path.name, None)
                    if fd is not None:
                        os.close(fd)
                    path.unlink(missing_ok=True)

    def read(self) -> dict[str, int]:
        """Every account's streak. No lock: an aligned 8-byte write is read whole, and a lock
        held here while gunicorn forks would be inherited by the new worker."""
        streaks: dict[str, int] = {}
        for path in sorted(self.directory.iterdir()):
            try:
                raw = path.read_bytes()[:8]
            except OSError:
                continue
            streaks[path.name] = int.from_bytes(raw.ljust(8, b"\0"), "little")
        return streaks


class StreakCollector:
    """`together_account_failure_streak` from the shared streak files, at scrape time."""

    def __init__(self, streaks: FailureStreaks) -> None:
        self.streaks = streaks

    def collect(self) -> list[Metric]:
        family = GaugeMetricFamily(
            "together_account_failure_streak",
            "Consecutive non-200 answers to events of this account, over all workers "
            "(Gorgias disables an integration after 100).",
            labels=["account"],
        )
        for account, streak in self.streaks.read().items():
            family.add_metric([account], streak)
        return [family]


# -- what the workers record ------------------------------------------------------------------


class Metrics:
    """The families a worker records into. With `registry=None` they are written to the
    multiprocess directory (see `enable_multiprocess`); tests pass a registry of their own."""

    def __init__(self, streaks: FailureStreaks, registry: CollectorRegistry | None = None) -> None:
        self.streaks = streaks
        self._configured: Mapping[str, Any] = {}
        self._config_labels: tuple[str, str] | None = None
        kw: dict[str, Any] = {"registry": registry}
        self.events = Counter(
            "together_events_total",
            "Events answered, by configured account (`none`: no configured account named) "
            "and outcome (`ok` or the error code).",
            ["account", "outcome"],
            **kw,
        )
        self.requests = Counter(
            "together_requests_total",
            "Answers by route (a fixed set; `other` for the rest) and HTTP status.",
            ["route", "status"],
            **kw,
        )
        self.event_duration = Histogram(
            "together_event_duration_seconds",
            "Time from the request to the answer, for events.",
            buckets=DURATION_BUCKETS,
            **kw,
        )
        self.shopify_duration = Histogram(
            "together_shopify_duration_seconds",
            "Time spent on the Shopify lookup of one event.",
            buckets=DURATION_BUCKETS,
            **kw,
        )
        self.store_errors = Counter(
            "together_store_errors",
            "Requests that met a failing or silent state store.",
            **kw,
        )
        self.stale_answers = Counter(
            "together_stale_credential_answers",
            "Events answered with a cached Shopify token because the store failed.",
            **kw,
        )
        self.config_accounts = Gauge(
            "together_config_accounts",
            "Accounts in the config being served (the largest over live workers).",
            multiprocess_mode="livemax",
            **kw,
        )
        self.config_reloads = Counter(
            "together_config_reloads",
            "Account folder reloads by the workers: `ok`, or `failed` (last good kept).",
            ["result"],
            **kw,
        )
        self.config_info = Gauge(
            "together_config_info",
            "1 for the account-file version (and git commit) a live worker serves.",
            ["version", "commit"],
            multiprocess_mode="livemax",
            **kw,
        )
        self.config_mtime = Gauge(
            "together_config_files_mtime_seconds",
            "Newest modification time of the account files being served (Unix time).",
            multiprocess_mode="livemax",
            **kw,
        )

    # -- hooks the handler calls --

    def config_loaded(self, snapshot: Snapshot, accounts_dir: Path) -> None:
        """A config is being served (at start and after every successful reload)."""
        self._configured = snapshot.accounts
        labels = (snapshot.version, snapshot.commit or "")
        if self._config_labels is not None and self._config_labels != labels:
            self.config_info.labels(*self._config_labels).set(0)
        self._config_labels = labels
        self.config_info.labels(*labels).set(1)
        self.config_accounts.set(len(snapshot.accounts))
        self.config_mtime.set(newest_mtime(accounts_dir))
        self.streaks.forget_except(snapshot.accounts)
        # Each configured account's series exist from the start at 0: `increase()` in the
        # alert rules counts nothing for a series whose first sample already holds the
        # failures (a new account's first unauthorized answers would never alert).
        for account in snapshot.accounts:
            for outcome in INITIALISED_OUTCOMES:
                self.events.labels(account, outcome)

    def config_reloaded(self, ok: bool) -> None:
        self.config_reloads.labels("ok" if ok else "failed").inc()

    def request(self, entry: Entry, status: int, duration_s: float) -> None:
        """One answered request (called once per request, after the answer is decided)."""
        self.requests.labels(entry.route, str(status)).inc()
        if entry.store_error is not None or entry.error == "store_unavailable":
            self.store_errors.inc()
        if entry.route != EVENTS_ROUTE:
            return
        account = entry.account if entry.account in self._configured else None
        self.events.labels(account or NO_ACCOUNT, entry.error or "ok").inc()
        self.event_duration.observe(duration_s)
        if entry.shopify_ms is not None:
            self.shopify_duration.observe(entry.shopify_ms / 1000)
        if entry.credential_stale_s is not None:
            self.stale_answers.inc()
        if account is not None:
            self.streaks.record(account, status == 200)


def newest_mtime(folder: Path) -> float:
    try:
        stamps = [entry.stat().st_mtime for entry in os.scandir(folder) if entry.is_file()]
    except OSError:
        return 0.0
    return max(stamps, default=0.0)


# -- the master: directory, hooks, /metrics server --------------------------------------------


def enable_multiprocess(parent: str | None = None) -> Path:
    """A fresh directory for this run's metric files, announced to `prometheus_client` (and to
    the workers, through the environment). Call before any worker starts."""
    directory = Path(tempfile.mkdtemp(prefix="together-metrics-", dir=parent))
    os.environ[MULTIPROC_ENV] = str(directory)
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return directory


def worker_metrics() -> Metrics:
    """The Metrics of a worker, writing to the run's directory."""
    directory = Path(os.environ[MULTIPROC_ENV])
    return Metrics(FailureStreaks(directory / STREAKS))


class Observable(Protocol):
    """What `attach` needs of `events.app.HandlerApp`."""

    @property
    def registry(self) -> Any: ...

    @property
    def request_listeners(self) -> list[Any]: ...


def attach(app: Observable) -> Metrics:
    """Record the app's answers and config reloads (in a worker, before it serves)."""
    metrics = worker_metrics()
    registry = app.registry
    metrics.config_loaded(registry.snapshot, registry.accounts_dir)

    def reloaded(loaded: bool, snapshot: Snapshot) -> None:
        metrics.config_reloaded(loaded)
        if loaded:
            metrics.config_loaded(snapshot, registry.accounts_dir)

    registry.reload_listeners.append(reloaded)
    app.request_listeners.append(metrics.request)
    return metrics


def child_exit(_arbiter: Any, worker: Any) -> None:
    """gunicorn hook: a dead worker's live gauges no longer count (its counters do)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        mark_process_dead(worker.pid, directory)  # type: ignore[no-untyped-call]


def scrape_registry(directory: Path) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(StreakCollector(FailureStreaks(directory / STREAKS)))
    return registry


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    registry: CollectorRegistry
    server_version = "together-reconcile-metrics"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self._send(404, b"not found: try /metrics\n", "text/plain; charset=utf-8")
            return
        self._send(200, generate_latest(self.registry), "text/plain; version=0.0.4; charset=utf-8")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log for scrapes."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, handler: type[_MetricsHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), handler)


class MetricsPortError(Exception):
    """The metrics port cannot be listened on."""


class MetricsServer:
    """`GET /metrics` on its own port, served by a thread of the master."""

    def __init__(self, host: str, port: int, directory: Path) -> None:
        handler = type("Handler", (_MetricsHandler,), {"registry": scrape_registry(directory)})
        self.directory = directory
        try:  # binds now: a busy port stops the start
            self._server = _Server(host, port, handler)
        except OSError as error:
            shutil.rmtree(directory, ignore_errors=True)
            reason = error.strerror or type(error).__name__
            message = f"cannot listen on {host}:{port} for metrics: {reason}"
            raise MetricsPortError(message) from None
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    @classmethod
    def start_for_run(cls, host: str, port: int) -> MetricsServer:
        """In the master, before any worker: a fresh metrics directory and its listener."""
        server = cls(host, port, enable_multiprocess())
        server.start()
        return server

    def after_fork(self, _arbiter: Any, _worker: Any) -> None:
        """gunicorn `post_fork`: a worker must not keep the master's listening socket."""
        self._server.socket.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self.directory, ignore_errors=True)
