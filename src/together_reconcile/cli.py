"""The command line: parse options, call the core, render. Nothing else lives here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

DEFAULT_STATE_URL = "sqlite:///.together/state.db"


@dataclass(frozen=True)
class Options:
    """Global options shared by every command (each also read from `TOGETHER_<OPTION>`)."""

    accounts_dir: Path
    state_url: str


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
