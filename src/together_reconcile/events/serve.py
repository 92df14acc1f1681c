"""`together-reconcile serve`: the event handler under gunicorn's threaded workers.

Each worker runs `--threads` threads, so one worker serves many requests while they wait on
Shopify. The master loads the account files once (a broken folder stops the start with the
problems listed); on `SIGHUP` it loads them again and starts fresh workers with the result, or,
if the folder is broken, logs why and hands the new workers the last good config. Workers also
notice changed files by themselves (checked at most once a second).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication

from together_reconcile.config import ConfigError
from together_reconcile.events.app import (
    CLOSE_CONNECTION_KEY,
    ConfigSnapshot,
    Settings,
    StartResponse,
    WSGIApplication,
    create_app,
)
from together_reconcile.events.logs import HANDLER_LOGGER, configure_json_logging, json_line
from together_reconcile.store import Store, StoreError

log = logging.getLogger(HANDLER_LOGGER)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_WORKERS = 2  # this machine has 2 cores; threads cover the waiting on Shopify
DEFAULT_THREADS = 32  # 2 x 32 requests waiting ~50 ms on Shopify at once; CPU allows it
GRACEFUL_TIMEOUT_S = 10
KEEPALIVE_S = 5

_current = threading.local()


@dataclass(frozen=True)
class ServeOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    threads: int = DEFAULT_THREADS

    def gunicorn_config(self) -> dict[str, Any]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {
            "bind": f"{host}:{self.port}",
            "workers": self.workers,
            "threads": self.threads,
            "worker_class": "gthread",
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "timeout": 30,
            "keepalive": KEEPALIVE_S,
            "accesslog": None,  # our own JSON line per request replaces it
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "together-reconcile-serve",
            "pre_request": _remember_request,
            "limit_request_line": 8190,
        }


def _remember_request(worker: Any, req: Any) -> None:
    """gunicorn hook: keep the request so the app can ask to close its connection."""
    _current.request = req


def _closing(app: WSGIApplication) -> WSGIApplication:
    """Close the connection when the handler did not read the whole body (413, short body):
    gunicorn then neither waits for nor drains the rest."""

    def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Any:
        result = app(environ, start_response)
        request = getattr(_current, "request", None)
        if environ.get(CLOSE_CONNECTION_KEY) and request is not None:
            request.must_close = True
        return result

    return wrapped


class HandlerServer(BaseApplication):  # type: ignore[misc]
    """gunicorn application around `handler.create_app`."""

    def __init__(self, settings: Settings, snapshot: ConfigSnapshot, options: ServeOptions):
        self.settings = settings
        self.snapshot = snapshot
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.gunicorn_config().items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApplication:
        configure_json_logging()
        return _closing(create_app(self.settings, snapshot=self.snapshot))

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
                    }
                )
            )
        else:
            log.info(
                json_line({"event": "config_reloaded", "accounts": len(self.snapshot.accounts)})
            )


def prepare(settings: Settings) -> ConfigSnapshot:
    """What must hold before serving: valid account files (`ConfigError`). The store is
    migrated now if it answers; if not, serving starts anyway and `/readyz` says 503."""
    snapshot = ConfigSnapshot.load(settings.accounts_dir)
    try:
        Store.open(settings.state_url, settings.keyring).close()
    except StoreError as error:
        configure_json_logging()
        log.warning(json_line({"event": "store_unavailable_at_start", "message": str(error)}))
    return snapshot


def run_server(settings: Settings, options: ServeOptions) -> None:
    """Serve until stopped (SIGTERM/SIGINT: graceful). Raises `ConfigError` before starting."""
    snapshot = prepare(settings)
    HandlerServer(settings, snapshot, options).run()
