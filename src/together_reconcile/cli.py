"""The command line: parse options, call the core, render. Nothing else lives here."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from together_reconcile import apply as apply_module
from together_reconcile import config, render, secrets
from together_reconcile import observe as observe_module
from together_reconcile import plan as plan_module
from together_reconcile import store as store_module

DEFAULT_STATE_URL = "sqlite:///.together/state.db"


@dataclass(frozen=True)
class Options:
    """Global options shared by every command (each also read from `TOGETHER_<OPTION>`)."""

    accounts_dir: Path
    state_url: str


EXIT_USAGE = 1  # SPEC: 1 = error. Click's own 2 would read as "changes" under --detailed-exitcode.


class TogetherGroup(click.Group):
    """The root group: a usage error (unknown flag, missing argument) exits 1, not click's 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as error:
            error.show()
            sys.exit(EXIT_USAGE)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=TogetherGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--accounts-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("accounts"),
    show_default=True,
    envvar="TOGETHER_ACCOUNTS_DIR",
    help="Folder of account files.",
)
@click.option(
    "--state-url",
    default=DEFAULT_STATE_URL,
    show_default=True,
    envvar="TOGETHER_STATE_URL",
    help="State and credential store: sqlite:///path or postgresql://...",
)
@click.version_option(package_name="together-reconcile")
@click.pass_context
def main(ctx: click.Context, accounts_dir: Path, state_url: str) -> None:
    """Reconcile Together's Gorgias integration from accounts/*.yaml, and serve its events."""
    ctx.obj = Options(accounts_dir=accounts_dir, state_url=state_url)


# Commands are added below, one section per concept. Keep each one thin.
# Every option names its environment variable explicitly: envvar="TOGETHER_<OPTION>".


# --- account files: validate, schema, new -------------------------------------------------

DEFAULT_SCHEMA_FILE = Path("schemas/account.schema.json")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.pass_obj
def validate(options: Options, paths: tuple[Path, ...]) -> None:
    """Check account files (files or folders; default: the accounts dir).

    Prints each problem as path:line:col: message, then a summary; exit 1 if any.
    With GITHUB_ACTIONS=true, each problem is also printed as a GitHub annotation.
    """
    report = config.validate_paths(paths, options.accounts_dir)
    github = os.environ.get("GITHUB_ACTIONS") == "true"
    for line in report.lines(github_actions=github):
        click.echo(line)
    if not report.ok:
        raise SystemExit(1)


@main.command()
@click.option(
    "--check",
    is_flag=True,
    envvar="TOGETHER_CHECK",
    help="Fail if the committed schema file is stale.",
)
@click.option(
    "--schema-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SCHEMA_FILE,
    show_default=True,
    envvar="TOGETHER_SCHEMA_FILE",
    help="The committed schema that --check compares with.",
)
def schema(check: bool, schema_file: Path) -> None:
    """Print the JSON Schema of an account file (generated from the model)."""
    text = config.render_json_schema()
    if not check:
        click.echo(text, nl=False)
        return
    try:
        committed = schema_file.read_text(encoding="utf-8")
    except OSError as exc:
        click.echo(f"Error: cannot read {schema_file}: {exc.strerror}", err=True)
        raise SystemExit(1) from None
    if committed != text:
        click.echo(
            f"Error: {schema_file} is stale; regenerate it with: "
            f"together-reconcile schema > {schema_file}",
            err=True,
        )
        raise SystemExit(1)
    click.echo(f"{schema_file} is up to date")


@main.command()
@click.argument("subdomain")
@click.option(
    "--store",
    required=True,
    envvar="TOGETHER_STORE",
    help="The Shopify store domain, e.g. acme.myshopify.com.",
)
@click.pass_obj
def new(options: Options, subdomain: str, store: str) -> None:
    """Write a valid accounts/SUBDOMAIN.yaml linking a Shopify store to a Gorgias account.

    SUBDOMAIN is the Gorgias subdomain (acme) or domain (acme.gorgias.com).
    """
    try:
        path = config.new_account_file(options.accounts_dir, subdomain, store)
    except config.AccountInputError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(f"wrote {path}")


# --- credentials, keygen ------------------------------------------------------------------


def _keyring_from_env() -> secrets.Keyring:
    """The keys from `TOGETHER_SECRET_KEYS` (read from the environment only: never argv)."""
    try:
        return secrets.Keyring.from_env(os.environ.get(secrets.ENV_VAR))
    except secrets.SecretKeysError as error:
        raise click.ClickException(str(error)) from None


@main.group()
def credentials() -> None:
    """Store and inspect the Gorgias and Shopify tokens (encrypted at rest)."""


@credentials.command("put")
@click.argument("kind", metavar="gorgias|shopify")
@click.argument("domain", metavar="DOMAIN")
@click.pass_obj
def credentials_put(options: Options, kind: str, domain: str) -> None:
    """Store one credential read as JSON on stdin.

    \b
    gorgias ACCOUNT_DOMAIN: {"access_token", "refresh_token"?, "expires_in"?, "username"?}
    shopify STORE_DOMAIN:   {"access_token"}
    Needs TOGETHER_SECRET_KEYS. The token is never printed.
    """
    try:
        store_module.normalize_domain(kind, domain)
        keyring = _keyring_from_env()
        credential = store_module.credential_from_json(kind, domain, sys.stdin.read())
        with store_module.Store.open(options.state_url, keyring) as store:
            store.put_credential(credential)
    except (store_module.CredentialInputError, store_module.StoreError) as error:
        raise click.ClickException(str(error)) from None
    expiry = f", expires {_format_expiry(credential.expires_at)}" if credential.expires_at else ""
    click.echo(f"stored {credential.kind} credential for {credential.domain}{expiry}")


def _format_expiry(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


@credentials.command("list")
@click.pass_obj
def credentials_list(options: Options) -> None:
    """Show each stored credential: kind, domain, expiry, status — never a secret.

    \b
    STATUS: ok, expires soon (within an hour, and no refresh token to renew it),
    expired (same, already past), reconnect_needed (the refresh token was refused:
    the merchant must connect again). A token with a refresh token is renewed on use: ok.
    """
    try:
        with store_module.Store.open(options.state_url) as store:
            infos = store.list_credentials()
    except store_module.StoreError as error:
        raise click.ClickException(str(error)) from None
    now = datetime.now(UTC)
    rows = [("KIND", "DOMAIN", "EXPIRES", "STATUS")] + [
        (info.kind, info.domain, _format_expiry(info.expires_at), info.display_status(now))
        for info in infos
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[3]]))


@credentials.command("import")
@click.argument("source", metavar="FILE|-")
@click.pass_obj
def credentials_import(options: Options, source: str) -> None:
    """Store many credentials from JSON lines (- = stdin), all or nothing.

    \b
    One object a line: {"kind": "gorgias"|"shopify", "domain", "access_token", ...}
    (the other keys as for `credentials put`). One bad line: nothing is stored, and
    the error names the line. Needs TOGETHER_SECRET_KEYS.
    """
    try:
        keyring = _keyring_from_env()
        text = _read_source(source)
        creds = store_module.credentials_from_json_lines(text.splitlines())
        with store_module.Store.open(options.state_url, keyring) as store:
            count = store.import_credentials(creds)
    except (store_module.CredentialInputError, store_module.StoreError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"imported {count} credential{'s' if count != 1 else ''}")


def _read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise click.ClickException(f"cannot read {source}: {reason}") from None


@credentials.command("rotate")
@click.pass_obj
def credentials_rotate(options: Options) -> None:
    """Re-encrypt every stored credential under the newest key (the first listed).

    Afterwards the older keys of TOGETHER_SECRET_KEYS can be dropped, once no event token
    derived from them is still in use (apply first, so integrations carry the new token).
    """
    keyring = _keyring_from_env()
    try:
        with store_module.Store.open(options.state_url, keyring) as store:
            count = store.rotate_credentials()
    except store_module.StoreError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"re-encrypted {count} credential{'s' if count != 1 else ''} under the newest key")


@main.command()
def keygen() -> None:
    """Print a new secret key for TOGETHER_SECRET_KEYS (newest first, comma-separated)."""
    click.echo(secrets.generate_key())


# --- sandbox ---------------------------------------------------------------------------------


@main.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="TOGETHER_SANDBOX_HOST")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    envvar="TOGETHER_SANDBOX_PORT",
    help="0 picks a free port.",
)
@click.option(
    "--seed",
    "seed_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    envvar="TOGETHER_SANDBOX_SEED",
    help="YAML or JSON file of extra accounts, tokens, orders and foreign objects to seed.",
)
@click.option(
    "--demo/--no-demo",
    default=True,
    show_default=True,
    envvar="TOGETHER_SANDBOX_DEMO",
    help="Seed the demo accounts, stores and orders.",
)
def sandbox_command(host: str, port: int, seed_file: Path | None, demo: bool) -> None:
    """Serve a local Gorgias + Shopify stand-in until Ctrl-C or SIGTERM."""
    from together_reconcile.sandbox.run import SeedFileError, run_sandbox

    try:
        status = run_sandbox(
            host, port, demo=demo, seed_file=seed_file, echo=lambda line: click.echo(line)
        )
    except SeedFileError as exc:
        raise click.ClickException(str(exc)) from None
    raise SystemExit(status)


# --- reconcile: plan, apply ---------------------------------------------------------------


def _open_reconcile_session(options: Options) -> observe_module.Session:
    """Settings are checked before the store is opened: nothing is written when one is missing."""
    try:
        return observe_module.open_session(options.accounts_dir, options.state_url)
    except (
        observe_module.SetupError,
        secrets.SecretKeysError,
        config.ConfigError,
        store_module.StoreError,
    ) as error:
        raise click.ClickException(str(error)) from None


def _colour_wanted() -> bool:
    return "NO_COLOR" not in os.environ and sys.stdout.isatty()


def _append_step_summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as summary:
            summary.write(markdown + "\n")


_CONCURRENCY = click.IntRange(1, 512)


@main.command("plan")
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
@click.pass_obj
def plan_command(
    options: Options,
    as_json: bool,
    output_format: str,
    out: Path | None,
    accounts: tuple[str, ...],
    detailed_exitcode: bool,
    concurrency: int,
) -> None:
    """Show what apply would change in each Gorgias account (secrets as fingerprints).

    Exit 0 ok (with --detailed-exitcode: 0 no changes, 2 changes), 1 error. A blocked
    account never changes the exit status.
    """
    session = _open_reconcile_session(options)
    try:
        domains = session.reconciler.scope(accounts)
        plan = observe_module.make_plan(session.reconciler, domains, concurrency=concurrency)
    except observe_module.SetupError as error:
        raise click.ClickException(str(error)) from None
    finally:
        session.store.close()
    if out is not None:
        out.write_text(json.dumps(render.saved_plan_document(plan), indent=2) + "\n", "utf-8")
    if as_json:
        click.echo(render.render_json(plan), nl=False)
    elif output_format == "markdown":
        click.echo(render.render_markdown(plan), nl=False)
    else:
        click.echo(render.render_text(plan, colour=_colour_wanted()), nl=False)
    _append_step_summary(render.render_markdown(plan))
    if detailed_exitcode and plan.has_changes:
        raise SystemExit(2)


@main.command("apply")
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
@click.pass_obj
def apply_command(
    options: Options,
    plan_file: Path | None,
    yes: bool,
    max_deletes: int,
    concurrency: int,
    lock_timeout: float,
) -> None:
    """Make live Gorgias state match the account files (or exactly a saved plan).

    Exit 0 all done, 1 an account failed (the others were applied), 3 refused by a safety
    rule (delete cap, stale plan, another apply running) and nothing changed.
    """
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not yes and not interactive:
        raise click.ClickException(
            "refusing to apply without confirmation: stdin is not a terminal; "
            "pass --yes (or TOGETHER_YES=1) to apply non-interactively"
        )
    try:
        saved = apply_module.load_saved_plan(plan_file) if plan_file else None
    except apply_module.PlanFileError as error:
        raise click.ClickException(str(error)) from None

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
            concurrency=concurrency,
            lock_timeout_s=lock_timeout,
            commit=session.reconciler.desired.commit,
        )
    except (apply_module.ApplyRefused, store_module.LockTimeout) as error:
        click.echo(f"Error: {error}", err=True)
        raise SystemExit(apply_module.EXIT_REFUSED) from None
    except (observe_module.SetupError, store_module.StoreError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        session.store.close()
    if report is None:
        click.echo("apply cancelled: nothing was changed", err=True)
        raise SystemExit(1)
    if yes:
        click.echo(render.render_text(plan, colour=_colour_wanted()), nl=False)
    click.echo(report.render(), nl=False)
    _append_step_summary(render.render_markdown(plan, title="together-reconcile apply"))
    if report.exit_code:
        raise SystemExit(report.exit_code)


# --- serve: the event handler ---------------------------------------------------------------


@main.command("serve")
@click.option("--host", envvar="TOGETHER_HOST", help="Address to listen on [default: 127.0.0.1].")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    envvar="TOGETHER_PORT",
    help="Port to listen on [default: 8000].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    envvar="TOGETHER_WORKERS",
    help="Worker processes, about one per core [default: 2].",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    envvar="TOGETHER_THREADS",
    help="Threads per worker, for requests waiting on Shopify [default: 32].",
)
@click.pass_obj
def serve_command(
    options: Options, host: str | None, port: int | None, workers: int | None, threads: int | None
) -> None:
    """Run the event handler Gorgias calls (gunicorn, threaded workers)."""
    from together_reconcile import handler, serve
    from together_reconcile.secrets import SecretKeysError

    given: dict[str, Any] = {"host": host, "port": port, "workers": workers, "threads": threads}
    # The defaults live in serve.ServeOptions only; a test checks the help text against them.
    serve_options = dataclasses.replace(
        serve.ServeOptions(), **{name: value for name, value in given.items() if value is not None}
    )
    try:
        settings = handler.Settings.from_env(
            accounts_dir=options.accounts_dir, state_url=options.state_url
        )
        serve.run_server(settings, serve_options)
    except SecretKeysError as error:
        raise click.ClickException(str(error)) from None
    except config.ConfigError as error:
        raise click.ClickException(f"the account files are not valid:\n{error}") from None


# --- demo -----------------------------------------------------------------------------------


@main.command("demo")
@click.option(
    "--pause",
    type=click.FloatRange(0, 60),
    default=0.0,
    envvar="TOGETHER_PAUSE",
    help="Seconds to wait before each step (to present it live).",
)
def demo_command(pause: float) -> None:
    """Run the whole loop on a local sandbox, narrated; leaves nothing behind.

    validate, plan, apply, a ticket event and the widget data, then an account disabled and
    removed. Uses a throw-away folder, state store and secret key; needs no settings.
    """
    from together_reconcile.demo import main_entry

    raise SystemExit(main_entry(lambda line: click.echo(line), pause_s=pause))
