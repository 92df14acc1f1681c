"""`apply --only ACTION[,ACTION]`: apply only accounts whose planned action is listed.

The others are left as they are and reported as `skipped` (an account already in sync is not
skipped: there is nothing to leave). The hourly backstop run uses `--only create`: it creates
what a late connect made possible and never updates or deletes on its own.
"""

from __future__ import annotations

from collections.abc import Collection

from together_reconcile.reconcile.plan import AccountPlan, Plan, sorted_plan

ONLY_ACTIONS = ("create", "update", "delete")


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
