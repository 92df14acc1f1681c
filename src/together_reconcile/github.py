"""Going live after a late connect: ask GitHub to run the apply workflow for one account.

SPEC "The support loop": when the OAuth callback stores tokens for an account that has an
enabled file, and `TOGETHER_GITHUB_REPOSITORY` and `TOGETHER_GITHUB_TOKEN` are set, the handler
sends `POST {TOGETHER_GITHUB_API_URL}/repos/{repository}/actions/workflows/apply.yml/dispatches`
with `{"ref": "main", "inputs": {"account": D}}`. GitHub answers 204 when the run is queued.

The token needs exactly one permission: run workflows of this one repository (a fine-grained
personal access token or a GitHub App installation token, repository access "only this
repository", permission "Actions: read and write"). Nothing else.

Bounded: the whole call takes at most `timeout_s` (default 3 s) whatever GitHub does; a failure
is returned as a short code (`timeout`, `unreachable`, `refused` for 401/403/404, `http_<n>`),
never raised, and never carries the token.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import httpx

REPOSITORY_ENV: Final = "TOGETHER_GITHUB_REPOSITORY"
TOKEN_ENV: Final = "TOGETHER_GITHUB_TOKEN"  # noqa: S105 - the variable's name, not a token
API_URL_ENV: Final = "TOGETHER_GITHUB_API_URL"
DEFAULT_API_URL: Final = "https://api.github.com"
WORKFLOW: Final = "apply.yml"
REF: Final = "main"
DISPATCH_TIMEOUT_S: Final = 3.0
_REPOSITORY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")

log = logging.getLogger("together_reconcile.github")


@dataclass(frozen=True)
class GitHubSettings:
    """Where to dispatch the apply workflow; `enabled` only with a repository and a token."""

    repository: str | None
    token: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_API_URL

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GitHubSettings:
        repository = (environ.get(REPOSITORY_ENV) or "").strip() or None
        if repository is not None and not _REPOSITORY_RE.match(repository):
            log.warning(
                "%s is not owner/name: no apply workflow will be dispatched after a connect",
                REPOSITORY_ENV,
            )
            repository = None
        token = (environ.get(TOKEN_ENV) or "").strip() or None
        api_url = (environ.get(API_URL_ENV) or "").strip().rstrip("/") or DEFAULT_API_URL
        return cls(repository, token, api_url)

    @property
    def enabled(self) -> bool:
        return self.repository is not None and self.token is not None

    def dispatch_url(self) -> str:
        return f"{self.api_url}/repos/{self.repository}/actions/workflows/{WORKFLOW}/dispatches"


@dataclass(frozen=True)
class DispatchResult:
    ok: bool
    error: str | None = None  # timeout | unreachable | refused | http_<status> | not_configured
    status: int | None = None


def _post(settings: GitHubSettings, account_domain: str, timeout_s: float) -> DispatchResult:
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False) as http:
            answer = http.post(
                settings.dispatch_url(),
                json={"ref": REF, "inputs": {"account": account_domain}},
                headers={
                    "Authorization": f"Bearer {settings.token}",
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": "2022-11-28",
                    "User-Agent": "together-reconcile",
                },
            )
    except httpx.TimeoutException:
        return DispatchResult(False, "timeout")
    except httpx.HTTPError:
        return DispatchResult(False, "unreachable")
    if answer.status_code in (200, 201, 202, 204):
        return DispatchResult(True, None, answer.status_code)
    if answer.status_code in (401, 403, 404):
        return DispatchResult(False, "refused", answer.status_code)
    return DispatchResult(False, f"http_{answer.status_code}", answer.status_code)


def dispatch_apply(
    settings: GitHubSettings, account_domain: str, *, timeout_s: float = DISPATCH_TIMEOUT_S
) -> DispatchResult:
    """Ask GitHub to run the apply workflow for `account_domain`; never raises, never waits
    longer than `timeout_s`, and logs the outcome (without the token)."""
    if not settings.enabled:
        return DispatchResult(False, "not_configured")
    outcome: list[DispatchResult] = []

    def run() -> None:
        try:
            outcome.append(_post(settings, account_domain, timeout_s))
        except Exception:  # never let a dispatch break the caller
            outcome.append(DispatchResult(False, "unexpected_error"))

    worker = threading.Thread(target=run, name="github-dispatch", daemon=True)
    worker.start()
    worker.join(timeout_s + 0.2)
    result = outcome[0] if outcome else DispatchResult(False, "timeout")
    if result.ok:
        log.info(
            "apply workflow dispatched for %s (%s, %s)",
            account_domain,
            settings.repository,
            WORKFLOW,
        )
    else:
        log.warning(
            "apply workflow dispatch for %s failed: %s (%s); the hourly apply run will "
            "create it instead",
            account_domain,
            result.error,
            settings.repository,
        )
    return result
