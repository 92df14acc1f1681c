"""`serve`: the event handler Gorgias calls, under gunicorn."""

from __future__ import annotations

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
@click.option(
    "--timeout",
    type=click.IntRange(1, 3600),
    envvar="TOGETHER_TIMEOUT",
    help="Seconds a worker may stay silent before it is restarted [default: 30].",
)
@click.option(
    "--graceful-timeout",
    type=click.IntRange(1, 3600),
    envvar="TOGETHER_GRACEFUL_TIMEOUT",
    help="On SIGTERM/SIGHUP, seconds to finish requests in flight [default: 30].",
)
@click.option(
    "--keep-alive",
    type=click.IntRange(0, 3600),
    envvar="TOGETHER_KEEP_ALIVE",
    help="Seconds an idle keep-alive connection stays open [default: 5].",
)
@click.option(
    "--max-requests",
    type=click.IntRange(0),
    envvar="TOGETHER_MAX_REQUESTS",
    help="Restart a worker (after draining) once it answered this many; 0: never [default: 0].",
)
@click.option(
    "--max-requests-jitter",
    type=click.IntRange(0),
    envvar="TOGETHER_MAX_REQUESTS_JITTER",
    help="Add up to this many to --max-requests per worker, so they do not restart together "
    "[default: 0].",
)
@click.option(
    "--forwarded-allow-ips",
    envvar="TOGETHER_FORWARDED_ALLOW_IPS",
    help="Proxies trusted for X-Forwarded-* headers, comma-separated or '*' "
    "[default: 127.0.0.1,::1].",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.5, 300),
    envvar="TOGETHER_HEADER_TIMEOUT",
    help="Seconds a request's headers may take to arrive; its body gets 5 s more [default: 5.0].",
)
@click.option(
    "--drain-delay",
    type=click.FloatRange(0, 300),
    envvar="TOGETHER_DRAIN_DELAY",
    help="On SIGTERM, seconds between /readyz failing and the listener closing, for load "
    "balancers to notice [default: 0.0].",
)
@click.option(
    "--store-pool-size",
    type=click.IntRange(1, 100),
    envvar="TOGETHER_STORE_POOL_SIZE",
    help="State-store connections per worker; PostgreSQL budget per replica: workers x this "
    "[default: 4].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    envvar="TOGETHER_METRICS_PORT",
    help="Serve Prometheus metrics at /metrics on this port, a listener of its own (never the "
    "public port), summed over the workers [default: off].",
)
@click.option(
    "--metrics-host",
    envvar="TOGETHER_METRICS_HOST",
    help="Address of the metrics listener [default: 127.0.0.1].",
)
@click.option(
    "--gunicorn-config",
    "config_file",
    envvar="TOGETHER_GUNICORN_CONFIG",
    help="A gunicorn config file (Python) or python:module; GUNICORN_CMD_ARGS is read too. "
    "serve's own options win over both.",
)
@click.pass_obj
def serve_command(
    options: Options, /, store_pool_size: int | None, config_file: str | None, **values: Any
) -> None:
    """Run the event handler Gorgias calls (gunicorn, threaded workers).

    Account files are re-read by themselves within a second or two of a change: nothing needs
    to be sent after changing them. SIGTERM drains (see --drain-delay, --graceful-timeout).
    """
    import dataclasses

    from together_reconcile.events import app as handler
    from together_reconcile.events import serve
    from together_reconcile.events.metrics import MetricsPortError
    from together_reconcile.secrets import SecretKeysError

    # The defaults live in serve.ServeOptions only; a test checks the help text against them.
    serve_options = serve.given_options(config=config_file, **values)
    try:
        settings = handler.Settings.from_env(
            accounts_dir=options.accounts_dir, state_url=options.state_url
        )
        if store_pool_size is not None:
            settings = dataclasses.replace(settings, store_pool_size=store_pool_size)
        serve.run_server(settings, serve_options)
    except (SecretKeysError, MetricsPortError) as error:
        raise click.ClickException(str(error)) from None
    except config.ConfigError as error:
        raise click.ClickException(f"the account files are not valid:\n{error}") from None
