"""`plan` and `apply`: diff the account files against live Gorgias, and make it match."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from together_reconcile.cli import Options
from together_reconcile.reconcile import apply as apply_module
from together_reconcile.reconcile import observe as observe_module
from together_reconcile.reconcile import plan as plan_module
from together_reconcile.reconcile import render, safety
from together_reconcile.reconcile import select as select_module
from together_reconcile.reconcile import verify as verify_module


def _open_reconcile_session(options: Options) -> observe_module.Session:
    """Settings are checked before the store is opened: nothing is written when one is missing.

    Its errors (`SetupError`, `SecretKeysError`, `ConfigError`, `StoreError`), like every
    `TogetherError` below, reach the root group, which prints them and exits with their code.
    """
    return observe_module.open_session(options.accounts_dir, options.state_url)


def _colour_wanted() -> bool:
    return "NO_COLOR" not in os.environ and sys.stdout.isatty()


def _append_step_summary(markdown: Callable[[], str]) -> None:
    """Append `markdown()` to the GitHub step summary; rendered only inside GitHub Actions."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as summary:
            summary.write(markdown() + "\n")


_CONCURRENCY = click.IntRange(1, 512)
_MAX_UPDATES_HELP = (
    "Refuse the run (exit 3) when it updates more accounts [default: the larger of "
    f"{safety.MIN_MAX_UPDATES} and {safety.MAX_UPDATES_PERCENT}% of the managed accounts; "
    "key rotation is not counted]."
)


def _max_updates(reconciler: observe_module.Reconciler, max_updates: int | None) -> int:
    if max_updates is not None:
        return max_updates
    return safety.default_max_updates(len(reconciler.managed))


@click.command("plan")
@click.option("--json", "as_json", is_flag=True, envvar="TOGETHER_JSON", help="Print JSON.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "markdown"]),
    default="text",
    show_default=True,
    envvar="TOGETHER_FORMAT",
    help="Human output: text (terminal) or markdown (PR comment).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TOGETHER_OUT",
    help="Also save the plan (JSON + observed fingerprints) for `apply FILE`.",
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    envvar="TOGETHER_ACCOUNT",
    help="Only this Gorgias account (repeatable).",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    envvar="TOGETHER_DETAILED_EXITCODE",
    help="Exit 2 when there are changes, 0 when none.",
)
@click.option(
    "--concurrency",
    type=_CONCURRENCY,
    default=observe_module.DEFAULT_PLAN_CONCURRENCY,
    show_default=True,
    envvar="TOGETHER_CONCURRENCY",
    help="Accounts observed at once.",
)
@click.option(
    "--max-updates",
    type=click.IntRange(0),
    default=None,
    envvar="TOGETHER_MAX_UPDATES",
    help="Warn when apply would refuse the plan: "
    + _MAX_UPDATES_HELP[0].lower()
    + _MAX_UPDATES_HELP[1:],
)
@click.pass_obj
def plan_command(
    options: Options,
    as_json: bool,
    output_format: str,
    out: Path | None,
    accounts: tuple[str, ...],
    detailed_exitcode: bool,
    concurrency: int,
    max_updates: int | None,
) -> None:
    """Show what apply would change in each Gorgias account (secrets as fingerprints).

    Exit 0 ok (with --detailed-exitcode: 0 no changes, 2 changes), 1 error. A blocked
    account never changes the exit status. A plan apply would refuse for its update cap gets a
    warning line (on stderr with --json).
    """
    session = _open_reconcile_session(options)
    try:
        domains = session.reconciler.scope(accounts)
        plan = observe_module.make_plan(session.reconciler, domains, concurrency=concurrency)
    finally:
        session.store.close()
    reconciler = session.reconciler
    refusal = safety.update_cap_refusal(
        plan, _max_updates(reconciler, max_updates), reconciler.desired.rotated, reconciler.kinds
    )
    warnings = [safety.update_cap_warning(refusal)] if refusal else []
    if out is not None:
        out.write_text(json.dumps(render.saved_plan_document(plan), indent=2) + "\n", "utf-8")
    if as_json:
        click.echo(render.render_json(plan), nl=False)  # the SPEC document, unchanged
        for warning in warnings:
            click.echo(f"Warning: {warning}", err=True)
    elif output_format == "markdown":
        click.echo(render.render_markdown(plan, warnings=warnings), nl=False)
    else:
        click.echo(render.render_text(plan, colour=_colour_wanted(), warnings=warnings), nl=False)
    _append_step_summary(lambda: render.render_markdown(plan, warnings=warnings))
    if detailed_exitcode and plan.has_changes:
        raise SystemExit(2)


@click.command("apply")
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, envvar="TOGETHER_YES", help="Do not ask for confirmation.")
@click.option(
    "--max-deletes",
    type=click.IntRange(0),
    default=apply_module.DEFAULT_MAX_DELETES,
    show_default=True,
    envvar="TOGETHER_MAX_DELETES",
    help="Refuse the run (exit 3) when it deletes more (accounts + extra duplicates).",
)
@click.option(
    "--max-updates",
    type=click.IntRange(0),
    default=None,
    envvar="TOGETHER_MAX_UPDATES",
    help=_MAX_UPDATES_HELP,
)
@click.option(
    "--concurrency",
    type=_CONCURRENCY,
    default=apply_module.DEFAULT_APPLY_CONCURRENCY,
    show_default=True,
    envvar="TOGETHER_CONCURRENCY",
    help="Accounts changed at once.",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(0),
    default=apply_module.DEFAULT_LOCK_TIMEOUT_S,
    show_default=True,
    envvar="TOGETHER_LOCK_TIMEOUT",
    help="Seconds to wait for another apply on the same store before giving up (exit 3).",
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    envvar="TOGETHER_ACCOUNT",
    help="Only this Gorgias account (repeatable; not with PLAN_FILE).",
)
@click.option(
    "--only",
    "only_text",
    metavar="ACTION[,ACTION]",
    envvar="TOGETHER_ONLY",
    help="Only accounts whose action is listed (create, update, delete); others: skipped.",
)
@click.option(
    "--verify",
    "verify_after",
    is_flag=True,
    envvar="TOGETHER_VERIFY",
    help="Verify each account created or changed (the call Gorgias makes); a failure: exit 1.",
)
@click.option(
    "--verify-wait",
    type=click.FloatRange(0, 3600),
    default=verify_module.DEFAULT_VERIFY_WAIT_S,
    show_default=True,
    envvar="TOGETHER_VERIFY_WAIT",
    help="Seconds --verify waits for a handler that does not know the account yet.",
)
@click.pass_obj
def apply_command(
    options: Options,
    plan_file: Path | None,
    yes: bool,
    max_deletes: int,
    max_updates: int | None,
    concurrency: int,
    lock_timeout: float,
    accounts: tuple[str, ...],
    only_text: str | None,
    verify_after: bool,
    verify_wait: float,
) -> None:
    """Make live Gorgias state match the account files (or exactly a saved plan).

    Exit 0 all done, 1 an account failed (the others were applied), 3 refused by a safety
    rule (delete cap, update cap, stale plan, another apply running) and nothing changed.
    """
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not yes and not interactive:
        raise click.ClickException(
            "refusing to apply without confirmation: stdin is not a terminal; "
            "pass --yes (or TOGETHER_YES=1) to apply non-interactively"
        )
    if plan_file is not None and accounts:
        raise click.UsageError("--account cannot be combined with PLAN_FILE (the plan names them)")
    try:
        only = select_module.parse_only(only_text) if only_text is not None else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--only'") from None
    saved = apply_module.load_saved_plan(plan_file) if plan_file else None

    def confirm(plan: plan_module.Plan) -> bool:
        if yes:
            return True
        click.echo(render.render_text(plan, colour=_colour_wanted()), nl=False)
        return click.confirm("Apply these changes?", default=False)

    session = _open_reconcile_session(options)
    try:
        plan, report = apply_module.run_apply(
            session.reconciler,
            session.store,
            saved=saved,
            confirm=confirm,
            max_deletes=max_deletes,
            max_updates=max_updates,
            concurrency=concurrency,
            lock_timeout_s=lock_timeout,
            commit=session.reconciler.desired.commit,
            accounts=accounts,
            only=only,
        )
        if report is not None:
            if yes:
                click.echo(render.render_text(plan, colour=_colour_wanted()), nl=False)
            click.echo(report.render(), nl=False)
            title = "together-reconcile apply"
            _append_step_summary(lambda: render.render_markdown(plan, title=title))
        verified = (
            verify_after_apply(session, report, verify_wait)
            if verify_after and report is not None
            else []
        )
    finally:
        session.store.close()
    if report is None:
        click.echo("apply cancelled: nothing was changed", err=True)
        raise SystemExit(1)
    if report.exit_code:
        raise SystemExit(report.exit_code)
    if any(not result.ok for result in verified):
        raise SystemExit(1)


def verify_after_apply(
    session: observe_module.Session, report: apply_module.ApplyReport, wait_s: float
) -> list[verify_module.VerifyResult]:
    """`apply --verify`: verify each account created or changed, waiting up to `wait_s` for
    a handler that does not know the account yet; print and summarise the results."""
    desired = session.reconciler.desired
    changed = sorted(
        result.gorgias_account
        for result in report.results
        if result.ok
        and not result.skipped
        and result.action in ("create", "update")
        and desired.resources(result.gorgias_account) is not None
    )
    if not changed:
        return []
    stores = {
        domain: desired.accounts[domain].account.shopify_store
        for domain in changed
        if domain in desired.accounts
    }
    click.echo(f"Verifying {len(changed)} account(s) via {desired.public_url} ...")
    with verify_module.verify_http_client() as http:
        verifier = verify_module.Verifier(
            session.store, desired.keyring, desired.public_url, stores, http
        )
        results = verifier.verify_many(changed, wait_s=wait_s)
    for result in results:
        click.echo(result.line())
    failed = [result for result in results if not result.ok]
    click.echo(f"Verify: {len(results) - len(failed)} ok, {len(failed)} failed.")
    _append_step_summary(lambda: verify_module.markdown(results))
    return results
