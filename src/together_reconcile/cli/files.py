"""`validate`, `schema`, `new`: account files only (no store, no network, no crypto)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from together_reconcile import config
from together_reconcile.cli import Options

DEFAULT_SCHEMA_FILE = Path("schemas/account.schema.json")


@click.command()
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


@click.command()
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
    from together_reconcile.config.schema import PACKAGED_SCHEMA_FILE

    if PACKAGED_SCHEMA_FILE.read_text(encoding="utf-8") != text:
        click.echo(
            f"Error: the schema validate applies ({PACKAGED_SCHEMA_FILE.name} in the package) "
            "is stale; regenerate both copies with: make schema",
            err=True,
        )
        raise SystemExit(1)
    click.echo(f"{schema_file} is up to date")


@click.command()
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
