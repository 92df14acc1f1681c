"""Safety rules on a plan, checked before any write: the delete cap and the update cap.

octoDNS's `Plan.raise_if_unsafe()` in our terms (SPEC "Deletes", "Updates"). Over a cap, `apply`
changes nothing and exits 3; `plan` prints the same finding as a warning. Each refusal is an
`ApplyRefused` (a `Refused`: exit 3) that carries its data and words its own message, so tests
assert the data.

The update cap counts accounts whose fields of ours would change (a kept object updated or
reactivated). Never counted: a reactivation alone, and a field whose live value is one the
caller says is a legitimate older value (`rotated`: the event token derived from an older key
of `TOGETHER_SECRET_KEYS`, so a key rotation passes without raising the cap).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from together_reconcile.errors import Refused
from together_reconcile.reconcile.kinds import KINDS, Kind, by_name
from together_reconcile.reconcile.plan import AccountPlan, Plan

DEFAULT_MAX_DELETES = 3
MIN_MAX_UPDATES = 3
MAX_UPDATES_PERCENT = 30

# (kind + field, live value as the plan shows it), e.g.
# ("integration http.headers.X-Together-Token", "sha256:1a2b3c4d"): not an update to count.
Rotated = Callable[[str], Collection[tuple[str, Any]]]


def no_rotation(_domain: str) -> Collection[tuple[str, Any]]:
    return ()


def default_max_updates(managed_accounts: int) -> int:
    """The larger of 3 and 30 % of the managed accounts (rounded down)."""
    return max(MIN_MAX_UPDATES, managed_accounts * MAX_UPDATES_PERCENT // 100)


class ApplyRefused(Refused):
    """A safety rule refused the whole run; nothing was changed (exit 3)."""


class DeleteCapExceeded(ApplyRefused):
    """The plan deletes more than `--max-deletes` allows."""

    def __init__(self, count: int, cap: int) -> None:
        self.count, self.cap = count, cap
        super().__init__(
            f"the plan deletes {count} (accounts losing their integration and widget, plus "
            f"extra duplicates), over the cap of {cap}; nothing was changed. Check the "
            f"plan, then raise the cap with --max-deletes {count} (or TOGETHER_MAX_DELETES)"
        )


class UpdateCapExceeded(ApplyRefused):
    """The plan updates more accounts than `--max-updates` allows; `field` is the field that
    changes in most of them (`field_count` accounts)."""

    def __init__(self, count: int, cap: int, field: str, field_count: int) -> None:
        self.count, self.cap, self.field, self.field_count = count, cap, field, field_count
        super().__init__(
            f"the plan updates {count} accounts, over the cap of {cap}; {field_count} of them "
            f"change {field}; nothing was changed. Check the plan (a wrong TOGETHER_PUBLIC_URL "
            f"changes every integration's http.url), then allow it with --max-updates {count} "
            "(or TOGETHER_MAX_UPDATES; in the apply workflow, its max_updates input)"
        )


class StalePlan(ApplyRefused):
    """A saved plan no longer matches live or desired state for `domains`."""

    def __init__(self, domains: Sequence[str]) -> None:
        self.domains = tuple(domains)
        super().__init__(
            f"plan is stale: live state or desired state changed since the plan was made for "
            f"{', '.join(self.domains)}; nothing was changed. Run `plan --out FILE` again and "
            "apply the new plan"
        )


def check_delete_cap(plan: Plan, max_deletes: int) -> None:
    count = plan.delete_count
    if count > max_deletes:
        raise DeleteCapExceeded(count, max_deletes)


def updated_fields(
    account: AccountPlan,
    rotated: Collection[tuple[str, Any]] = (),
    kinds: Sequence[Kind] = KINDS,
) -> tuple[str, ...]:
    """The fields of ours this account's plan changes, as the update cap counts them
    (`"integration http.url"`), each once; () when the account does not count."""
    if account.action != "update":
        return ()
    known = by_name(kinds)
    fields: list[str] = []
    for resource in account.resources:
        if resource.action not in ("update", "reactivate"):
            continue
        kind = known.get(resource.kind)
        deactivated = kind.deactivated_field if kind is not None else None
        for diff in resource.diff:
            name = f"{resource.kind} {diff.field}"
            if diff.field == deactivated and diff.after is None:
                continue  # a reactivation
            # Only a token header (a string) can be a rotation; other values may be unhashable.
            rotation = isinstance(diff.before, str) and (name, diff.before) in rotated
            if rotation or name in fields:
                continue
            fields.append(name)
    return tuple(fields)


@dataclass(frozen=True)
class UpdateCount:
    """How many accounts the update cap counts, and the field most of them change."""

    count: int
    field: str | None
    field_count: int


def count_updates(
    plan: Plan, rotated: Rotated = no_rotation, kinds: Sequence[Kind] = KINDS
) -> UpdateCount:
    fields: Counter[str] = Counter()
    count = 0
    for account in plan.accounts:
        changed = updated_fields(account, rotated(account.gorgias_account), kinds)
        if changed:
            count += 1
            fields.update(changed)
    if not fields:
        return UpdateCount(count, None, 0)
    field, field_count = fields.most_common(1)[0]
    return UpdateCount(count, field, field_count)


def update_cap_refusal(
    plan: Plan, max_updates: int, rotated: Rotated = no_rotation, kinds: Sequence[Kind] = KINDS
) -> UpdateCapExceeded | None:
    """The refusal `apply` would raise for this plan, or None."""
    counted = count_updates(plan, rotated, kinds)
    if counted.count <= max_updates or counted.field is None:
        return None
    return UpdateCapExceeded(counted.count, max_updates, counted.field, counted.field_count)


def check_update_cap(
    plan: Plan, max_updates: int, rotated: Rotated = no_rotation, kinds: Sequence[Kind] = KINDS
) -> None:
    refusal = update_cap_refusal(plan, max_updates, rotated, kinds)
    if refusal is not None:
        raise refusal


def update_cap_warning(refusal: UpdateCapExceeded) -> str:
    """`plan`'s warning for a plan `apply` would refuse (renderers add "Warning:")."""
    return (
        f"apply would refuse this plan: it updates {refusal.count} accounts, over the "
        f"cap of {refusal.cap} ({refusal.field_count} change {refusal.field}); if that is "
        f"intended, apply with --max-updates {refusal.count}"
    )


__all__ = [
    "DEFAULT_MAX_DELETES",
    "ApplyRefused",
    "DeleteCapExceeded",
    "StalePlan",
    "UpdateCapExceeded",
    "check_delete_cap",
    "check_update_cap",
    "count_updates",
    "default_max_updates",
    "update_cap_refusal",
    "update_cap_warning",
    "updated_fields",
]
