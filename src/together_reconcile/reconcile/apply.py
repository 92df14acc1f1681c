"""Apply: make live Gorgias state match a `Plan`, record what was done in the store.

Safety rules run before any write: the delete and update caps (`safety`) and, for a saved
plan, the staleness check; each refuses the whole run (an `ApplyRefused`, exit 3). Accounts are
applied concurrently; within one account a parent (the integration) is created before its
children (the widget) and deleted after them. The applier names no kind: it loops over the
reconciler's `kinds` (each says its calls, its parent and how to recognise ours). A create whose
answer was lost (`CreateOutcomeUnknown`) is resolved by listing and adopting what the server
made; only when nothing is there is it created once more.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from together_reconcile.errors import TogetherError
from together_reconcile.gorgias.client import (
    CreateOutcomeUnknown,
    CredentialsRejected,
    GorgiasClient,
    GorgiasError,
    NotFound,
)
from together_reconcile.gorgias.reasons import (
    CREDENTIALS_REJECTED,
    NOT_CONNECTED,
)
from together_reconcile.reconcile.kinds import INTEGRATION, WIDGET, Kind, by_name
from together_reconcile.reconcile.observe import (
    DEFAULT_PLAN_CONCURRENCY,
    Blocked,
    GorgiasAuth,
    Reconciler,
    make_plan,
)
from together_reconcile.reconcile.plan import (
    AccountPlan,
    Plan,
    ResourcePlan,
    desired_fingerprint,
)
from together_reconcile.reconcile.render import SAVED_PLAN_FORMAT, account_json, resource_json
from together_reconcile.reconcile.safety import (
    DEFAULT_MAX_DELETES as DEFAULT_MAX_DELETES,
)
from together_reconcile.reconcile.safety import (
    ApplyRefused as ApplyRefused,
)
from together_reconcile.reconcile.safety import (
    Rotated,
    StalePlan,
    check_delete_cap,
    check_update_cap,
    default_max_updates,
)
from together_reconcile.reconcile.select import split_by_action
from together_reconcile.store import ManagedAccount, Store

DEFAULT_APPLY_CONCURRENCY = 16
DEFAULT_LOCK_TIMEOUT_S = 60.0
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 3


class PlanFileError(TogetherError):
    """The saved plan file cannot be read or is not a plan written by `plan --out`."""


class ApplyStepError(Exception):
    """A step of one account could not be carried out (the account fails, others go on)."""


class _AccountBlocked(Exception):
    """Gorgias still refused the account's credentials after one refresh (or none was possible)."""

    def __init__(self, blocked: Blocked) -> None:
        super().__init__(blocked.message or blocked.reason)
        self.blocked = blocked


_T = TypeVar("_T")


class _AccountGorgias:
    """One account's Gorgias client for apply's calls.

    A 401 triggers exactly one forced refresh (the auth provider's `rejected`) and one retry
    of that call; from then on the refreshed credentials are used. A second 401, or a refresh
    that cannot be made, blocks the account (`credentials_rejected`, `reconnect_needed`...).
    """

    def __init__(self, reconciler: Reconciler, domain: str, auth: GorgiasAuth) -> None:
        self._reconciler = reconciler
        self._domain = domain
        self._clients = ExitStack()  # every client made is closed with the account
        self._client = self._clients.enter_context(reconciler.client(domain, auth))
        self._refreshed = False

    def call(self, action: Callable[[GorgiasClient], _T]) -> _T:
        try:
            return action(self._client)
        except CredentialsRejected:
            if self._refreshed:
                raise _AccountBlocked(Blocked(CREDENTIALS_REJECTED)) from None
        self._refreshed = True
        retry = self._reconciler.auth.rejected(self._domain)
        if isinstance(retry, Blocked):
            raise _AccountBlocked(retry)
        self._client = self._clients.enter_context(self._reconciler.client(self._domain, retry))
        try:
            return action(self._client)
        except CredentialsRejected:
            raise _AccountBlocked(Blocked(CREDENTIALS_REJECTED)) from None

    def close(self) -> None:
        self._clients.close()


@dataclass(frozen=True)
class SavedPlan:
    accounts: tuple[dict[str, Any], ...]
    observed: Mapping[str, str | None]

    @property
    def domains(self) -> list[str]:
        return [str(account["gorgias_account"]) for account in self.accounts]


def load_saved_plan(path: Path) -> SavedPlan:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PlanFileError(f"{path}: cannot read the plan file ({error.strerror})") from None
    except ValueError:
        raise PlanFileError(f"{path}: not JSON; write it with `plan --out FILE`") from None
    if (
        not isinstance(document, dict)
        or document.get("format") != SAVED_PLAN_FORMAT
        or not isinstance(document.get("accounts"), list)
        or not isinstance(document.get("observed"), dict)
    ):
        raise PlanFileError(
            f"{path}: not a saved plan (format {SAVED_PLAN_FORMAT}); write it with "
            "`plan --out FILE`"
        )
    accounts = tuple(a for a in document["accounts"] if isinstance(a, dict))
    if len(accounts) != len(document["accounts"]) or any(
        not isinstance(a.get("gorgias_account"), str) for a in accounts
    ):
        raise PlanFileError(f"{path}: an account entry has no gorgias_account")
    return SavedPlan(accounts, dict(document["observed"]))


def check_not_stale(saved: SavedPlan, fresh: Plan) -> None:
    """Refuse when anything observed, or anything planned, differs from the saved plan."""
    moved: list[str] = []
    for saved_account in saved.accounts:
        domain = saved_account["gorgias_account"]
        account = fresh.account(domain)
        if (
            account is None
            or account.observed_fingerprint != saved.observed.get(domain)
            or account_json(account) != saved_account
        ):
            moved.append(domain)
    if moved:
        raise StalePlan(moved)


@dataclass(frozen=True)
class AccountResult:
    """What happened in one account."""

    gorgias_account: str
    action: str
    ok: bool
    changes: tuple[str, ...] = ()
    error: str | None = None
    reason: str | None = None
    skipped: bool = False  # left alone by `--only`

    @property
    def counts_as_failure(self) -> bool:
        return not self.ok and self.reason != NOT_CONNECTED


@dataclass(frozen=True)
class ApplyReport:
    results: tuple[AccountResult, ...]
    write_requests: int = 0

    @property
    def failures(self) -> tuple[AccountResult, ...]:
        return tuple(result for result in self.results if result.counts_as_failure)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failures else EXIT_OK

    def render(self) -> str:
        lines: list[str] = []
        for result in self.results:
            if result.action == "in_sync" and result.ok:
                continue
            if result.skipped:
                state = "skipped"
            elif result.reason is not None:
                state = f"blocked ({result.reason})"
            else:
                state = "done" if result.ok else "FAILED"
            lines.append(f"{result.gorgias_account}: {result.action} {state}")
            lines.extend(f"    {change}" for change in result.changes)
            if result.error:
                lines.append(f"    error: {result.error}")
        done = sum(1 for r in self.results if r.ok and r.action != "in_sync" and not r.skipped)
        skipped = sum(1 for r in self.results if r.skipped)
        in_sync = sum(1 for r in self.results if r.ok and r.action == "in_sync")
        waiting = sum(1 for r in self.results if r.reason == NOT_CONNECTED)
        lines.append(
            f"Apply: {done} changed, {in_sync} in sync, {len(self.failures)} failed, "
            f"{waiting} not connected{f', {skipped} skipped' if skipped else ''} "
            f"({len(self.results)} "
            f"account{'' if len(self.results) == 1 else 's'})."
        )
        if self.failures:
            lines.append(
                "Failed: "
                + ", ".join(f.gorgias_account for f in self.failures)
                + " (the other accounts were applied; run apply again to retry)"
            )
        return "\n".join(lines) + "\n"


def blocked_result(account: AccountPlan) -> AccountResult:
    """A blocked account is not applied; it fails the run unless it is only not connected."""
    return AccountResult(
        account.gorgias_account, "blocked", ok=False, error=account.message, reason=account.reason
    )


@dataclass
class _AccountRun:
    """Mutable progress of one account (kept local to its worker thread)."""

    plan: AccountPlan
    ids: dict[str, int | None] = field(default_factory=dict)  # kind name -> the kept id
    changes: list[str] = field(default_factory=list)


class Applier:
    """Executes one `Plan` with a `Reconciler` (Gorgias access) and records in the `Store`."""

    def __init__(
        self,
        reconciler: Reconciler,
        store: Store,
        *,
        commit: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._reconciler = reconciler
        self._store = store
        self._commit = commit
        self._clock = clock
        self._managed = store.list_managed()
        self._kinds = by_name(reconciler.kinds)

    def apply(self, plan: Plan, *, concurrency: int = DEFAULT_APPLY_CONCURRENCY) -> ApplyReport:
        if not plan.accounts:
            return ApplyReport(())
        workers = max(1, min(concurrency, len(plan.accounts)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
            results = tuple(pool.map(self._apply_account, plan.accounts))
        return ApplyReport(results)

    # One account ----------------------------------------------------------------------------

    def _apply_account(self, account: AccountPlan) -> AccountResult:
        domain = account.gorgias_account
        if account.action == "blocked":
            return blocked_result(account)
        run = _AccountRun(account)
        for name in self._kinds:
            kept = account.resource(name)
            run.ids[name] = kept.id if kept else None
        try:
            if account.has_changes:
                self._change(run)
            self._record(run)
        except _AccountBlocked as error:
            reason, message = error.blocked.reason, error.blocked.message
            return AccountResult(domain, account.action, False, tuple(run.changes), message, reason)
        except (GorgiasError, ApplyStepError) as error:
            return AccountResult(domain, account.action, False, tuple(run.changes), str(error))
        return AccountResult(domain, account.action, True, tuple(run.changes))

    def _change(self, run: _AccountRun) -> None:
        domain = run.plan.gorgias_account
        desired = self._reconciler.desired.resources(domain)
        auth = self._reconciler.auth.auth_for(domain)
        if isinstance(auth, Blocked):
            raise ApplyStepError(f"cannot call Gorgias: {auth.reason}")
        if run.plan.wanted and domain not in self._managed:
            # Known before the first create: if the run dies half-way and the file is removed
            # later, the next plan still covers the account and removes what was made.
            self._store.record_managed(
                ManagedAccount(domain, None, None, "", self._clock(), self._commit)
            )
        gorgias = _AccountGorgias(self._reconciler, domain, auth)
        try:
            for resource in run.plan.resources:
                if resource.action == "in_sync":
                    continue
                if resource.action != "delete" and desired is None:
                    raise ApplyStepError("the plan changes an account that is no longer enabled")
                self._step(gorgias, run, resource, desired)
        finally:
            gorgias.close()

    def _step(
        self, gorgias: _AccountGorgias, run: _AccountRun, resource: ResourcePlan, desired: Any
    ) -> None:
        domain = run.plan.gorgias_account
        kind, action = self._kinds[resource.kind], resource.action
        resource_id: int | None = resource.id
        if action == "delete":
            gone_id = _existing_id(resource)
            with contextlib.suppress(NotFound):  # already gone: the goal is reached
                gorgias.call(lambda client: kind.delete(client, gone_id))
        else:
            parent_id = None
            if kind.parent is not None:
                parent_id = run.ids.get(kind.parent)
                if parent_id is None:
                    raise ApplyStepError(f"the {kind.name} has no {kind.parent} to bind to")
            body = kind.desired(desired, parent_id)
            if action == "create":
                resource_id = run.ids[kind.name] = self._create(gorgias, kind, parent_id, body)
            else:
                kept_id = _existing_id(resource)
                update = kind.body_for_update(body, resource.diff, action == "reactivate")
                gorgias.call(lambda client: kind.update(client, kept_id, update))
        detail = {k: v for k, v in resource_json(resource).items() if k == "diff"}
        self._store.append_audit(domain, action, kind.name, resource_id, detail, self._commit)
        run.changes.append(f"{action} {kind.name} {resource_id}")

    def _create(
        self, gorgias: _AccountGorgias, kind: Kind, parent_id: int | None, body: Any
    ) -> int:
        def find() -> int | None:
            listed = gorgias.call(lambda client: kind.fetch(client, parent_id))
            ids = [o["id"] for o in listed if kind.owns(o, parent_id) and isinstance(o["id"], int)]
            return min(ids) if ids else None

        return _create_or_adopt(
            lambda: gorgias.call(lambda client: kind.create(client, body)), find
        )

    def _record(self, run: _AccountRun) -> None:
        """Remember the accounts we manage; forget those whose resources are gone."""
        domain = run.plan.gorgias_account
        if not run.plan.wanted:
            if domain in self._managed:
                self._store.forget_managed(domain)
            return
        known = self._managed.get(domain)
        desired = self._reconciler.desired.resources(domain)
        kinds = tuple(self._kinds.values())
        fingerprint = "" if desired is None else desired_fingerprint(desired, run.ids, kinds)
        integration_id, widget_id = run.ids.get(INTEGRATION.name), run.ids.get(WIDGET.name)
        if (
            known is not None
            and not run.changes
            and (known.integration_id, known.widget_id) == (integration_id, widget_id)
        ):
            return
        self._store.record_managed(
            ManagedAccount(
                domain=domain,
                integration_id=integration_id,
                widget_id=widget_id,
                fingerprint=fingerprint,
                applied_at=self._clock(),
                commit=self._commit,
            )
        )


def _existing_id(resource: ResourcePlan) -> int:
    assert resource.id is not None, f"the plan {resource.action}s a {resource.kind} without id"
    return resource.id


def _create_or_adopt(create: Callable[[], dict[str, Any]], find: Callable[[], int | None]) -> int:
    """Create; when the answer was lost, adopt what the server made, else create once more."""
    for attempt in (1, 2):
        try:
            created = create()
        except CreateOutcomeUnknown:
            found = find()
            if found is not None:
                return found
            if attempt == 2:
                raise
            continue
        created_id = created.get("id")
        if not isinstance(created_id, int):
            raise ApplyStepError("Gorgias answered the create without an id")
        return created_id
    raise AssertionError("unreachable")


def run_apply(
    reconciler: Reconciler,
    store: Store,
    *,
    saved: SavedPlan | None,
    confirm: Callable[[Plan], bool],
    max_deletes: int = DEFAULT_MAX_DELETES,
    max_updates: int | None = None,
    concurrency: int = DEFAULT_APPLY_CONCURRENCY,
    plan_concurrency: int = DEFAULT_PLAN_CONCURRENCY,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    commit: str | None = None,
    accounts: Sequence[str] = (),
    only: Collection[str] | None = None,
) -> tuple[Plan, ApplyReport | None]:
    """Lock, plan afresh, run the safety rules, confirm, apply. `None` report: not confirmed.

    Raises `ApplyRefused` (stale plan, delete cap, update cap: `max_updates` None is the
    larger of 3 and 30 % of the managed accounts) and `LockTimeout` before any write.
    """
    with store.apply_lock(lock_timeout_s):
        domains = reconciler.scope(saved.domains if saved else accounts)
        plan = make_plan(reconciler, domains, concurrency=plan_concurrency)
        if saved is not None:
            check_not_stale(saved, plan)
        plan, skipped = split_by_action(plan, only)
        check_delete_cap(plan, max_deletes)
        cap = default_max_updates(len(reconciler.managed)) if max_updates is None else max_updates
        rotated: Rotated = reconciler.desired.rotated
        check_update_cap(plan, cap, rotated, reconciler.kinds)
        if plan.has_changes and not confirm(plan):
            return plan, None
        report = Applier(reconciler, store, commit=commit).apply(plan, concurrency=concurrency)
        left = tuple(
            AccountResult(a.gorgias_account, a.action, True, skipped=True) for a in skipped
        )
        return plan, ApplyReport(report.results + left, report.write_requests)
