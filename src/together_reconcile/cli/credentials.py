"""`credentials put|list|import|rotate`: the encrypted token store.

Errors (`StoreError`, `SecretKeysError`, `CredentialInputError`) are `TogetherError`s: the root
group prints them, no command converts them.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from together_reconcile import secrets
from together_reconcile import store as store_module
from together_reconcile.cli import Options


def _keyring_from_env() -> secrets.Keyring:
    """The keys from `TOGETHER_SECRET_KEYS` (read from the environment only: never argv)."""
    return secrets.Keyring.from_env(os.environ.get(secrets.ENV_VAR))


@click.group()
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
    store_module.normalize_domain(kind, domain)
    keyring = _keyring_from_env()
    credential = store_module.credential_from_json(kind, domain, sys.stdin.read())
    with store_module.Store.open(options.state_url, keyring) as store:
        store.put_credential(credential)
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
    with store_module.Store.open(options.state_url) as store:
        infos = store.list_credentials()
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
    keyring = _keyring_from_env()
    text = _read_source(source)
    creds = store_module.credentials_from_json_lines(text.splitlines())
    with store_module.Store.open(options.state_url, keyring) as store:
        count = store.import_credentials(creds)
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
    with store_module.Store.open(options.state_url, keyring) as store:
        count = store.rotate_credentials()
    click.echo(f"re-encrypted {count} credential{'s' if count != 1 else ''} under the newest key")
