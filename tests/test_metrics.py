"""events.metrics in one process: what each answer adds, the bounded labels, and the failure
streak shared by several processes (tests/test_metrics_serve.py checks `serve` itself)."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from together_reconcile.events.metrics import (
    FailureStreaks,
    Metrics,
    StreakCollector,
)


@dataclass
class Entry:
    route: str = "/gorgias/events"
    account: str | None = "acme.gorgias.com"
    error: str | None = None
    shopify_ms: float | None = None
    credential_stale_s: float | None = None
    store_error: str | None = None


@dataclass
class Snapshot:
    accounts: dict[str, Any]
    version: str = "sha256:0011223344556677"
    commit: str | None = None


def make(tmp_path: Path) -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    streaks = FailureStreaks(tmp_path / "streaks")
    registry.register(StreakCollector(streaks))
    metrics = Metrics(streaks, registry=registry)
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    (accounts / "acme.yaml").write_text("x")
    metrics.config_loaded(Snapshot({"acme.gorgias.com": 1, "beta.gorgias.com": 2}), accounts)
    return metrics, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_an_event_counts_by_configured_account_and_outcome(tmp_path: Path) -> None:
    metrics, registry = make(tmp_path)
    metrics.request(Entry(shopify_ms=50.0), 200, 0.06)
    metrics.request(Entry(error="shopify_timeout", shopify_ms=5000.0), 504, 5.01)
    metrics.request(Entry(account="evil.gorgias.com", error="unknown_account"), 404, 0.001)
    metrics.request(Entry(account=None, error="invalid_json"), 400, 0.001)
    metrics.request(Entry(route="/healthz", account=None), 200, 0.0001)

    assert value(registry, "together_events_total", account="acme.gorgias.com", outcome="ok") == 1
    assert (
        value(
            registry, "together_events_total", account="acme.gorgias.com", outcome="shopify_timeout"
        )
        == 1
    )
    # An account that is not configured never becomes a label.
    assert value(registry, "together_events_total", account="none", outcome="unknown_account") == 1
    assert value(registry, "together_events_total", account="none", outcome="invalid_json") == 1
    assert b"evil.gorgias.com" not in generate_latest(registry)
    assert value(registry, "together_event_duration_seconds_count") == 4
    assert value(registry, "together_event_duration_seconds_bucket", le="0.1") == 3
    assert value(registry, "together_shopify_duration_seconds_count") == 2
    assert value(registry, "together_shopify_duration_seconds_bucket", le="0.05") == 1
    assert value(registry, "together_requests_total", route="/gorgias/events", status="504") == 1
    assert value(registry, "together_requests_total", route="/healthz", status="200") == 1


def test_store_errors_and_stale_answers(tmp_path: Path) -> None:
    metrics, registry = make(tmp_path)
    metrics.request(Entry(credential_stale_s=12.0, store_error="timeout"), 200, 0.9)
    metrics.request(Entry(error="store_unavailable"), 503, 0.8)
    metrics.request(Entry(route="/readyz", account=None, error="store_unavailable"), 503, 1.0)
    assert value(registry, "together_store_errors_total") == 3
    assert value(registry, "together_stale_credential_answers_total") == 1


def test_config_metrics(tmp_path: Path) -> None:
    metrics, registry = make(tmp_path)
    assert value(registry, "together_config_accounts") == 2
    first = {"version": "sha256:0011223344556677", "commit": ""}
    assert value(registry, "together_config_info", **first) == 1
    mtime = (tmp_path / "accounts" / "acme.yaml").stat().st_mtime
    assert value(registry, "together_config_files_mtime_seconds") == mtime
    metrics.config_reloaded(False)
    metrics.config_loaded(
        Snapshot({"acme.gorgias.com": 1}, "sha256:8899aabbccddeeff", "ab" * 20),
        tmp_path / "accounts",
    )
    metrics.config_reloaded(True)
    assert value(registry, "together_config_info", **first) == 0
    second = {"version": "sha256:8899aabbccddeeff", "commit": "ab" * 20}
    assert value(registry, "together_config_info", **second) == 1
    assert value(registry, "together_config_accounts") == 1
    assert value(registry, "together_config_reloads_total", result="failed") == 1
    assert value(registry, "together_config_reloads_total", result="ok") == 1


def test_streak_counts_failures_in_a_row_and_resets_on_success(tmp_path: Path) -> None:
    metrics, registry = make(tmp_path)
    for _ in range(3):
        metrics.request(Entry(error="shopify_unavailable"), 502, 0.1)
    metrics.request(Entry(account="beta.gorgias.com", error="invalid_token"), 401, 0.0)
    streak = "together_account_failure_streak"
    assert value(registry, streak, account="acme.gorgias.com") == 3
    assert value(registry, streak, account="beta.gorgias.com") == 1
    metrics.request(Entry(), 200, 0.1)
    assert value(registry, streak, account="acme.gorgias.com") == 0
    metrics.request(Entry(error="shopify_unavailable"), 502, 0.1)
    assert value(registry, streak, account="acme.gorgias.com") == 1
    # An account removed from the files loses its streak (and its label).
    metrics.config_loaded(Snapshot({"acme.gorgias.com": 1}), tmp_path / "accounts")
    assert value(registry, streak, account="beta.gorgias.com") is None
    assert value(registry, streak, account="acme.gorgias.com") == 1


def _fail_many(directory: str, account: str, count: int) -> None:
    streaks = FailureStreaks(Path(directory))
    for _ in range(count):
        streaks.record(account, ok=False)


def test_streak_is_shared_by_processes(tmp_path: Path) -> None:
    """Four processes (as gunicorn's workers) failing 500 times each at once: 2,000 in a row."""
    directory = tmp_path / "streaks"
    FailureStreaks(directory)
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_fail_many, args=(str(directory), "acme.gorgias.com", 500))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert FailureStreaks(directory).read() == {"acme.gorgias.com": 2000}
    FailureStreaks(directory).record("acme.gorgias.com", ok=True)
    assert FailureStreaks(directory).read() == {"acme.gorgias.com": 0}


def test_configured_accounts_start_at_zero_for_the_alerted_outcomes(tmp_path: Path) -> None:
    """`increase()` sees a new account's first unauthorized answers only if its series existed
    at 0 before them (the alert TogetherShopifyUnauthorized)."""
    _metrics, registry = make(tmp_path)
    for account in ("acme.gorgias.com", "beta.gorgias.com"):
        for outcome in ("ok", "shopify_unauthorized"):
            assert value(registry, "together_events_total", account=account, outcome=outcome) == 0
    assert value(registry, "together_events_total", account="acme.gorgias.com", outcome="x") is None
