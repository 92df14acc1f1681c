"""The command line: parse options, call the core, render. Nothing else lives here.

One module per family of commands (`files`, `credentials`, `keys`, `reconcile`, `serve`,
`sandbox`). The root group loads a command's module only when that command runs, so
`validate` never pays for the store, the HTTP clients or the reconciler: `COMMANDS` names
where each lives and its one-line help (what `--help` lists without importing anything).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from together_reconcile.errors import TogetherError

DEFAULT_STATE_URL = "sqlite:///.together/state.db"


@dataclass(frozen=True)
class Options:
    """Global options shared by every command (each also read from `TOGETHER_<OPTION>`)."""

    accounts_dir: Path
    state_url: str


EXIT_USAGE = 1  # SPEC: 1 = error. Click's own 2 would read as "changes" under --detailed-exitcode.


# name -> ("module:attribute", summary). The summary is the first paragraph of the command's
# docstring, shortened for the list as click would; tests/test_cli_imports.py checks they agree.
COMMANDS: dict[str, tuple[str, str]] = {
    "apply": (
        "reconcile:apply_command",
        "Make live Gorgias state match the account files (or exactly a saved plan).",
    ),
    "credentials": (
        "credentials:credentials",
        "Store and inspect the Gorgias and Shopify tokens (encrypted at rest).",
    ),
    "demo": (
        "sandbox:demo_command",
        "Run the whole loop on a local sandbox, narrated; leaves nothing behind.",
    ),
    "keygen": (
        "keys:keygen",
        "Print a new secret key for TOGETHER_SECRET_KEYS (newest first, comma-separated).",
    ),
    "new": (
        "files:new",
        "Write a valid accounts/SUBDOMAIN.yaml linking a Shopify store to a Gorgias account.",
    ),
    "plan": (
        "reconcile:plan_command",
        "Show what apply would change in each Gorgias account (secrets as fingerprints).",
    ),
    "sandbox": (
        "sandbox:sandbox_command",
        "Serve a local Gorgias + Shopify stand-in until Ctrl-C or SIGTERM.",
    ),
    "schema": (
        "files:schema",
        "Print the JSON Schema of an account file (generated from the model).",
    ),
    "serve": (
        "serve:serve_command",
        "Run the event handler Gorgias calls (gunicorn, threaded workers).",
    ),
    "status": (
        "support:status_command",
        "Where each account stands and the one next step (reads files and the store only).",
    ),
    "validate": (
        "files:validate",
        "Check account files (files or folders; default: the accounts dir).",
    ),
    "verify": (
        "support:verify_command",
        "Make the call Gorgias makes, through TOGETHER_PUBLIC_URL, for each applied account.",
    ),
}


_whole_process = False  # set by `run`: this process exists only to run one command

# Commands that serve until stopped keep the collector's usual pace (short pauses). The others
# run once and end: what they make mostly lives until then, so they collect rarely (mypy sets
# the same threshold for its runs). A plan of 1,000 accounts spent ~70 ms in collections.
SERVERS = frozenset({"serve", "sandbox"})
ONE_RUN_COLLECTION_THRESHOLDS = (200_000, 30, 30)


def _pace_collector(name: str) -> None:
    """Once the command's modules are imported (they live as long as the process, and no
    collection ran while they imported): freeze them, so that no collection walks them
    again, then collect at the command's pace."""
    gc.freeze()
    if name not in SERVERS:
        gc.set_threshold(*ONE_RUN_COLLECTION_THRESHOLDS)
    gc.enable()


def load_command(name: str) -> click.Command:
    """Import the module of one command and return its click command."""
    module_name, attribute = COMMANDS[name][0].split(":")
    if _whole_process:
        gc.disable()  # while the command's modules import: what they make lives on
    module = importlib.import_module(f"{__name__}.{module_name}")
    if _whole_process:
        _pace_collector(name)
    command = getattr(module, attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{name}: {module_name}.{attribute} is not a click command")
    return command


class TogetherGroup(click.Group):
    """The root group: commands load on use; a usage error exits 1, not click's 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from `COMMANDS`, without importing any command module."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [
            (name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit))
            for name in names
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run a command; the one place a `TogetherError` becomes `Error: <message>` + its exit
        code (commands let it propagate: no command converts errors itself)."""
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except TogetherError as error:
            click.echo(f"Error: {error.message}", err=True)
            sys.exit(error.exit_code)
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


def run() -> None:
    """The `together-reconcile` program (and `python -m together_reconcile`): `main` in a
    process of its own.

    Collection is only for a process that goes on: at exit the collector would walk every
    object the command made (about 0.1 s after a plan of 1,000 accounts) to free memory the
    operating system takes back anyway. Freezing them first skips that walk; streams are
    still flushed and exit handlers still run.
    """
    global _whole_process
    _whole_process = True
    atexit.register(gc.freeze)
    main()
