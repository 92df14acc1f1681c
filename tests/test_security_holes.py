"""Issue 15, "Medium and low" items 2-9 and issue 11's chunked body and block-scalar domain:
each test reproduces the attack the security review found and asserts the exact outcome now."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from tests.handler_helpers import Answer, call
from together_reconcile.cli import main
from together_reconcile.events.app import HandlerApp, Settings, create_app
from together_reconcile.events.serve import prepare
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Store, StoreError, mask_url

ROOT = Path(__file__).resolve().parents[1]

# -- 2. a database password with an unencoded "@" ---------------------------------------------

LEAKY_URL = "postgresql://svc:Sup3r@Secr3t@db.internal:5432/db"
ENCODE_ADVICE = (
    "the state URL has an unencoded '@' in its user name or password: "
    "percent-encode the password (write '@' as %40, ':' as %3A, '/' as %2F)"
)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (LEAKY_URL, "postgresql://***@db.internal:5432/db"),
        ("postgresql://svc:Sup@er/x@db.internal/db", "postgresql://***@db.internal/db"),
        ("postgresql://svc@corp:pw@db.internal/db?options=x", "postgresql://***@db.internal/db"),
        (
            "postgresql://svc:Sup3r%40Secr3t@db.internal:5432/db",
            "postgresql://svc:***@db.internal:5432/db",
        ),
        ("postgresql://svc:pw@db.internal/db?options=a@b", "postgresql://svc:***@db.internal/db"),
    ],
)
def test_mask_url_masks_up_to_the_last_at(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_state_url_with_an_unencoded_at_is_refused_without_echoing_it() -> None:
    with pytest.raises(StoreError) as raised:
        Store.open(LEAKY_URL)
    assert str(raised.value) == ENCODE_ADVICE


def test_cli_refuses_the_url_with_advice_and_no_password() -> None:
    runner = CliRunner(
        env={"TOGETHER_SECRET_KEYS": generate_key(), "TOGETHER_STATE_URL": LEAKY_URL}
    )
    result = runner.invoke(main, ["credentials", "list"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {ENCODE_ADVICE}\n"
    assert "Secr3t" not in result.output and "Sup3r" not in result.output


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`prepare` sets up the JSON log handlers (propagate off): undo that for later tests."""
    loggers = [logging.getLogger("together_reconcile"), logging.getLogger()]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    logging.captureWarnings(False)


@pytest.mark.usefixtures("restore_logging")
def test_handler_start_up_log_has_no_password(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "accounts").mkdir()
    settings = Settings(
        accounts_dir=tmp_path / "accounts",
        state_url=LEAKY_URL,
        keyring=Keyring.from_env(generate_key()),
    )
    prepare(settings)
    text = capfd.readouterr().err
    assert '"event":"store_unavailable_at_start"' in text
    assert ENCODE_ADVICE in text
    assert "Secr3t" not in text and "Sup3r" not in text


def test_driver_host_text_is_never_repeated() -> None:
    # Percent-encoded, so the URL is accepted; the host does not resolve. psycopg says
    # "failed to resolve host 'no-such-host.invalid': ..."; we say it in our own words.
    url = "postgresql://svc:Sup3r%40Secr3t@no-such-host.invalid:5432/db"
    with pytest.raises(StoreError) as raised:
        Store.open(url)
    assert str(raised.value) == (
        "cannot reach the state database at postgresql://svc:***@no-such-host.invalid:5432/db: "
        "the host name does not resolve"
    )


def test_driver_quoted_names_are_never_repeated(
    postgres_url_or_skip_reason: tuple[str | None, str | None],
) -> None:
    base, reason = postgres_url_or_skip_reason
    if base is None:
        if os.environ.get("CI") == "true":
            pytest.fail(str(reason))
        pytest.skip(f"{reason}: start it or set TOGETHER_TEST_POSTGRES_URL")
    url = base.rsplit("/", 1)[0] + "/no_such_db_Secr3t"
    with pytest.raises(StoreError) as raised:
        Store.open(url)
    assert str(raised.value) == (
        f"cannot reach the state database at {mask_url(url)}: the database does not exist"
    )
    # what psycopg itself says names the database: the reason above is ours
    with pytest.raises(psycopg.OperationalError, match='"no_such_db_Secr3t"'):
        psycopg.connect(url, connect_timeout=3)


# -- 3. a 5,000-digit integer in an account file ----------------------------------------------

HUGE = "9" * 5000
GOOD_ACCOUNT = "shopify_store: acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"


def _accounts(tmp_path: Path, widget: str) -> Path:
    folder = tmp_path / "accounts"
    folder.mkdir(exist_ok=True)
    (folder / "acme.yaml").write_text(GOOD_ACCOUNT + widget)
    return folder


def _cli(tmp_path: Path, *args: str) -> Result:
    env = {
        "TOGETHER_SECRET_KEYS": generate_key(),
        "TOGETHER_STATE_URL": f"sqlite:///{tmp_path}/state.db",
        "TOGETHER_PUBLIC_URL": "https://together.example.com",
    }
    accounts = ["--accounts-dir", str(tmp_path / "accounts")]
    return CliRunner(env=env).invoke(main, [*accounts, *args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (HUGE, "a 5000-digit number"),
        ("-" + HUGE, "a 5000-digit number"),
        ("0x" + "f" * 29, "a 29-digit number"),
        ("1" * 40, "a 40-digit number"),  # a number, not "looks like a secret"
        ("1001", "1001"),
        ("-1", "-1"),
    ],
    ids=["5000-digits", "minus-5000-digits", "hex-29", "40-digits", "1001", "-1"],
)
def test_huge_or_out_of_range_order_is_a_normal_problem(
    tmp_path: Path, value: str, shown: str
) -> None:
    folder = _accounts(tmp_path, f"widget:\n  order: {value}\n")
    problem = f"{folder}/acme.yaml:4:10: widget.order: must be between 0 and 1000, got {shown}"
    validated = _cli(tmp_path, "validate")
    assert validated.exit_code == 1
    assert validated.output.splitlines()[0] == problem
    planned = _cli(tmp_path, "plan")
    assert planned.exit_code == 1
    assert planned.output == (
        f"Error: invalid account files (1 problem); run `together-reconcile validate`:\n{problem}\n"
    )
    assert not (tmp_path / "state.db").exists()


def test_5000_hex_digits_are_out_of_range_and_look_like_a_key(tmp_path: Path) -> None:
    folder = _accounts(tmp_path, "widget:\n  order: 0x" + "f" * 5000 + "\n")
    validated = _cli(tmp_path, "validate")
    assert validated.exit_code == 1
    assert validated.output.splitlines()[:2] == [
        f"{folder}/acme.yaml:4:10: widget.order: must be between 0 and 1000, "
        "got a 5000-digit number",
        f"{folder}/acme.yaml:4:10: widget.order: this value looks like a secret (an access "
        "token or key); secrets never go in account files: remove it (tokens are stored "
        "with `together-reconcile credentials put`)",
    ]


def test_order_bound_in_the_model_and_the_committed_schema() -> None:
    from pydantic import ValidationError

    from together_reconcile.config import WidgetSettings

    assert WidgetSettings(order=1000).order == 1000
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        WidgetSettings(order=1001)
    committed = json.loads((ROOT / "schemas" / "account.schema.json").read_text())
    order = committed["properties"]["widget"]["properties"]["order"]
    assert (order["minimum"], order["maximum"]) == (0, 1000)


@pytest.fixture
def handler(tmp_path: Path) -> tuple[HandlerApp, Keyring, Path]:
    keyring = Keyring.from_env(generate_key())
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "acme.yaml").write_text(GOOD_ACCOUNT)
    settings = Settings(
        accounts_dir=folder,
        state_url=f"sqlite:///{tmp_path}/state.db",
        keyring=keyring,
        config_check_interval_s=0.0,
    )
    return create_app(settings, shopify=_NoOrders()), keyring, folder


class _NoOrders:
    def final_sale_orders(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return []


def _acme_event(app: HandlerApp, keyring: Keyring, email: Any = None) -> Answer:
    body = {"ticket_id": 1, "account_domain": "acme.gorgias.com", "customer_email": email}
    return call(app, body=body, token=keyring.event_token("acme.gorgias.com"))


def _touch_later(path: Path) -> None:
    stamp = time.time() + 5
    os.utime(path, (stamp, stamp))


def test_reload_of_a_huge_order_keeps_the_last_good_config(
    handler: tuple[HandlerApp, Keyring, Path], caplog: pytest.LogCaptureFixture
) -> None:
    app, keyring, folder = handler
    assert _acme_event(app, keyring).status == 200
    (folder / "acme.yaml").write_text(GOOD_ACCOUNT + f"widget:\n  order: {HUGE}\n")
    _touch_later(folder / "acme.yaml")
    with caplog.at_level(logging.ERROR, logger="together_reconcile"):
        answer = _acme_event(app, keyring)
    assert answer.status == 200
    assert answer.json["shopify_store"] == "acme.myshopify.com"
    (failure,) = [json.loads(r.getMessage()) for r in caplog.records]
    assert (failure["event"], failure["message"]) == (
        "config_reload_failed",
        "kept the last good account config",
    )
    assert failure["problems"] == [
        f"{folder}/acme.yaml:4:10: widget.order: must be between 0 and 1000, "
        "got a 5000-digit number"
    ]


def test_any_reload_failure_keeps_the_last_good_config(
    handler: tuple[HandlerApp, Keyring, Path],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from together_reconcile.events import app as app_module

    app, keyring, folder = handler

    def explode(_folder: Path) -> Any:
        raise RuntimeError("secret-looking detail")

    monkeypatch.setattr(app_module, "load_accounts", explode)
    _touch_later(folder / "acme.yaml")
    with caplog.at_level(logging.ERROR, logger="together_reconcile"):
        assert _acme_event(app, keyring).status == 200
        app.registry.request_reload()
        assert _acme_event(app, keyring).status == 200
    failures = [json.loads(r.getMessage()) for r in caplog.records]
    assert [(f["event"], f["message"], f["error"]) for f in failures] == [
        ("config_reload_failed", "kept the last good account config", "RuntimeError")
    ] * 2
    assert "secret-looking detail" not in caplog.text
