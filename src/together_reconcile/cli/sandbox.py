"""`sandbox` and `demo`: the local Gorgias + Shopify stand-in, and the narrated loop on it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("sandbox")
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


@click.command("demo")
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
    from together_reconcile.cli import main
    from together_reconcile.demo import main_entry

    raise SystemExit(main_entry(lambda line: click.echo(line), main, pause_s=pause))
