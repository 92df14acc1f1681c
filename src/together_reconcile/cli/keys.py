"""`keygen`: a new key for TOGETHER_SECRET_KEYS (no cryptography import: it is os.urandom)."""

from __future__ import annotations

import click

from together_reconcile.secrets import generate_key


@click.command()
def keygen() -> None:
    """Print a new secret key for TOGETHER_SECRET_KEYS (newest first, comma-separated)."""
    click.echo(generate_key())
