"""The sandbox's in-memory world: accounts, stores, objects, knobs, faults, request log.

Everything lives in one `SandboxState` guarded by one lock. Handlers never hold the lock while
sleeping (latency, slow faults) or while making outgoing calls (fire).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Target = Literal["gorgias", "shopify"]
FaultKind = Literal["status", "drop", "slow", "write_then_fail", "throttled"]

TARGETS: tuple[str, ...] = ("gorgias", "shopify")
FAULT_KINDS: tuple[str, ...] = ("status", "drop", "slow", "write_then_fail", "throttled")
BEARER_RATE_LIMIT = (80, 20.0)
BASIC_RATE_LIMIT = (40, 20.0)
DEFAULT_PAGE_SIZE = 30
MAX_PAGE_SIZE = 100
FAULT_SEED = 20261127
SHOPIFY_BUCKET_SIZE = 2000.0
SHOPIFY_RESTORE_RATE = 100.0
DEFAULT_TOKEN_LIFETIME_S = 24 * 3600.0  # Gorgias access tokens live 24 hours


class ControlError(ValueError):
    """A control call with bad arguments; the message says what to fix."""


def utc_now_naive_iso() -> str:
    """Gorgias-style timestamp: UTC, microseconds, no offset."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


@dataclass
class TokenRecord:
    """One credential an account accepts. Room for OAuth revoke/expire hooks."""

    kind: Literal["bearer", "basic"]
    revoked: bool = False
    expires_at: float | None = None  # monotonic deadline, None = never

    def usable(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


@dataclass
class LeakyBucket:
    """A leaky bucket of `limit` requests draining fully over `window_s` seconds."""

    limit: int
    window_s: float
    level: float = 0.0
    updated: float = 0.0

    def _drain(self, now: float) -> None:
        rate = self.limit / self.window_s
        self.level = max(0.0, self.level - (now - self.updated) * rate)
        self.updated = now

    def take(self, now: float) -> tuple[bool, int, float]:
        """Try to add one request: (allowed, used, retry_after_s)."""
        self._drain(now)
        if self.level + 1 > self.limit:
            rate = self.limit / self.window_s
            wait = (self.level + 1 - self.limit) / rate
            return False, math.ceil(self.level), wait
        self.level += 1
        return True, math.ceil(self.level), 0.0


@dataclass
class AuthorizationCode:
    """A code `/oauth/authorize` issued: redeemable once, for a while, with the same URI."""

    client_id: str
    redirect_uri: str
    scope: str
    expires_at: float
    used: bool = False


@dataclass
class OAuthGrants:
    """One account's OAuth side: codes and refresh tokens (rotated on each refresh)."""

    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    refresh_tokens: dict[str, bool] = field(default_factory=dict)  # token -> revoked
    latest_refresh_token: str | None = None
    refresh_grants: int = 0


@dataclass
class GorgiasAccount:
    name: str
    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    oauth: OAuthGrants = field(default_factory=OAuthGrants)
    basic_keys: dict[str, str] = field(default_factory=dict)  # api_email -> api_key
    integrations: dict[int, dict[str, Any]] = field(default_factory=dict)
    widgets: dict[int, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)  # email -> {id: answer}
    buckets: dict[str, LeakyBucket] = field(default_factory=dict)  # auth kind -> bucket


@dataclass
class ShopifyStore:
    name: str
    tokens: set[str] = field(default_factory=set)
    orders: list[dict[str, Any]] = field(default_factory=list)
    available: float = SHOPIFY_BUCKET_SIZE
    updated: float = 0.0

    def restore(self, now: float) -> None:
        self.available = min(
            SHOPIFY_BUCKET_SIZE, self.available + (now - self.updated) * SHOPIFY_RESTORE_RATE
        )
        self.updated = now


@dataclass
class Fault:
    target: str
    kind: str
    status: int = 502
    method: str | None = None
    path_contains: str | None = None
    account: str | None = None
    remaining: int | None = 1
    rate: float | None = None
    delay_s: float = 0.0

    def matches(self, target: str, method: str, path: str, account: str | None) -> bool:
        if self.target != target or self.remaining == 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path_contains is not None and self.path_contains not in path:
            return False
        if self.kind == "write_then_fail" and method in ("GET", "HEAD"):
            return False
        return self.account is None or self.account == account

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "status": self.status,
            "method": self.method,
            "path_contains": self.path_contains,
            "account": self.account,
            "remaining": self.remaining,
            "rate": self.rate,
            "delay_s": self.delay_s,
        }


@dataclass
class Knobs:
    page_size: int = MAX_PAGE_SIZE
    gorgias_latency_s: float = 0.0
    shopify_latency_s: float = 0.0
    rate_limit: tuple[int, float] | None = None  # None = Gorgias's defaults per auth kind
    oauth_client: tuple[str, str] | None = None  # (client_id, client_secret) of our app
    token_lifetime_s: float = DEFAULT_TOKEN_LIFETIME_S


class SandboxState:
    """All sandbox data. Methods named like control calls are the control API's core."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self._init()

    def _init(self) -> None:
        self.accounts: dict[str, GorgiasAccount] = {}
        self.stores: dict[str, ShopifyStore] = {}
        self.knobs = Knobs()
        self.faults: list[Fault] = []
        self.log: list[dict[str, Any]] = []
        self.random = random.Random(FAULT_SEED)
        self.next_id = 1
        self.next_http_id = 1

    # ----------------------------------------------------------------- ids
    def new_id(self) -> int:
        with self.lock:
            value = self.next_id
            self.next_id += 1
            return value

    def new_http_id(self) -> int:
        with self.lock:
            value = self.next_http_id
            self.next_http_id += 1
            return value

    # ----------------------------------------------------------- control
    def reset(self) -> None:
        with self.lock:
            self._init()

    def account(self, name: str) -> GorgiasAccount:
        found = self.accounts.get(name)
        if found is None:
            raise ControlError(f"unknown Gorgias account {name!r}: add it first")
        return found

    def store(self, name: str) -> ShopifyStore:
        found = self.stores.get(name)
        if found is None:
            raise ControlError(f"unknown Shopify store {name!r}: add it first")
        return found

    def add_gorgias_account(
        self, account: str, token: str, api_email: str | None = None, api_key: str | None = None
    ) -> None:
        with self.lock:
            record = self.accounts.setdefault(account, GorgiasAccount(account))
            record.tokens[token] = TokenRecord("bearer")
            if api_email is not None or api_key is not None:
                if not api_email or not api_key:
                    raise ControlError("give both api_email and api_key for Basic auth")
                record.basic_keys[api_email] = api_key

    def add_shopify_store(self, store: str, token: str) -> None:
        with self.lock:
            record = self.stores.setdefault(store, ShopifyStore(store, updated=self.clock()))
            record.tokens.add(token)

    def bucket(self, account: GorgiasAccount, kind: str) -> LeakyBucket:
        if self.knobs.rate_limit is not None:
            limit, window = self.knobs.rate_limit
        else:
            limit, window = BEARER_RATE_LIMIT if kind == "bearer" else BASIC_RATE_LIMIT
        bucket = account.buckets.get(kind)
        if bucket is None or bucket.limit != limit or bucket.window_s != window:
            bucket = LeakyBucket(limit, window, updated=self.clock())
            account.buckets[kind] = bucket
        return bucket

    def set_page_size(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_PAGE_SIZE:
            raise ControlError(f"page size must be an integer from 1 to {MAX_PAGE_SIZE}")
        with self.lock:
            self.knobs.page_size = n

    def set_latency(self, gorgias_ms: float | None = None, shopify_ms: float | None = None) -> None:
        with self.lock:
            if gorgias_ms is not None:
                self.knobs.gorgias_latency_s = _non_negative(gorgias_ms, "gorgias_ms") / 1000
            if shopify_ms is not None:
                self.knobs.shopify_latency_s = _non_negative(shopify_ms, "shopify_ms") / 1000

    def set_rate_limit(self, limit: int, window_s: float) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ControlError("limit must be a positive integer")
        if _non_negative(window_s, "window_s") <= 0:
            raise ControlError("window_s must be positive")
        with self.lock:
            self.knobs.rate_limit = (limit, float(window_s))
            for account in self.accounts.values():
                account.buckets.clear()

    def add_fault(
        self,
        target: str = "gorgias",
        kind: str = "status",
        status: int = 502,
        method: str | None = None,
        path_contains: str | None = None,
        account: str | None = None,
        count: int | None = 1,
        rate: float | None = None,
        delay_s: float = 0.0,
    ) -> dict[str, Any]:
        if target not in TARGETS:
            raise ControlError(f"target must be one of {', '.join(TARGETS)}")
        if kind not in FAULT_KINDS:
            raise ControlError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if kind == "throttled" and target != "shopify":
            raise ControlError("kind 'throttled' only applies to target 'shopify'")
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ControlError("status must be an HTTP status code")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ControlError("count must be a positive integer, or None for forever")
        if rate is not None and not 0.0 <= float(rate) <= 1.0:
            raise ControlError("rate must be a probability from 0 to 1")
        fault = Fault(
            target=target,
            kind=kind,
            status=status,
            method=method.upper() if method else None,
            path_contains=path_contains,
            account=account,
            remaining=count,
            rate=rate,
            delay_s=_non_negative(delay_s, "delay_s"),
        )
        with self.lock:
            self.faults.append(fault)
        return fault.describe()

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, target: str, method: str, path: str, account: str | None) -> Fault | None:
        """The first matching fault, consuming one of its uses; None if none fires."""
        with self.lock:
            for fault in self.faults:
                if not fault.matches(target, method, path, account):
                    continue
                if fault.rate is not None and self.random.random() >= fault.rate:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def record(
        self, target: str, method: str, path: str, query: str, account: str | None, status: int
    ) -> None:
        entry = {
            "target": target,
            "method": method,
            "path": path,
            "query": query,
            "account": account,
            "status": status,
        }
        with self.lock:
            self.log.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(entry) for entry in self.log]

    def clear_requests(self) -> None:
        with self.lock:
            self.log.clear()


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ControlError(f"{name} must be a non-negative number")
    return float(value)
