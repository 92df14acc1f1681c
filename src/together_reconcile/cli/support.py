"""`status` and `verify`: what support looks at before telling a merchant anything."""

from __future__ import annotations

import json
import os

import click

from together_reconcile import config, secrets
from together_reconcile import store as store_module
from together_reconcile.cli import Options
from together_reconcile.reconcile import select
from together_reconcile.reconcile import status as status_module
from together_reconcile.reconcile import verify as verify_module
from together_reconcile.reconcile.observe import SetupError, public_url_from_env

_ACCOUNT = click.option(
    "--account",
    "accounts",
    multiple=True,
    envvar="TOGETHER_ACCOUNT",
    help="Only this Gorgias account (repeatable).",
)
_JSON = click.option("--json", "as_json", is_flag=True, envvar="TOGETHER_JSON", help="Print JSON.")


def _public_url_or_none() -> str | None:
    try:
        return public_url_from_env(os.environ)
    except SetupError:
        return None


@click.command("status")
@_JSON
@_ACCOUNT
@click.pass_obj
def status_command(options: Options, as_json: bool, accounts: tuple[str, ...]) -> None:
    """Where each account stands and the one next step (reads files and the store only).

    One line per account (files and managed accounts): file, Gorgias tokens, Shopify token,
    what was applied, the last verification, and the next step. No network. Exit 0; 1 when
    the files or the store cannot be read.
    """
    # ConfigError, StoreError and UnknownAccount reach the root group (exit 1 with the message).
    files = config.load_accounts(options.accounts_dir)
    with store_module.Store.open(options.state_url) as store:
        managed = store.list_managed()
        credentials = store.list_credentials()
        verifications = store.list_verifications()
    select.covered(files, managed, accounts)  # UnknownAccount for a name neither knows
    statuses = status_module.account_statuses(
        files,
        managed,
        credentials,
        verifications,
        public_url=_public_url_or_none(),
        only=accounts,
    )
    if as_json:
        document = {"accounts": [entry.as_json() for entry in statuses]}
        click.echo(json.dumps(document, indent=2))
        return
    for entry in statuses:
        click.echo(entry.line())
    if not statuses:
        click.echo("no accounts: no file in the accounts folder and nothing managed")


@click.command("verify")
@_JSON
@_ACCOUNT
@click.option(
    "--verify-timeout",
    "timeout",
    type=click.FloatRange(0.1, 60),
    default=verify_module.DEFAULT_TIMEOUT_S,
    show_default=True,
    envvar="TOGETHER_VERIFY_TIMEOUT",
    help="Seconds one verification may take.",
)
@click.option(
    "--verify-wait",
    "wait_s",
    type=click.FloatRange(0, 3600),
    default=0,
    show_default=True,
    envvar="TOGETHER_VERIFY_WAIT",
    help="Seconds to wait for a handler that does not know an account yet (unknown_account).",
)
@click.pass_obj
def verify_command(
    options: Options, as_json: bool, accounts: tuple[str, ...], timeout: float, wait_s: float
) -> None:
    """Make the call Gorgias makes, through TOGETHER_PUBLIC_URL, for each applied account.

    For each enabled, applied account (or each --account): POST the reserved verification
    event with the account's current token; ok only when the handler answered after asking
    Shopify. Results are recorded for `status`. Exit 0 all ok, 1 any failed.
    """
    # Its errors (SetupError, SecretKeysError, ConfigError, StoreError) reach the root group.
    public_url = public_url_from_env(os.environ)
    keyring = secrets.Keyring.from_env(os.environ.get(secrets.ENV_VAR))
    files = config.load_accounts(options.accounts_dir)
    with store_module.Store.open(options.state_url, keyring) as store:
        results = run_verify(
            store, keyring, public_url, files, accounts, timeout_s=timeout, wait_s=wait_s
        )
    if as_json:
        click.echo(json.dumps({"accounts": [r.as_json() for r in results]}, indent=2))
    else:
        for result in results:
            click.echo(result.line())
        failed = sum(1 for r in results if not r.ok)
        click.echo(
            f"Verify: {len(results) - failed} ok, {failed} failed "
            f"({len(results)} account{'' if len(results) == 1 else 's'}) via {public_url}."
        )
    if any(not r.ok for r in results):
        raise SystemExit(1)


def run_verify(
    store: store_module.Store,
    keyring: secrets.Keyring,
    public_url: str,
    files: dict[str, config.AccountFile],
    accounts: tuple[str, ...],
    *,
    timeout_s: float = verify_module.DEFAULT_TIMEOUT_S,
    wait_s: float = 0.0,
) -> list[verify_module.VerifyResult]:
    """The accounts to check (named, or every enabled applied one), verified in parallel."""
    managed = store.list_managed()
    enabled = {d: f.account.shopify_store for d, f in files.items() if f.account.enabled}
    default = verify_module.verifiable(enabled, ((d, m.integration_id) for d, m in managed.items()))
    if accounts:
        wanted = sorted({a.strip().lower() for a in accounts})
        not_ready = [d for d in wanted if d not in default]
        if not_ready and len(not_ready) == len(wanted):
            raise click.ClickException(
                f"nothing to verify for {', '.join(not_ready)}: verify checks accounts with an "
                "enabled file whose integration was applied; see `status`"
            )
        for domain in not_ready:
            click.echo(f"{domain}: not verified: no enabled file or nothing applied", err=True)
        domains = [d for d in wanted if d in default]
    else:
        domains = default
    with verify_module.verify_http_client() as http:
        verifier = verify_module.Verifier(
            store, keyring, public_url, enabled, http, timeout_s=timeout_s
        )
        return verifier.verify_many(domains, wait_s=wait_s)
