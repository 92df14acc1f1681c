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
from dataclasses import dataclass
from typing import Any, Literal

from together_reconcile.gorgias.reasons import (
    BLOCKED_MESSAGES,
)
from together_reconcile.reconcile.desired import INTEGRATION_NAME, description_identity, is_ours
from together_reconcile.secrets import fingerprint

ResourceKind = Literal["integration", "widget"]
ResourceAction = Literal["create", "update", "reactivate", "delete", "in_sync"]
AccountAction = Literal["create", "update", "delete", "in_sync", "blocked"]
ACCOUNT_ACTIONS: tuple[AccountAction, ...] = ("create", "update", "delete", "in_sync", "blocked")

_INTEGRATION_FIELDS = ("name", "type", "description")
_HTTP_FIELDS = ("url", "method", "request_content_type", "response_content_type")
_WIDGET_FIELDS = ("type", "context", "order", "integration_id")


@dataclass(frozen=True)
class FieldDiff:
    """One changed field: a dotted path and its value before and after (secrets fingerprinted)."""

    field: str
    before: Any
    after: Any


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
    observed_fingerprint: str | None = None

    @property
    def has_changes(self) -> bool:
        return self.action in ("create", "update", "delete")

    @property
    def delete_count(self) -> int:
        """Deletes as the cap counts them: the whole account, or each extra duplicate."""
        if self.action == "delete":
            return 1
        return sum(
            1
            for resource in self.resources
            if resource.action == "delete" and resource.kind == "integration"
        ) + sum(
            1
            for resource in self.resources
            if resource.action == "delete"
            and resource.kind == "widget"
            and not _rides_along(resource, self.resources)
        )

    def resource(self, kind: ResourceKind) -> ResourcePlan | None:
        """The kept (non-deleted) resource of this kind, if any."""
        for resource in self.resources:
            if resource.kind == kind and resource.action != "delete":
                return resource
        return None


def _rides_along(widget: ResourcePlan, resources: tuple[ResourcePlan, ...]) -> bool:
    """A widget deleted with its (deleted) extra integration does not count on its own."""
    bound_to = _widget_integration(widget)
    return any(
        r.kind == "integration" and r.action == "delete" and r.id == bound_to for r in resources
    )


def _widget_integration(widget: ResourcePlan) -> Any:
    for diff in widget.diff:
        if diff.field == "integration_id":
            return diff.before
    return None


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
    """What one account holds in Gorgias: every integration listed, and our widgets."""

    integrations: tuple[dict[str, Any], ...]
    widgets: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class DesiredResources:
    """The desired integration body, and a function of the integration id for the widget."""

    integration: Mapping[str, Any]
    widget: Callable[[int | None], dict[str, Any]]


def _sort_by_id(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objects, key=lambda obj: (not isinstance(obj.get("id"), int), obj.get("id")))


def _secret(value: Any) -> Any:
    if value is None:
        return None
    return fingerprint(value if isinstance(value, str) else json.dumps(value, sort_keys=True))


def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def integration_diff(
    desired: Mapping[str, Any], observed: Mapping[str, Any] | None
) -> tuple[FieldDiff, ...]:
    """Field-level diff of the fields we manage; `observed=None` means a create (all new)."""
    creating = observed is None
    seen: Mapping[str, Any] = observed or {}
    diffs: list[FieldDiff] = []

    def add(path: str, before: Any, after: Any, same: bool) -> None:
        if creating or not same:
            diffs.append(FieldDiff(path, None if creating else before, after))

    for name in _INTEGRATION_FIELDS:
        before, after = seen.get(name), desired.get(name)
        if name == "description":
            add(name, before, after, description_identity(before) == description_identity(after))
        else:
            add(name, before, after, before == after)
    want_http, have_http = _as_dict(desired.get("http")), _as_dict(seen.get("http"))
    for name in _HTTP_FIELDS:
        before, after = have_http.get(name), want_http.get(name)
        add(f"http.{name}", before, after, before == after)
    want_headers, have_headers = (
        _as_dict(want_http.get("headers")),
        _as_dict(have_http.get("headers")),
    )
    for key in _union(want_headers, have_headers):
        before, after = _secret(have_headers.get(key)), _secret(want_headers.get(key))
        add(f"http.headers.{key}", before, after, before == after)
    want_form, have_form = want_http.get("form"), have_http.get("form")
    if isinstance(want_form, Mapping) and (creating or isinstance(have_form, Mapping)):
        have = _as_dict(have_form)
        for key in _union(want_form, have):
            add(
                f"http.form.{key}",
                have.get(key),
                want_form.get(key),
                have.get(key) == want_form.get(key),
            )
    else:
        add("http.form", have_form, want_form, have_form == want_form)
    want_triggers = _as_dict(want_http.get("triggers"))
    have_triggers = _as_dict(have_http.get("triggers"))
    for key in _union(want_triggers, have_triggers):
        before, after = bool(have_triggers.get(key)), bool(want_triggers.get(key))
        if creating and not after:
            continue
        add(f"http.triggers.{key}", before, after, before == after)
    return tuple(diffs)


def widget_diff(
    desired: Mapping[str, Any], observed: Mapping[str, Any] | None
) -> tuple[FieldDiff, ...]:
    """Field-level diff of a widget; `observed=None` means a create."""
    creating = observed is None
    seen: Mapping[str, Any] = observed or {}
    diffs = [
        FieldDiff(name, None if creating else seen.get(name), desired.get(name))
        for name in (*_WIDGET_FIELDS, "template")
        if creating or seen.get(name) != desired.get(name)
    ]
    if not creating and seen.get("deactivated_datetime") is not None:
        diffs.append(FieldDiff("deactivated_datetime", seen.get("deactivated_datetime"), None))
    return tuple(diffs)


def _union(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    return [*first, *(key for key in second if key not in first)]


def observed_fingerprint(observation: Observation) -> str:
    """A stable digest of everything observed of ours (header values fingerprinted first)."""
    ours = [_scrub(obj) for obj in _sort_by_id(i for i in observation.integrations if is_ours(i))]
    widgets = [_scrub(obj) for obj in _sort_by_id(observation.widgets)]
    document = json.dumps({"integrations": ours, "widgets": widgets}, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()


def desired_fingerprint(desired: DesiredResources, integration_id: int | None) -> str:
    """A digest of what is applied for an account (header values fingerprinted first)."""
    document = json.dumps(
        {
            "integration": _scrub(desired.integration),
            "widget": desired.widget(integration_id),
        },
        sort_keys=True,
    )
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()


def _scrub(obj: Mapping[str, Any]) -> dict[str, Any]:
    scrubbed = dict(obj)
    http = obj.get("http")
    if isinstance(http, Mapping):
        headers = _as_dict(http.get("headers"))
        scrubbed["http"] = {**http, "headers": {k: _secret(v) for k, v in headers.items()}}
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
    domain: str, desired: DesiredResources | None, observation: Observation
) -> AccountPlan:
    """Diff one account: `desired=None` means all of ours must go."""
    ours = _sort_by_id(i for i in observation.integrations if is_ours(i))
    foreign = [
        i
        for i in observation.integrations
        if not is_ours(i)
        and str(i.get("name", "")).strip().casefold() == INTEGRATION_NAME.casefold()
    ]
    notes = tuple(
        f'integration {i.get("id")} is named "{INTEGRATION_NAME}" but was not created by '
        "together-reconcile (no ownership marker): left alone"
        for i in foreign
    )
    widgets_by_integration: dict[Any, list[dict[str, Any]]] = {}
    for widget in _sort_by_id(observation.widgets):
        widgets_by_integration.setdefault(widget.get("integration_id"), []).append(widget)

    resources: list[ResourcePlan] = []
    deletes: list[ResourcePlan] = []

    def delete_all(integration: Mapping[str, Any]) -> None:
        for widget in widgets_by_integration.get(integration.get("id"), []):
            deletes.append(_delete_widget(widget))
        deletes.append(ResourcePlan("integration", "delete", integration.get("id")))

    fingerprint_ = observed_fingerprint(observation)
    if desired is None:
        for integration in ours:
            delete_all(integration)
        action: AccountAction = "delete" if deletes else "in_sync"
        return AccountPlan(
            domain,
            action,
            _ordered(resources, deletes),
            notes=notes,
            wanted=False,
            observed_fingerprint=fingerprint_,
        )

    if not ours:
        resources.append(
            ResourcePlan("integration", "create", None, integration_diff(desired.integration, None))
        )
        resources.append(
            ResourcePlan("widget", "create", None, widget_diff(desired.widget(None), None))
        )
        return AccountPlan(
            domain, "create", tuple(resources), notes=notes, observed_fingerprint=fingerprint_
        )

    kept, *extras = ours
    kept_id = kept.get("id")
    diff = integration_diff(desired.integration, kept)
    if kept.get("deactivated_datetime") is not None:
        diff = (*diff, FieldDiff("deactivated_datetime", kept.get("deactivated_datetime"), None))
        resources.append(ResourcePlan("integration", "reactivate", kept_id, diff))
    else:
        resources.append(
            ResourcePlan("integration", "update" if diff else "in_sync", kept_id, diff)
        )
    for extra in extras:
        delete_all(extra)

    kept_widgets = widgets_by_integration.get(kept_id, [])
    want_widget = desired.widget(kept_id)
    if kept_widgets:
        widget, *extra_widgets = kept_widgets
        widget_changes = widget_diff(want_widget, widget)
        resources.append(
            ResourcePlan(
                "widget",
                "update" if widget_changes else "in_sync",
                widget.get("id"),
                widget_changes,
            )
        )
        deletes.extend(_delete_widget(extra) for extra in extra_widgets)
    else:
        resources.append(ResourcePlan("widget", "create", None, widget_diff(want_widget, None)))

    ordered = _ordered(resources, deletes)
    changed = any(resource.action != "in_sync" for resource in ordered)
    return AccountPlan(
        domain,
        "update" if changed else "in_sync",
        ordered,
        notes=notes,
        observed_fingerprint=fingerprint_,
    )


def _delete_widget(widget: Mapping[str, Any]) -> ResourcePlan:
    # The bound integration id is kept (as a before-only diff) so the delete cap can tell a
    # widget removed with its extra integration from an extra widget removed on its own.
    return ResourcePlan(
        "widget",
        "delete",
        widget.get("id"),
        (FieldDiff("integration_id", widget.get("integration_id"), None),),
    )


def _ordered(
    resources: Sequence[ResourcePlan], deletes: Sequence[ResourcePlan]
) -> tuple[ResourcePlan, ...]:
    """Kept resources first, then deletes: widgets before integrations."""
    widget_deletes = [d for d in deletes if d.kind == "widget"]
    integration_deletes = [d for d in deletes if d.kind == "integration"]
    return (*resources, *widget_deletes, *integration_deletes)


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
