"""`together-reconcile serve`: the event handler under gunicorn, threaded workers.

Each worker runs `--threads` threads, so one worker serves many requests while they wait on
Shopify. The master loads the account files once (a broken folder stops the start with the
problems listed). After that no signal is needed for account changes: every worker checks the
folder once a second on a thread of its own and serves a changed, valid folder at once; a
broken one keeps the last good config and is logged. `SIGHUP` still works (fresh workers, the
old ones drain), but is never required.

Stopping (`SIGTERM`): `/readyz` answers 503 at once; after `--drain-delay` seconds (time for a
load balancer to notice) the listening socket closes, and each worker answers what was sent on
its open connections — the last answer on each carries `Connection: close` — and exits within
`--graceful-timeout`. See `events.worker` for the worker side.

Settings, lowest first: serve's defaults, a gunicorn config file (`--gunicorn-config`),
`GUNICORN_CMD_ARGS`, then serve's own options and `TOGETHER_*` variables.
"""

from __future__ import annotations

import logging
import mmap
import os
import shlex
import signal
import threading
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import Application, BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger as GunicornLogger

from together_reconcile.config import ConfigError
from together_reconcile.events.app import (
    CLOSE_CONNECTION_KEY,
    READ_DEADLINE_KEY,
    ConfigSnapshot,
    Settings,
    StartResponse,
    WSGIApplication,
    create_app,
)
from together_reconcile.events.logs import (
    HANDLER_LOGGER,
    JsonFormatter,
    configure_json_logging,
    json_line,
)
from together_reconcile.events.worker import (
    DEFAULT_HEADER_TIMEOUT_S,
    DrainingThreadWorker,
    current_connection,
)
from together_reconcile.store import Store, StoreError

if TYPE_CHECKING:
    from together_reconcile.events.metrics import MetricsServer

log = logging.getLogger(HANDLER_LOGGER)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_WORKERS = 2  # this machine has 2 cores; threads cover the waiting on Shopify
DEFAULT_THREADS = 32  # 2 x 32 requests waiting ~50 ms on Shopify at once; CPU allows it
DEFAULT_TIMEOUT_S = 30  # a worker silent this long is restarted
DEFAULT_GRACEFUL_TIMEOUT_S = 30
DEFAULT_KEEPALIVE_S = 5
WORKER_CLASS = "together_reconcile.events.worker.DrainingThreadWorker"

_current = threading.local()


@dataclass(frozen=True)
class ServeOptions:
    """serve's settings. `given` names the ones set on the command line or by a `TOGETHER_*`
    variable: those win over a config file and `GUNICORN_CMD_ARGS`; the others are defaults."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    threads: int = DEFAULT_THREADS
    timeout: int = DEFAULT_TIMEOUT_S
    graceful_timeout: int = DEFAULT_GRACEFUL_TIMEOUT_S
    keep_alive: int = DEFAULT_KEEPALIVE_S
    max_requests: int = 0
    max_requests_jitter: int = 0
    forwarded_allow_ips: str = "127.0.0.1,::1"
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    drain_delay: float = 0.0
    config: str | None = None
    metrics_port: int | None = None  # None: no metrics; see events.metrics
    metrics_host: str = DEFAULT_HOST
    given: frozenset[str] = field(default_factory=frozenset)

    def defaults(self) -> dict[str, Any]:
        """serve's defaults as gunicorn settings (a config file may change these)."""
        return {
            "workers": DEFAULT_WORKERS,
            "threads": DEFAULT_THREADS,
            "worker_class": WORKER_CLASS,
            "graceful_timeout": DEFAULT_GRACEFUL_TIMEOUT_S,
            "timeout": DEFAULT_TIMEOUT_S,
            "keepalive": DEFAULT_KEEPALIVE_S,
            "accesslog": None,  # our own JSON line per request replaces it
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "together-reconcile-serve",
            "limit_request_line": 8190,
            "bind": [self._bind(DEFAULT_HOST, DEFAULT_PORT)],
        }

    def explicit(self) -> dict[str, Any]:
        """The gunicorn settings named in `given` (they override everything else)."""
        settings: dict[str, Any] = {}
        if {"host", "port"} & self.given:
            settings["bind"] = [self._bind(self.host, self.port)]
        names = {
            "workers": "workers",
            "threads": "threads",
            "timeout": "timeout",
            "graceful_timeout": "graceful_timeout",
            "keep_alive": "keepalive",
            "max_requests": "max_requests",
            "max_requests_jitter": "max_requests_jitter",
            "forwarded_allow_ips": "forwarded_allow_ips",
        }
        for ours, theirs in names.items():
            if ours in self.given:
                settings[theirs] = getattr(self, ours)
        return settings

    @staticmethod
    def _bind(host: str, port: int) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def gunicorn_config(self) -> dict[str, Any]:
        """Defaults then explicit settings (no config file, no GUNICORN_CMD_ARGS)."""
        return {**self.defaults(), **self.explicit()}


def given_options(**values: Any) -> ServeOptions:
    """ServeOptions from the CLI's values (None: not given)."""
    known = {f.name for f in fields(ServeOptions)} - {"given"}
    chosen = {name: value for name, value in values.items() if name in known and value is not None}
    return ServeOptions(**chosen, given=frozenset(chosen) - {"config"})


class Draining:
    """One byte shared by the master and every worker it forks: set when the master begins
    to stop, so every worker's `/readyz` says 503 at once."""

    def __init__(self) -> None:
        self._flag = mmap.mmap(-1, 1)

    def set(self) -> None:
        self._flag[0] = 1

    def __call__(self) -> bool:
        return self._flag[0] == 1


class JsonLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's own lines (boot, signals, worker exits) as JSON, like ours."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())


class DrainingArbiter(Arbiter):  # type: ignore[misc]
    """The master: on a graceful stop, `/readyz` fails first, then (after the drain delay) the
    listening sockets close and the workers drain."""

    def __init__(self, app: HandlerServer) -> None:
        super().__init__(app)
        self.handler_server = app

    def spawn_worker(self) -> int:
        pid: int = super().spawn_worker()  # only the master returns from this
        worker = self.WORKERS.get(pid)
        if worker is not None:
            worker.spawned = (time.monotonic(), worker.tmp.last_update())
        return pid

    @staticmethod
    def _booted(worker: Any) -> bool:
        """A worker has booted once it touched its heartbeat file (it does in its loop)."""
        spawned = getattr(worker, "spawned", None)
        return spawned is None or worker.tmp.last_update() != spawned[1]

    def manage_workers(self) -> None:
        """As gunicorn's, except that (1) after SIGHUP the old workers are told to stop only
        once the new ones have booted (or `timeout` passed), so nobody waits for a boot, and
        (2) a worker told to stop is told once: gunicorn repeats SIGTERM on every turn of its
        loop, and one arriving while the worker exits kills it."""
        if len(self.WORKERS) < self.num_workers:
            self.spawn_workers()
        workers = sorted(self.WORKERS.items(), key=lambda item: item[1].age)
        active = [item for item in workers if not getattr(item[1], "told_to_stop", False)]
        if len(active) <= self.num_workers:
            return
        keep = active[-self.num_workers :]
        waited = min(getattr(w, "spawned", (time.monotonic(), 0))[0] for _p, w in keep)
        if not all(self._booted(w) for _p, w in keep) and time.monotonic() - waited < self.timeout:
            return  # checked again on the next turn (at most a second)
        for pid, worker in active[: -self.num_workers]:
            worker.told_to_stop = True
            self.kill_worker(pid, signal.SIGTERM)

    def stop(self, graceful: bool = True) -> None:
        server = self.handler_server
        if graceful and not server.draining():
            server.draining.set()
            delay = server.options.drain_delay
            self.log.info(
                json_line({"event": "draining", "drain_delay_s": delay, "pid": os.getpid()})
            )
            end = time.monotonic() + delay
            while time.monotonic() < end:
                time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        super().stop(graceful)


def _remember_request(worker: Any, req: Any) -> None:
    """gunicorn hook: keep the request so the app can ask to close its connection."""
    _current.request = req


def _chain(first: Any, second: Any) -> Any:
    """Two gunicorn hooks taking (a, b) as one (gunicorn checks a hook's arity)."""

    def both(a: Any, b: Any) -> None:
        first(a, b)
        second(a, b)

    return both


def _serving(
    app: WSGIApplication, worker: DrainingThreadWorker | None, body_timeout_s: float
) -> WSGIApplication:
    """Connect the app to the worker: close the connection when the handler did not read the
    whole body (413, short body: gunicorn then neither waits for nor drains the rest), and let
    the app bound the time its body takes to arrive."""

    def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Any:
        conn = current_connection()
        if worker is not None and conn is not None:
            if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
                worker.set_read_deadline(conn, None)  # no body: the head is all there is
            else:
                worker.set_read_deadline(conn, body_timeout_s)
            environ[READ_DEADLINE_KEY] = lambda seconds: worker.set_read_deadline(conn, seconds)
        result = app(environ, start_response)
        request = getattr(_current, "request", None)
        if environ.get(CLOSE_CONNECTION_KEY) and request is not None:
            request.must_close = True
        return result

    return wrapped


class HandlerServer(BaseApplication):  # type: ignore[misc]
    """gunicorn application around `events.app.create_app`."""

    def __init__(
        self,
        settings: Settings,
        snapshot: ConfigSnapshot,
        options: ServeOptions,
        metrics_server: MetricsServer | None = None,
    ):
        self.settings = settings
        self.snapshot = snapshot
        self.options = options
        self.metrics_server = metrics_server
        self.draining = Draining()
        self.worker: DrainingThreadWorker | None = None
        DrainingThreadWorker.header_timeout_s = options.header_timeout
        DrainingThreadWorker.body_timeout_s = settings.body_timeout_s
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.defaults().items():
            self.cfg.set(key, value)
        if self.options.config:
            # gunicorn's own loader: a Python file, or python:module
            self.load_config_from_file(self.options.config)
        env_args = (os.environ.get("GUNICORN_CMD_ARGS") or "").strip()
        if env_args:
            parsed = self.cfg.parser().parse_args(shlex.split(env_args))
            for key, value in vars(parsed).items():
                if value is not None and key != "args" and key in self.cfg.settings:
                    self.cfg.set(key.lower(), value)
        for key, value in self.options.explicit().items():
            self.cfg.set(key, value)
        # What the handler's promises rest on, whatever the file says: our worker, JSON lines.
        self.cfg.set("worker_class", WORKER_CLASS)
        self.cfg.set("logger_class", "together_reconcile.events.serve.JsonLogger")
        user_pre_request = self.cfg.pre_request
        if getattr(user_pre_request, "__module__", "") == "gunicorn.config":
            self.cfg.set("pre_request", _remember_request)
        else:
            self.cfg.set("pre_request", _chain(_remember_request, user_pre_request))
        self.cfg.set("post_fork", _chain(self._post_fork, self.cfg.post_fork))
        if self.metrics_server is not None:
            from together_reconcile.events.metrics import child_exit

            self.cfg.set("post_fork", _chain(self.metrics_server.after_fork, self.cfg.post_fork))
            self.cfg.set("child_exit", _chain(child_exit, self.cfg.child_exit))

    # gunicorn's config-file loading, as its command-line Application does it
    get_config_from_filename = Application.get_config_from_filename
    get_config_from_module_name = Application.get_config_from_module_name
    load_config_from_module_name_or_filename = Application.load_config_from_module_name_or_filename
    load_config_from_file = Application.load_config_from_file

    def _post_fork(self, _arbiter: Any, worker: Any) -> None:
        self.worker = worker if isinstance(worker, DrainingThreadWorker) else None

    def load(self) -> WSGIApplication:
        configure_json_logging()
        app = create_app(self.settings, snapshot=self.snapshot, draining=self.draining)
        if self.metrics_server is not None:
            from together_reconcile.events.metrics import attach

            attach(app)
        app.registry.watch()  # a folder changed since the master loaded it is served now
        app.warm_up()  # before this worker counts as booted (see DrainingArbiter)
        return _serving(app, self.worker, self.settings.body_timeout_s)

    def reload(self) -> None:
        super().reload()
        try:
            self.snapshot = ConfigSnapshot.load(self.settings.accounts_dir)
        except ConfigError as error:
            log.error(
                json_line(
                    {
                        "event": "config_reload_failed",
                        "message": "SIGHUP: kept the last good account config",
                        "problems": [str(problem) for problem in error.problems[:5]],
                        "kept": self.snapshot.describe(),
                    }
                )
            )
        except Exception as error:  # any failure keeps the last good config
            log.error(
                json_line(
                    {
                        "event": "config_reload_failed",
                        "message": "SIGHUP: kept the last good account config",
                        "error": type(error).__name__,
                        "kept": self.snapshot.describe(),
                    }
                )
            )
        else:
            log.info(json_line({"event": "config_reloaded", **self.snapshot.describe()}))

    def run(self) -> None:
        self.announce()
        DrainingArbiter(self).run()

    def announce(self) -> None:
        """One line at start: what runs, and the PostgreSQL connections it may hold."""
        workers = int(self.cfg.workers)
        pool = self.settings.store_pool_size
        log.info(
            json_line(
                {
                    "event": "serve_starting",
                    "bind": list(self.cfg.bind),
                    "workers": workers,
                    "threads": int(self.cfg.threads),
                    "timeout_s": self.cfg.timeout,
                    "graceful_timeout_s": self.cfg.graceful_timeout,
                    "keep_alive_s": self.cfg.keepalive,
                    "max_requests": self.cfg.max_requests,
                    "max_requests_jitter": self.cfg.max_requests_jitter,
                    "header_timeout_s": self.options.header_timeout,
                    "drain_delay_s": self.options.drain_delay,
                    "store_pool_size": pool,
                    "postgres_connections": workers * pool,
                    "postgres_connections_note": (
                        "workers x store pool size per replica (twice that for a moment "
                        "during SIGHUP or a max-requests restart); N replicas use N times it"
                    ),
                    **self.snapshot.describe(),
                }
            )
        )


def prepare(settings: Settings) -> ConfigSnapshot:
    """What must hold before serving: valid account files (`ConfigError`). The store is
    migrated now if it answers; if not, serving starts anyway and `/readyz` says 503."""
    configure_json_logging()
    snapshot = ConfigSnapshot.load(settings.accounts_dir)
    try:
        Store.open(settings.state_url, settings.keyring).close()  # migrations: CLI limits
    except StoreError as error:
        log.warning(json_line({"event": "store_unavailable_at_start", "reason": str(error)}))
    return snapshot


def run_server(settings: Settings, options: ServeOptions) -> None:
    """Serve until stopped (SIGTERM: drain; SIGINT/SIGQUIT: quick). Raises `ConfigError`
    before starting."""
    snapshot = prepare(settings)
    metrics_server = None
    if options.metrics_port is not None:
        from together_reconcile.events.metrics import MetricsServer

        # A fresh metrics directory and the /metrics listener, before any worker starts.
        metrics_server = MetricsServer.start_for_run(options.metrics_host, options.metrics_port)
    try:
        HandlerServer(settings, snapshot, options, metrics_server).run()
    finally:
        if metrics_server is not None:
            metrics_server.stop()
