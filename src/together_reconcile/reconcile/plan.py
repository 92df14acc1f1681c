"""The plan: what must change in each Gorgias account, as an immutable value object.

`plan_account` is the pure diff: desired state (or `None` when the account is disabled or its
file removed) against what was observed in Gorgias. Observation (I/O) lives in `observe`,
rendering in `render`, execution in `apply`. Secrets never enter a `Plan`: every header value
is shown as a `sha256:` fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from together_reconcile.gorgias.reasons import (
    BLOCKED_MESSAGES,
)
from together_reconcile.reconcile.kinds import (
    INTEGRATION,
    KINDS,
    WIDGET,
    FieldDiff,
    Kind,
    as_dict,
    secret,
)

ResourceKind = str  # a `Kind.name`: "integration", "widget" (see `kinds`)
ResourceAction = Literal["create", "update", "reactivate", "delete", "in_sync"]
AccountAction = Literal["create", "update", "delete", "in_sync", "blocked"]
ACCOUNT_ACTIONS: tuple[AccountAction, ...] = ("create", "update", "delete", "in_sync", "blocked")


@dataclass(frozen=True)
class ResourcePlan:
    """One integration or widget of ours and what happens to it."""

    kind: ResourceKind
    action: ResourceAction
    id: int | None
    diff: tuple[FieldDiff, ...] = ()


@dataclass(frozen=True)
class AccountPlan:
    """Everything planned for one Gorgias account.

    `wanted` is True when the account file exists and is enabled (our resources should exist).
    `observed_fingerprint` identifies what was observed, so a saved plan can be checked for
    staleness; it is None when nothing could be observed.
    """

    gorgias_account: str
    action: AccountAction
    resources: tuple[ResourcePlan, ...] = ()
    reason: str | None = None
    message: str | None = None
    notes: tuple[str, ...] = ()
    wanted: bool = True
    observed: Observed | None = field(default=None, repr=False, compare=False)

    @cached_property
    def observed_fingerprint(self) -> str | None:
        """Computed when first asked for (a saved plan, apply's staleness check): a plan that
        is only shown never pays for it."""
        return None if self.observed is None else self.observed.fingerprint()

    @property
    def has_changes(self) -> bool:
        return self.action in ("create", "update", "delete")

    @property
    def delete_count(self) -> int:
        """Deletes as the cap counts them: the whole account, or each extra duplicate (an object
        deleted with its deleted parent goes with it and is not counted on its own)."""
        if self.action == "delete":
            return 1
        deleted = {(r.kind, r.id) for r in self.resources if r.action == "delete"}
        return sum(
            1
            for resource in self.resources
            if resource.action == "delete" and not _rides_along(resource, deleted)
        )

    def resource(self, kind: ResourceKind) -> ResourcePlan | None:
        """The kept (non-deleted) resource of this kind, if any."""
        for resource in self.resources:
            if resource.kind == kind and resource.action != "delete":
                return resource
        return None


def _rides_along(resource: ResourcePlan, deleted: set[tuple[str, Any]]) -> bool:
    """A child's delete records its parent as the before-only diff `<parent>_id` (kinds)."""
    return any(
        diff.after is None
        and diff.field.endswith("_id")
        and (diff.field.removesuffix("_id"), diff.before) in deleted
        for diff in resource.diff
    )


@dataclass(frozen=True)
class Plan:
    """The plan for every account covered, sorted by domain."""

    accounts: tuple[AccountPlan, ...]

    @property
    def has_changes(self) -> bool:
        return any(account.has_changes for account in self.accounts)

    @property
    def delete_count(self) -> int:
        return sum(account.delete_count for account in self.accounts)

    @property
    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {"accounts": len(self.accounts)}
        counts.update({action: 0 for action in ACCOUNT_ACTIONS})
        for account in self.accounts:
            counts[account.action] += 1
        return counts

    def account(self, domain: str) -> AccountPlan | None:
        for account in self.accounts:
            if account.gorgias_account == domain:
                return account
        return None


# -- The pure diff ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What one account holds in Gorgias: every integration listed, and our widgets (the
    objects of any further kind in `more`, by its `Kind.listed_as`)."""

    integrations: tuple[dict[str, Any], ...]
    widgets: tuple[dict[str, Any], ...]
    more: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)

    def of(self, kind: Kind) -> tuple[dict[str, Any], ...]:
        """The objects listed of one kind."""
        if kind.listed_as == "integrations":
            return self.integrations
        if kind.listed_as == "widgets":
            return self.widgets
        return tuple(self.more.get(kind.listed_as, ()))


@dataclass(frozen=True)
class DesiredResources:
    """The desired integration body, and a function of the integration id for the widget
    (a further kind takes its body from these or from `more`, by its `Kind.name`)."""

    integration: Mapping[str, Any]
    widget: Callable[[int | None], dict[str, Any]]
    more: Mapping[str, Any] = field(default_factory=dict)


def _sort_by_id(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objects, key=lambda obj: (not isinstance(obj.get("id"), int), obj.get("id")))


def integration_diff(
    desired: Mapping[str, Any], observed: Mapping[str, Any] | None
) -> tuple[FieldDiff, ...]:
    """Field-level diff of the integration fields we manage; `observed=None` means a create."""
    return INTEGRATION.diff(desired, observed)


def widget_diff(
    desired: Mapping[str, Any], observed: Mapping[str, Any] | None
) -> tuple[FieldDiff, ...]:
    """Field-level diff of a widget, with its reactivation; `observed=None` means a create."""
    return WIDGET.changes(desired, observed)


@dataclass(frozen=True)
class Observed:
    """What was observed of one account, and the kinds it was observed as."""

    observation: Observation
    kinds: Sequence[Kind]

    def fingerprint(self) -> str:
        return observed_fingerprint(self.observation, self.kinds)


def observed_fingerprint(observation: Observation, kinds: Sequence[Kind] = KINDS) -> str:
    """A stable digest of everything observed of ours (header values fingerprinted first)."""
    document = json.dumps(
        {
            kind.listed_as: [
                _scrub(obj) for obj in _sort_by_id(observation.of(kind)) if kind.is_ours(obj)
            ]
            for kind in kinds
        },
        sort_keys=True,
        default=str,
    )
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()


def desired_fingerprint(
    desired: DesiredResources,
    ids: Mapping[str, int | None] | int | None,
    kinds: Sequence[Kind] = KINDS,
) -> str:
    """A digest of what is applied for an account (header values fingerprinted first).

    `ids` are the ids of the account's objects by kind name (an int: the integration's).
    """
    known = ids if isinstance(ids, Mapping) else {INTEGRATION.name: ids}
    document = json.dumps(
        {
            kind.name: _scrub(
                kind.desired(desired, known.get(kind.parent) if kind.parent else None)
            )
            for kind in kinds
        },
        sort_keys=True,
    )
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()


def _scrub(obj: Mapping[str, Any]) -> dict[str, Any]:
    scrubbed = dict(obj)
    http = obj.get("http")
    if isinstance(http, Mapping):
        headers = as_dict(http.get("headers"))
        scrubbed["http"] = {**http, "headers": {k: secret(v) for k, v in headers.items()}}
    return scrubbed


def blocked(
    domain: str, reason: str, *, wanted: bool = True, message: str | None = None
) -> AccountPlan:
    """An account the plan cannot cover (no credentials, refused credentials, Gorgias down)."""
    return AccountPlan(
        gorgias_account=domain,
        action="blocked",
        reason=reason,
        message=message or BLOCKED_MESSAGES.get(reason, reason),
        wanted=wanted,
    )


def plan_account(
    domain: str,
    desired: DesiredResources | None,
    observation: Observation,
    kinds: Sequence[Kind] = KINDS,
) -> AccountPlan:
    """Diff one account, kind by kind: `desired=None` means all of ours must go.

    Per kind and parent, the lowest-id object of ours is kept and updated in place; the
    others go with their children. Nothing of ours at all: the account is a `create`.
    """
    children = {kind.name: [c for c in kinds if c.parent == kind.name] for kind in kinds}
    notes = tuple(note for kind in kinds for note in kind.notes(observation.of(kind)))
    resources: list[ResourcePlan] = []
    deletes: list[ResourcePlan] = []

    def owned(kind: Kind, parent_id: Any) -> list[dict[str, Any]]:
        return _sort_by_id(obj for obj in observation.of(kind) if kind.owns(obj, parent_id))

    def delete_tree(kind: Kind, obj: Mapping[str, Any]) -> None:
        for child in children[kind.name]:
            for bound in owned(child, obj.get("id")):
                delete_tree(child, bound)
        # A child's delete keeps its parent's id (a before-only diff) so the delete cap can
        # tell one removed with its parent from an extra removed on its own.
        parent_field = kind.parent_field
        bound_to = (
            () if parent_field is None else (FieldDiff(parent_field, obj.get(parent_field), None),)
        )
        deletes.append(ResourcePlan(kind.name, "delete", obj.get("id"), bound_to))

    def place(kind: Kind, parent_id: int | None, parent_live: bool) -> None:
        found = owned(kind, parent_id) if parent_live else []
        if desired is None:
            for obj in found:
                delete_tree(kind, obj)
            return
        want = kind.desired(desired, parent_id)
        if not found:
            resources.append(ResourcePlan(kind.name, "create", None, kind.diff(want, None)))
            for child in children[kind.name]:
                place(child, None, parent_live=False)
            return
        kept, *extras = found
        diff = kind.changes(want, kept)
        if kind.deactivated(kept) is not None:
            action: ResourceAction = kind.reactivate_action
        else:
            action = "update" if diff else "in_sync"
        resources.append(ResourcePlan(kind.name, action, kept.get("id"), diff))
        for extra in extras:
            delete_tree(kind, extra)
        for child in children[kind.name]:
            place(child, kept.get("id"), parent_live=True)

    for root in (kind for kind in kinds if kind.parent is None):
        place(root, None, parent_live=True)

    ordered = _ordered(resources, deletes, kinds)
    if desired is None:
        account_action: AccountAction = "delete" if deletes else "in_sync"
    elif not deletes and all(resource.action == "create" for resource in resources):
        account_action = "create"
    elif any(resource.action != "in_sync" for resource in ordered):
        account_action = "update"
    else:
        account_action = "in_sync"
    return AccountPlan(
        domain,
        account_action,
        ordered,
        notes=notes,
        wanted=desired is not None,
        observed=Observed(observation, kinds),
    )


def _ordered(
    resources: Sequence[ResourcePlan], deletes: Sequence[ResourcePlan], kinds: Sequence[Kind]
) -> tuple[ResourcePlan, ...]:
    """Kept resources first, then deletes: children before their parents."""
    rank = {kind.name: index for index, kind in enumerate(kinds)}
    return (*resources, *sorted(deletes, key=lambda d: -rank.get(d.kind, 0)))


def sorted_plan(accounts: Iterable[AccountPlan]) -> Plan:
    return Plan(tuple(sorted(accounts, key=lambda account: account.gorgias_account)))


__all__ = [
    "AccountPlan",
    "DesiredResources",
    "FieldDiff",
    "Observation",
    "Plan",
    "ResourcePlan",
    "blocked",
    "integration_diff",
    "observed_fingerprint",
    "plan_account",
    "sorted_plan",
    "widget_diff",
]
