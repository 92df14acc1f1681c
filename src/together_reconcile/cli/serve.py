"""`serve`: the event handler Gorgias calls, under gunicorn."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from together_reconcile import config
from together_reconcile.cli import Options


@click.command("serve")
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
    from together_reconcile.events import app as handler
    from together_reconcile.events import serve
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
