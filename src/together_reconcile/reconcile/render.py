"""Renderings of a `Plan`: JSON (SPEC shape), text for terminals, Markdown for PR comments.

A `Plan` holds no secret (header values are fingerprints already), so these are safe for CI
logs and pull-request comments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from together_reconcile.reconcile.plan import AccountPlan, FieldDiff, Plan, ResourcePlan

SAVED_PLAN_FORMAT = 1
MAX_VALUE_CHARS = 100

_SYMBOLS = {
    "create": "+",
    "update": "~",
    "reactivate": "~",
    "delete": "-",
    "in_sync": "=",
    "blocked": "!",
}
_COLOURS = {"+": "32", "~": "33", "-": "31", "=": "2", "!": "35"}


# -- JSON ------------------------------------------------------------------------------------


def resource_json(resource: ResourcePlan) -> dict[str, Any]:
    return {
        "kind": resource.kind,
        "action": resource.action,
        "id": resource.id,
        "diff": [{"field": d.field, "before": d.before, "after": d.after} for d in resource.diff],
    }


def account_json(account: AccountPlan) -> dict[str, Any]:
    document: dict[str, Any] = {
        "gorgias_account": account.gorgias_account,
        "action": account.action,
        "resources": [resource_json(resource) for resource in account.resources],
    }
    if account.reason is not None:
        document["reason"] = account.reason
        document["message"] = account.message
    if account.notes:
        document["notes"] = list(account.notes)
    return document


def to_json(plan: Plan) -> dict[str, Any]:
    """The `plan --json` document (SPEC "plan --json")."""
    return {
        "accounts": [account_json(account) for account in plan.accounts],
        "summary": plan.summary,
    }


def saved_plan_document(plan: Plan) -> dict[str, Any]:
    """`plan --out`: the JSON document plus the observed-state fingerprint of each account."""
    return {
        **to_json(plan),
        "format": SAVED_PLAN_FORMAT,
        "observed": {
            account.gorgias_account: account.observed_fingerprint for account in plan.accounts
        },
    }


def render_json(plan: Plan) -> str:
    """`plan --json`: one account a line, so a CI log or a diff reads account by account.

    Each account is encoded compactly by the C encoder; `indent=` would switch every value to
    json's pure-Python encoder, which for 1,000 accounts costs more CPU than their requests.
    """
    document = to_json(plan)
    accounts = ",\n".join("    " + json.dumps(account) for account in document["accounts"])
    return (
        '{\n  "accounts": [\n'
        + (accounts + "\n" if accounts else "")
        + '  ],\n  "summary": '
        + json.dumps(document["summary"])
        + "\n}\n"
    )


# -- Text ------------------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _line(text: str) -> str:
    """Free text (a Gorgias error message, a note) on one line with no control character, so
    it can neither drive the terminal (ANSI escapes) nor close the Markdown code block."""
    return _CONTROL.sub(" ", text).replace("``", "` `")


def _value(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    text = _CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)  # json left C1
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return text


def _diff_line(diff: FieldDiff, creating: bool) -> str:
    if creating:
        return f"{diff.field} = {_value(diff.after)}"
    return f"{diff.field}: {_value(diff.before)} → {_value(diff.after)}"


def _resource_title(resource: ResourcePlan) -> str:
    ident = "(new)" if resource.id is None else str(resource.id)
    return f"{resource.kind} {ident}: {resource.action}"


def _account_lines(account: AccountPlan) -> list[tuple[str, str]]:
    """(symbol, line) pairs; the symbol picks the colour."""
    symbol = _SYMBOLS[account.action]
    head = f"{_line(account.gorgias_account)}: {account.action}"  # SPEC vocabulary, verbatim
    if account.reason is not None:
        head += f" ({account.reason}: {_line(account.message or '')})"
    lines = [(symbol, f"{symbol} {head}")]
    for resource in account.resources:
        mark = _SYMBOLS[resource.action]
        lines.append((mark, f"    {mark} {_resource_title(resource)}"))
        if resource.action == "delete":
            continue
        creating = resource.action == "create"
        for diff in resource.diff:
            lines.append((mark, f"        {_diff_line(diff, creating)}"))
    lines.extend(("!", f"    note: {_line(note)}") for note in account.notes)
    return lines


def summary_line(plan: Plan) -> str:
    s = plan.summary
    return (
        f"Plan: {s['create']} to create, {s['update']} to update, {s['delete']} to delete, "
        f"{s['in_sync']} in sync, {s['blocked']} blocked "
        f"({s['accounts']} account{'' if s['accounts'] == 1 else 's'})."
    )


def render_text(
    plan: Plan,
    *,
    colour: bool = False,
    show_in_sync: bool = False,
    warnings: Sequence[str] = (),
) -> str:
    """Terraform-like text, one entry per account with its action spelled as in the SPEC
    (`create`, `update`, `delete`, `in_sync`, `blocked`). An in-sync account is one line
    (`= acme.gorgias.com: in_sync`) unless `show_in_sync` asks for its resources too.
    Each of `warnings` is a last line `Warning: ...`."""

    def paint(symbol: str, line: str) -> str:
        return f"\x1b[{_COLOURS[symbol]}m{line}\x1b[0m" if colour else line

    out: list[str] = []
    for account in plan.accounts:
        lines = _account_lines(account)
        if account.action == "in_sync" and not account.notes and not show_in_sync:
            lines = lines[:1]
        out.extend(paint(symbol, line) for symbol, line in lines)
    out.append(summary_line(plan))
    out.extend(paint("!", f"Warning: {_line(warning)}") for warning in warnings)
    return "\n".join(out) + "\n"


# -- Markdown --------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(
    plan: Plan, *, title: str = "together-reconcile plan", warnings: Sequence[str] = ()
) -> str:
    """For PR comments and the job summary: a summary table (then `warnings`, each a quoted
    line), then each account's details."""
    s = plan.summary
    out = [
        f"### {title}",
        "",
        "| create | update | delete | in sync | blocked | accounts |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {s['create']} | {s['update']} | {s['delete']} | {s['in_sync']} | {s['blocked']} "
        f"| {s['accounts']} |",
        "",
    ]
    for warning in warnings:
        out += [f"> **Warning:** {_md_cell(_line(warning))}", ""]
    shown = [a for a in plan.accounts if a.action != "in_sync" or a.notes]
    if not shown:
        out.append("No changes: every account is in sync.")
        return "\n".join(out) + "\n"
    out += ["| account | action | details |", "|---|---|---|"]
    for account in shown:
        details = account.reason or ", ".join(
            f"{r.kind} {r.action}" for r in account.resources if r.action != "in_sync"
        )
        if account.notes:
            details = (details + "; " if details else "") + f"{len(account.notes)} note(s)"
        out.append(f"| `{account.gorgias_account}` | {account.action} | {_md_cell(details)} |")
    out.append("")
    for account in shown:
        if account.action in ("in_sync", "blocked") and not account.notes:
            continue
        out += [
            "<details>",
            f"<summary><code>{account.gorgias_account}</code>: {account.action}</summary>",
            "",
            "```diff",
            *(line for _symbol, line in _account_lines(account)),
            "```",
            "</details>",
            "",
        ]
    return "\n".join(out) + "\n"
