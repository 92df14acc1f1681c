"""SPEC "Environment": each variable's default and effect; every option reads TOGETHER_<OPTION>."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import click
import httpx
import pytest

from tests.click_helpers import subcommands
from tests.contract.conftest import (
    OAUTH_CLIENT_ID,
    OAUTH_CLIENT_SECRET,
    PUBLIC_URL,
    SandboxProcess,
    Served,
    World,
    keep_output,
    remember_secret,
    run_cli,
    start_serve,
)
from together_reconcile.cli import main
from together_reconcile.events.shopify import ShopifySettings
from together_reconcile.secrets import Keyring, generate_key


def all_options(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Option]]:
    for name, command in subcommands(group).items():
        if isinstance(command, click.Group):
            yield from all_options(command, f"{prefix}{name} ")
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help", "version"):
                yield f"{prefix}{name}", param


def test_environment_every_option_reads_together_option() -> None:
    options = [
        *all_options(main),
        *(
            ("(global)", p)
            for p in main.params
            if isinstance(p, click.Option) and p.name != "version"
        ),
    ]
    assert len(options) > 10
    for where, option in options:
        long_name = next(o for o in option.opts if o.startswith("--")).removeprefix("--")
        expected = "TOGETHER_" + long_name.replace("-", "_").upper()
        if where == "sandbox":  # namespaced on purpose: serve's TOGETHER_PORT must not move it
            expected = expected.replace("TOGETHER_", "TOGETHER_SANDBOX_")
        assert option.envvar == expected, f"{where} --{long_name}: envvar {option.envvar!r}"


def test_environment_option_env_vars_take_effect(tmp_path: Path) -> None:
    folder = tmp_path / "from-env"
    folder.mkdir()
    (folder / "acme.yaml").write_text("shopify_store: x\ngorgias_account: acme.gorgias.com\n")
    done = run_cli("validate", env={"TOGETHER_ACCOUNTS_DIR": str(folder)}, cwd=tmp_path)
    assert done.code == 1 and "from-env/acme.yaml:1:" in done.stdout


def test_environment_state_url_defaults_to_sqlite_under_dot_together(tmp_path: Path) -> None:
    key = generate_key()
    remember_secret(key)
    done = run_cli(
        "credentials",
        "put",
        "shopify",
        "acme.myshopify.com",
        env={"TOGETHER_SECRET_KEYS": key},
        stdin=json.dumps({"access_token": "shpat_default_path"}),
        cwd=tmp_path,
    )
    assert done.code == 0, done.output
    assert (tmp_path / ".together/state.db").is_file()


@pytest.mark.postgres
def test_environment_state_url_takes_postgresql(postgres_schema_url: str) -> None:
    key = generate_key()
    remember_secret(key)
    env = {"TOGETHER_SECRET_KEYS": key, "TOGETHER_STATE_URL": postgres_schema_url}
    stdin = json.dumps({"access_token": "shpat_in_postgres"})
    put = run_cli("credentials", "put", "shopify", "pg.myshopify.com", env=env, stdin=stdin)
    assert put.code == 0, put.output
    listed = run_cli("credentials", "list", env=env)
    assert "pg.myshopify.com" in listed.stdout


def test_environment_secret_keys_missing_is_a_clear_error(tmp_path: Path) -> None:
    done = run_cli(
        "credentials",
        "put",
        "shopify",
        "a.myshopify.com",
        stdin='{"access_token": "t"}',
        cwd=tmp_path,
    )
    assert done.code == 1
    assert "TOGETHER_SECRET_KEYS is not set" in done.output


def test_environment_older_secret_key_still_verifies_event_tokens(served: Served) -> None:
    domain = f"{served.accounts['main']}.gorgias.com"
    older = served.world.keys.split(",")[1]
    token = Keyring.from_env(older).event_token(domain)
    remember_secret(token)
    body = {"ticket_id": "1", "account_domain": domain, "customer_email": None}
    assert served.post(body, token=token).status_code == 200
    newest = Keyring.from_env(served.world.keys).event_token(domain)
    assert token != newest


def test_environment_shopify_defaults() -> None:
    """Checked in-process: loopback-only tests must not call the real Shopify."""
    settings = ShopifySettings.from_env({})
    assert settings.url_template == "https://{store}.myshopify.com"
    assert re.fullmatch(r"20\d\d-(01|04|07|10)", settings.api_version)


@pytest.fixture(scope="module")
def bare_serves(
    sandbox_process: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Two more `serve`s: one without the OAuth app settings, one without TOGETHER_GORGIAS_URL."""
    world = World(sandbox_process, tmp_path_factory.mktemp("bare"))
    world.write_account("acme")
    with ExitStack() as stack:
        for name in ("a", "b"):
            (world.root / name).mkdir()
        no_app = start_serve(stack, world, world.root / "a", {"TOGETHER_PUBLIC_URL": PUBLIC_URL})
        default_url = start_serve(
            stack,
            world,
            world.root / "b",
            {
                "TOGETHER_PUBLIC_URL": PUBLIC_URL,
                "TOGETHER_GORGIAS_CLIENT_ID": OAUTH_CLIENT_ID,
                "TOGETHER_GORGIAS_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
            },
        )
        yield no_app.url, default_url.url
        keep_output(no_app.stderr() + default_url.stderr())


def test_environment_oauth_routes_answer_503_without_client_settings(
    bare_serves: tuple[str, str],
) -> None:
    no_app, _ = bare_serves
    for path in ("/oauth/gorgias/install?account=acme", "/oauth/gorgias/callback?code=x&state=y"):
        answer = httpx.get(no_app + path, timeout=10)
        keep_output(answer.text)
        assert answer.status_code == 503
        assert "not set up" in answer.text


def test_environment_gorgias_url_defaults_to_the_real_gorgias(bare_serves: tuple[str, str]) -> None:
    _, default_url = bare_serves
    answer = httpx.get(default_url + "/oauth/gorgias/install?account=acme", timeout=10)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        "acme.gorgias.com",
        "/oauth/authorize",
    )
