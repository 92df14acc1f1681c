"""`together-reconcile sandbox`: serve until Ctrl-C or SIGTERM, seeded with demo data and an
optional --seed file (YAML or JSON)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from together_reconcile.sandbox.control import SandboxControlError, SandboxController
from together_reconcile.sandbox.demo import seed_demo
from together_reconcile.sandbox.server import RunningSandbox, start_sandbox


class SeedFileError(ValueError):
    """The --seed file is unreadable or malformed; the message says what to fix."""


def load_seed(path: Path, controller: SandboxController) -> dict[str, Any]:
    """Apply a seed file, YAML or JSON (JSON is YAML)::

    {"gorgias_accounts": [{"account", "token", "api_email"?, "api_key"?,
                           "integrations"?: [{...}], "widgets"?: [{...}]}],
     "shopify_stores": [{"store", "token", "orders"?: [...]}]}

    `integrations` and `widgets` are stored as they are (foreign objects, like a support
    case's account holds), so a user can reproduce a case locally.
    """
    try:
        seed = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SeedFileError(f"cannot read seed file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        reason = getattr(exc, "problem", None) or "syntax error"
        raise SeedFileError(f"{where}: not valid YAML or JSON: {reason}") from None
    if not isinstance(seed, dict):
        raise SeedFileError(f"{path}: the seed must be a mapping (a JSON object)")
    seeded: dict[str, Any] = {"gorgias_accounts": {}, "shopify_stores": {}}
    try:
        for entry in seed.get("gorgias_accounts") or []:
            controller.add_gorgias_account(
                entry["account"],
                entry["token"],
                api_email=entry.get("api_email"),
                api_key=entry.get("api_key"),
            )
            for integration in entry.get("integrations") or []:
                controller.insert_integration(entry["account"], integration)
            for widget in entry.get("widgets") or []:
                controller.insert_widget(entry["account"], widget)
            seeded["gorgias_accounts"][entry["account"]] = entry["token"]
        for entry in seed.get("shopify_stores") or []:
            controller.add_shopify_store(entry["store"], entry["token"])
            controller.add_orders(entry["store"], entry.get("orders") or [])
            seeded["shopify_stores"][entry["store"]] = entry["token"]
    except (KeyError, TypeError, AttributeError) as exc:
        raise SeedFileError(
            f"{path}: each entry needs 'account'/'store' and 'token' ({exc})"
        ) from None
    except SandboxControlError as exc:
        raise SeedFileError(f"{path}: {exc}") from None
    return seeded


def banner(running: RunningSandbox, seeded: dict[str, Any]) -> list[str]:
    lines = [
        f"Sandbox listening on {running.url}",
        f"TOGETHER_GORGIAS_URL={running.gorgias_url_template}",
        f"TOGETHER_SHOPIFY_URL={running.shopify_url_template}",
    ]
    if seeded["gorgias_accounts"] or seeded["shopify_stores"]:
        lines.append("Sandbox-only tokens (not secrets: they open nothing but this sandbox):")
    for account, token in seeded["gorgias_accounts"].items():
        lines.append(f"  Gorgias {account}.gorgias.com  Authorization: Bearer {token}")
    for store, token in seeded["shopify_stores"].items():
        lines.append(f"  Shopify {store}.myshopify.com  X-Shopify-Access-Token: {token}")
    lines.append(f"Control API: POST {running.url}/_control/<call>. Ctrl-C or SIGTERM stops it.")
    return lines


def run_sandbox(
    host: str,
    port: int,
    *,
    demo: bool,
    seed_file: Path | None,
    echo: Callable[[str], None],
) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status (0)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with start_sandbox(host, port) as running:
            seeded: dict[str, Any] = {"gorgias_accounts": {}, "shopify_stores": {}}
            if demo:
                seeded = seed_demo(running.control)
            if seed_file is not None:
                extra = load_seed(seed_file, running.control)
                for key in seeded:
                    seeded[key].update(extra[key])
            for line in banner(running, seeded):
                echo(line)
            while not stop.wait(1.0):
                pass
        echo("Sandbox stopped.")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
