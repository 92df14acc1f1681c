"""The values the state store keeps and returns: credentials, managed accounts, audit entries.

Plain frozen dataclasses; a `Credential` never shows a token in its `repr`, and
`CredentialInfo` is what may be shown about one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

CredentialKind = Literal["gorgias", "shopify"]
CredentialStatus = Literal["ok", "reconnect_needed"]
CREDENTIAL_KINDS: tuple[str, ...] = ("gorgias", "shopify")
CREDENTIAL_STATUSES: tuple[str, ...] = ("ok", "reconnect_needed")
EXPIRES_SOON = timedelta(hours=1)


def current_commit() -> str | None:
    """The commit a change is made from: `GITHUB_SHA` when set (GitHub Actions)."""
    return os.environ.get("GITHUB_SHA") or None


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite keeps no zone: we only ever write UTC
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# Values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """Tokens for one Gorgias account or Shopify store. `repr` never shows a token."""

    kind: CredentialKind
    domain: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    status: CredentialStatus = "ok"
    username: str | None = None  # Basic auth (Gorgias API key): the user's email; not secret

    def __post_init__(self) -> None:
        if self.kind not in CREDENTIAL_KINDS:
            raise ValueError(f"credential kind must be one of {CREDENTIAL_KINDS}")
        if self.status not in CREDENTIAL_STATUSES:
            raise ValueError(f"credential status must be one of {CREDENTIAL_STATUSES}")
        if not self.access_token:
            raise ValueError("a credential needs a non-empty access_token")
        object.__setattr__(self, "domain", self.domain.strip().lower())
        object.__setattr__(self, "expires_at", as_utc(self.expires_at))

    def __repr__(self) -> str:
        return (
            f"Credential(kind={self.kind!r}, domain={self.domain!r}, access_token=<hidden>, "
            f"refresh_token={'<hidden>' if self.refresh_token else None}, "
            f"expires_at={self.expires_at!r}, status={self.status!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class CredentialInfo:
    """What may be shown about a credential: no secret."""

    kind: CredentialKind
    domain: str
    expires_at: datetime | None
    status: CredentialStatus
    refreshable: bool = False  # a refresh token is stored: expiry is handled on use

    def display_status(self, now: datetime) -> str:
        """What `credentials list` shows: whether someone has to act.

        `reconnect_needed` (the refresh token was refused), `expired` / `expires soon` (within
        `EXPIRES_SOON`) for a token nobody can refresh, else `ok` — a refreshable token is
        renewed when the reconciler next uses it, so its access-token expiry needs no action.
        """
        if self.status == "reconnect_needed":
            return "reconnect_needed"
        if self.expires_at is None or self.refreshable:
            return "ok"
        if self.expires_at <= now:
            return "expired"
        if self.expires_at - now < EXPIRES_SOON:
            return "expires soon"
        return "ok"


@dataclass(frozen=True)
class ManagedAccount:
    """A Gorgias account whose integration and widget the reconciler created."""

    domain: str
    integration_id: int | None
    widget_id: int | None
    fingerprint: str
    applied_at: datetime
    commit: str | None


@dataclass(frozen=True)
class Verification:
    """The last verification of one account: `ok`, or `failed` with a code."""

    domain: str
    result: Literal["ok", "failed"]
    code: str | None
    at: datetime
    seconds: float


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    domain: str
    action: str
    kind: str
    resource_id: str | None
    detail: dict[str, Any]
    commit: str | None
