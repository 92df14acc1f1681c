"""`status`: where each account stands and the one next step, from the files and the store only.

No network: the account files, the stored credentials (without decrypting them), the managed
accounts (what apply did) and the recorded verifications. One entry per account with a file or
managed by us. `next.code` is the one thing to do now, in this order:

    connect_gorgias      the merchant has not connected (or must connect again): the message
                         carries the install link to send them
    store_shopify_token  no Shopify Admin API token for the store: the message names the command
    apply                the file and what was applied differ (not applied yet, or the file was
                         disabled/removed while ours is still there)
    verify               applied but not verified since the last apply
    fix_handler          the last verification failed: the message says what to check
    none                 live and verified (tell the merchant), or nothing of ours to do
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from together_reconcile.config import AccountFile
from together_reconcile.gorgias.oauth import INSTALL_PATH
from together_reconcile.gorgias.reasons import NOT_CONNECTED, RECONNECT_NEEDED
from together_reconcile.reconcile.verify import advice
from together_reconcile.store import CredentialInfo, ManagedAccount, Verification

NEXT_CODES = (
    "connect_gorgias",
    "store_shopify_token",
    "apply",
    "verify",
    "fix_handler",
    "none",
)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def install_link(public_url: str | None, subdomain: str) -> str:
    base = public_url.rstrip("/") if public_url else "{TOGETHER_PUBLIC_URL}"
    return f"{base}{INSTALL_PATH}?account={subdomain}"


@dataclass(frozen=True)
class AccountStatus:
    gorgias_account: str
    shopify_store: str | None
    file: str  # enabled | disabled | removed
    gorgias: str  # connected | not_connected | reconnect_needed
    shopify: str  # stored | missing
    applied: ManagedAccount | None
    verified: Verification | None
    next_code: str
    next_message: str

    def as_json(self) -> dict[str, Any]:
        applied = self.applied
        verified = self.verified
        verified_json: dict[str, Any] | None = None
        if verified is not None:
            verified_json = {"result": verified.result}
            if verified.code is not None:
                verified_json["code"] = verified.code
            verified_json["at"] = _iso(verified.at)
        return {
            "gorgias_account": self.gorgias_account,
            "shopify_store": self.shopify_store,
            "file": self.file,
            "gorgias": self.gorgias,
            "shopify": self.shopify,
            "applied": None
            if applied is None
            else {
                "integration_id": applied.integration_id,
                "widget_id": applied.widget_id,
                "at": _iso(applied.applied_at),
                "commit": applied.commit,
            },
            "verified": verified_json,
            "next": {"code": self.next_code, "message": self.next_message},
        }

    def line(self) -> str:
        if self.applied is None:
            applied = "applied=no"
        else:
            ids = f"integration {self.applied.integration_id}, widget {self.applied.widget_id}"
            commit = f", commit {self.applied.commit[:12]}" if self.applied.commit else ""
            applied = f"applied=({ids}, {_iso(self.applied.applied_at)}{commit})"
        if self.verified is None:
            verified = "verified=never"
        else:
            code = f" {self.verified.code}" if self.verified.code else ""
            verified = f"verified={self.verified.result}{code} {_iso(self.verified.at)}"
        return (
            f"{self.gorgias_account}  file={self.file}  gorgias={self.gorgias}  "
            f"shopify={self.shopify}  {applied}  {verified}  "
            f"next: {self.next_code}: {self.next_message}"
        )


def _gorgias_state(credential: CredentialInfo | None) -> str:
    if credential is None:
        return NOT_CONNECTED
    if credential.status == "reconnect_needed":
        return RECONNECT_NEEDED
    return "connected"


def next_step(
    *,
    subdomain: str,
    shopify_store: str | None,
    file: str,
    gorgias: str,
    shopify: str,
    applied: ManagedAccount | None,
    verified: Verification | None,
    public_url: str | None,
) -> tuple[str, str]:
    """The one next step (code, words) for one account."""
    handler = public_url or "the handler (TOGETHER_PUBLIC_URL)"
    if file != "enabled":
        if applied is not None:
            return (
                "apply",
                f"the file is {file} but our integration is still there: run apply (the merge "
                "workflow does) to remove it",
            )
        return "none", f"nothing of ours in this account (file {file})"
    if gorgias != "connected":
        again = " again" if gorgias == RECONNECT_NEEDED else ""
        return (
            "connect_gorgias",
            f"send the merchant this link to connect{again} the Together app: "
            f"{install_link(public_url, subdomain)} (the widget appears within minutes after)",
        )
    if shopify != "stored":
        return (
            "store_shopify_token",
            f"store {shopify_store}'s Admin API token: "
            f"together-reconcile credentials put shopify {shopify_store} "
            '(JSON {"access_token": ...} on stdin)',
        )
    if applied is None or applied.integration_id is None or applied.widget_id is None:
        return "apply", "run apply (the merge workflow does) to create the integration and widget"
    if verified is None or verified.at < applied.applied_at:
        return "verify", "run verify to check the handler answers for this account"
    if verified.result != "ok":
        return "fix_handler", f"verification failed ({verified.code}): {advice(verified, handler)}"
    return "none", "live and verified: tell the merchant the Together card is in the sidebar"


def account_statuses(
    files: Mapping[str, AccountFile],
    managed: Mapping[str, ManagedAccount],
    credentials: Iterable[CredentialInfo],
    verifications: Mapping[str, Verification],
    *,
    public_url: str | None,
    only: Iterable[str] = (),
) -> list[AccountStatus]:
    """One status per account with a file or managed by us (or exactly `only`)."""
    gorgias_credentials: dict[str, CredentialInfo] = {}
    shopify_domains: set[str] = set()
    for credential in credentials:
        if credential.kind == "gorgias":
            gorgias_credentials[credential.domain] = credential
        else:
            shopify_domains.add(credential.domain)
    domains = sorted(set(files) | set(managed))
    wanted = [domain.strip().lower() for domain in only]
    if wanted:
        domains = sorted(set(wanted))
    result: list[AccountStatus] = []
    for domain in domains:
        account_file = files.get(domain)
        if account_file is None:
            file, store = "removed", None
        else:
            file = "enabled" if account_file.account.enabled else "disabled"
            store = account_file.account.shopify_store
        gorgias = _gorgias_state(gorgias_credentials.get(domain))
        shopify = "stored" if store is not None and store in shopify_domains else "missing"
        applied = managed.get(domain)
        verified = verifications.get(domain)
        code, message = next_step(
            subdomain=domain.split(".", 1)[0],
            shopify_store=store,
            file=file,
            gorgias=gorgias,
            shopify=shopify,
            applied=applied,
            verified=verified,
            public_url=public_url,
        )
        result.append(
            AccountStatus(domain, store, file, gorgias, shopify, applied, verified, code, message)
        )
    return result
