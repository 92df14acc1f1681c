"""Which accounts a command covers: `--account` (`covered`) and `apply --only ACTION[,...]`.

`--account` names must each have a file in the accounts folder or be managed; otherwise the
command stops with `UnknownAccount` before anything is read from Gorgias.

`--only`: apply only accounts whose planned action is listed.

The others are left as they are and reported as `skipped` (an account already in sync is not
skipped: there is nothing to leave). The hourly backstop run uses `--only create`: it creates
what a late connect made possible and never updates or deletes on its own.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from together_reconcile.errors import TogetherError
from together_reconcile.reconcile.plan import AccountPlan, Plan, sorted_plan

ONLY_ACTIONS = ("create", "update", "delete")


class UnknownAccount(TogetherError):
    """`--account` named a domain that is neither in the accounts folder nor managed."""


def covered(files: Iterable[str], managed: Iterable[str], only: Iterable[str] = ()) -> list[str]:
    """The accounts a command covers, sorted: every account file and every managed account,
    or just `only` (`--account`, any case); `UnknownAccount` names those that are neither."""
    known = set(files) | set(managed)
    wanted = {domain.strip().lower() for domain in only}
    unknown = sorted(wanted - known)
    if unknown:
        raise UnknownAccount(
            f"unknown account(s): {', '.join(unknown)}: no file in the accounts folder "
            "and not managed by together-reconcile"
        )
    return sorted(wanted or known)


def parse_only(text: str) -> frozenset[str]:
    """`create,update` -> {"create", "update"}; ValueError naming what is not an action."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    wrong = [name for name in names if name not in ONLY_ACTIONS]
    if wrong or not names:
        raise ValueError(
            f"{', '.join(wrong) or repr(text)} is not an action: use "
            f"{', '.join(ONLY_ACTIONS)} (comma-separated)"
        )
    return frozenset(names)


def split_by_action(
    plan: Plan, only: Collection[str] | None
) -> tuple[Plan, tuple[AccountPlan, ...]]:
    """(the plan of the accounts to apply, the accounts skipped)."""
    if only is None:
        return plan, ()
    kept = [a for a in plan.accounts if a.action in only or a.action == "in_sync"]
    skipped = tuple(a for a in plan.accounts if a not in kept)
    return sorted_plan(kept), skipped
