"""`verify`: make the call Gorgias makes, through `TOGETHER_PUBLIC_URL`, and record the result.

For one account: `POST {TOGETHER_PUBLIC_URL}/gorgias/events` with the account's current event
token (derived from the newest key) and the reserved verification body
(`together_reconcile.verification`). `ok` only when the handler answers 200 with the whole
answer shape for the account's Shopify store, which the handler gives for that body only after
the Shopify search answered; so a missing or refused Shopify token, an unknown account, other
keys, a wrong URL and TLS all show, each with its own code:

- the handler's own error code (`unknown_account`, `invalid_token`, `shopify_not_connected`,
  `shopify_unauthorized`, `store_unavailable`, ...) when it answered with an error body;
- `unreachable` (no connection), `tls_error` (the TLS handshake failed), `timeout` (no whole
  answer within `timeout_s`), `bad_answer` (anything else: not JSON, another shape, `{}`, a
  redirect, an error without our error body, another Shopify store).

Bounded: each attempt takes at most `timeout_s` (default 10 s: the handler answers within 6 s)
from the first byte sent to the last byte read. At most one verification per account is in
flight across processes (a claim in the store); a second one waits for the first and reports
its result. Every result is recorded in the store for `status`. Nothing printed or recorded
carries the token.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from together_reconcile.secrets import Keyring
from together_reconcile.store import Store, StoreError, Verification
from together_reconcile.verification import verification_body

if TYPE_CHECKING:
    import httpx

EVENTS_PATH = "/gorgias/events"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_CONCURRENCY = 8
DEFAULT_VERIFY_WAIT_S = 120.0
RETRY_INTERVAL_S = 2.0
MAX_ANSWER_BYTES = 1024 * 1024
# A claim older than this is taken over (a run that died never blocks the next one).
CLAIM_STALE_S = DEFAULT_TIMEOUT_S * 3
# While the handler's checkout has not caught up with main yet, it does not know the account.
WAIT_FOR_CODES = frozenset({"unknown_account"})

ANSWER_FIELDS = {
    "shopify_store": str,
    "lookback_days": int,
    "final_sale_order_count": int,
    "final_sale_orders": list,
}


@dataclass(frozen=True)
class VerifyResult:
    """One account's verification, as `verify --json` prints it."""

    gorgias_account: str
    result: str  # "ok" | "failed"
    code: str | None
    seconds: float
    at: datetime

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"gorgias_account": self.gorgias_account, "result": self.result}
        if self.code is not None:
            document["code"] = self.code
        document["seconds"] = round(self.seconds, 3)
        return document

    def line(self) -> str:
        if self.ok:
            return f"{self.gorgias_account}: ok ({self.seconds:.2f} s)"
        return f"{self.gorgias_account}: FAILED {self.code} ({self.seconds:.2f} s): {advice(self)}"


def advice(result: VerifyResult | Verification, public_url: str = "the handler") -> str:
    """What to do about a failed verification, in words (also used by `status`)."""
    code = result.code or ""
    messages = {
        "unknown_account": f"{public_url} does not know this account: its accounts folder is "
        "behind main (deploy or pull it), then verify again",
        "account_disabled": f"{public_url} has this account disabled: its accounts folder is "
        "behind main (deploy or pull it), then verify again",
        "invalid_token": f"{public_url} derives other event tokens: give it the same "
        "TOGETHER_SECRET_KEYS as the apply workflow, then verify again",
        "missing_token": f"{public_url} did not receive the X-Together-Token header: check "
        "the proxy in front of it, then verify again",
        "shopify_not_connected": f"{public_url} finds no Shopify token for the store: it reads "
        "another TOGETHER_STATE_URL, or the token was never stored (credentials put shopify)",
        "shopify_unauthorized": "Shopify refused the stored Admin API token: store a fresh one "
        "(credentials put shopify STORE), then verify again",
        "store_unavailable": f"{public_url} cannot read its state store: check "
        "TOGETHER_STATE_URL and the database, then verify again",
        "unreachable": f"no connection to {public_url}: check TOGETHER_PUBLIC_URL, DNS and "
        "that the handler is running",
        "tls_error": f"the TLS handshake with {public_url} failed: check its certificate "
        "(it must be valid for the public host name)",
        "timeout": f"{public_url} did not answer in time: check the handler and Shopify",
        "bad_answer": f"{public_url} answered, but not like the event handler: check that "
        "TOGETHER_PUBLIC_URL points at an up-to-date `serve`",
    }
    if code.startswith("shopify_"):
        return messages.get(code, f"the handler could not ask Shopify ({code}): verify again later")
    return messages.get(code, f"the handler answered {code}: see its log, then verify again")


class _TooSlow(Exception):
    pass


def _tls_failure(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return True
        current = current.__cause__ or current.__context__
    text = str(error).upper()
    return "SSL" in text or "CERTIFICATE" in text or "TLS" in text


def _read_answer(response: httpx.Response, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise _TooSlow
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            break
        chunks.append(chunk)
    if time.monotonic() > deadline:
        raise _TooSlow
    return b"".join(chunks)


def classify(status: int, body: bytes, shopify_store: str | None) -> str | None:
    """None when the answer proves the handler asked Shopify for this account; else a code."""
    try:
        document = json.loads(body)
    except ValueError:
        return "bad_answer"
    if status != 200:
        error = document.get("error") if isinstance(document, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, str) and code and len(code) <= 64 and code.isascii():
            return code
        return "bad_answer"
    if not isinstance(document, dict) or set(document) != set(ANSWER_FIELDS):
        return "bad_answer"
    for name, kind in ANSWER_FIELDS.items():
        value = document[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            return "bad_answer"
    if shopify_store is not None and document["shopify_store"] != shopify_store:
        return "bad_answer"  # a handler with other account files
    return None


def call_handler(
    http: httpx.Client,
    public_url: str,
    domain: str,
    token: str,
    shopify_store: str | None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> str | None:
    """One verification request; None when ok, else the failure code."""
    import httpx  # loaded on use: `plan` imports this module for apply's options only

    deadline = time.monotonic() + timeout_s
    timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
    try:
        with http.stream(
            "POST",
            public_url.rstrip("/") + EVENTS_PATH,
            content=json.dumps(verification_body(domain)).encode(),
            headers={"Content-Type": "application/json", "X-Together-Token": token},
            timeout=timeout,
            follow_redirects=False,
        ) as response:
            body = _read_answer(response, deadline)
            return classify(response.status_code, body, shopify_store)
    except (_TooSlow, httpx.TimeoutException):
        return "timeout"
    except httpx.ConnectError as error:
        return "tls_error" if _tls_failure(error) else "unreachable"
    except httpx.RemoteProtocolError:
        return "bad_answer"
    except httpx.TransportError as error:
        return "tls_error" if _tls_failure(error) else "unreachable"


@dataclass
class Verifier:
    """Verifies accounts against one handler and records each result in the store."""

    store: Store
    keyring: Keyring
    public_url: str
    shopify_stores: Mapping[str, str]  # gorgias domain -> its Shopify store (from the files)
    http: httpx.Client
    timeout_s: float = DEFAULT_TIMEOUT_S
    retry_interval_s: float = RETRY_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def verify(self, domain: str, *, wait_s: float = 0.0) -> VerifyResult:
        """Verify one account; while the handler answers `unknown_account`, try again every
        `retry_interval_s` for up to `wait_s` seconds. Recorded in the store."""
        started = self.clock()
        started_at = self.now()
        holder = uuid.uuid4().hex
        if not self.store.claim_verification(domain, holder, now=started_at, stale_s=CLAIM_STALE_S):
            return self._wait_for_other(domain, started, started_at, wait_s)
        code: str | None = "timeout"
        try:
            give_up = started + wait_s
            while True:
                code = call_handler(
                    self.http,
                    self.public_url,
                    domain,
                    self.keyring.event_token(domain),
                    self.shopify_stores.get(domain),
                    timeout_s=self.timeout_s,
                )
                if code not in WAIT_FOR_CODES:
                    break
                remaining = give_up - self.clock()
                if remaining <= 0:
                    break
                # The last try is at the end of the wait, not one interval before it.
                self.sleep(min(self.retry_interval_s, remaining))
        finally:
            result = VerifyResult(
                domain,
                "ok" if code is None else "failed",
                code,
                self.clock() - started,
                self.now(),
            )
            self.store.finish_verification(
                holder,
                Verification(
                    domain, "ok" if result.ok else "failed", code, result.at, result.seconds
                ),
            )
        return result

    def _wait_for_other(
        self, domain: str, started: float, started_at: datetime, wait_s: float
    ) -> VerifyResult:
        """Another verification of `domain` is in flight: report its result when it ends (the
        first result recorded since this one began), within the bound of a verification."""
        give_up = started + max(wait_s, 0.0) + self.timeout_s + 1.0
        while True:
            latest = self.store.list_verifications().get(domain)
            if latest is not None and latest.at >= started_at:
                return VerifyResult(
                    domain, latest.result, latest.code, self.clock() - started, latest.at
                )
            if self.clock() >= give_up:
                return VerifyResult(domain, "failed", "timeout", self.clock() - started, self.now())
            self.sleep(0.2)

    def verify_many(
        self,
        domains: Iterable[str],
        *,
        wait_s: float = 0.0,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> list[VerifyResult]:
        domains = list(domains)
        if not domains:
            return []
        workers = max(1, min(concurrency, len(domains)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
            return list(pool.map(lambda domain: self.verify(domain, wait_s=wait_s), domains))


def markdown(results: Iterable[VerifyResult]) -> str:
    """The verifications as a Markdown table (the job summary)."""
    lines = ["### Verification", "", "| account | result | what to do |", "|---|---|---|"]
    for result in results:
        if result.ok:
            lines.append(f"| {result.gorgias_account} | ok | live: tell the merchant |")
        else:
            lines.append(
                f"| {result.gorgias_account} | failed ({result.code}) | {advice(result)} |"
            )
    return "\n".join(lines) + "\n"


def verify_http_client() -> httpx.Client:
    """The client verifications go through (TLS verified; no proxies from the environment
    would see the token any differently than Gorgias's own call)."""
    import httpx

    return httpx.Client(timeout=DEFAULT_TIMEOUT_S, follow_redirects=False)


def verifiable(enabled: Mapping[str, str], managed: Iterable[tuple[str, int | None]]) -> list[str]:
    """Accounts `verify` checks by default: an enabled file and an integration applied."""
    applied = {domain for domain, integration_id in managed if integration_id is not None}
    return sorted(domain for domain in enabled if domain in applied)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_VERIFY_WAIT_S",
    "StoreError",
    "Verifier",
    "VerifyResult",
    "advice",
    "call_handler",
    "classify",
    "verifiable",
    "verify_http_client",
]
