"""Issue 15, "Medium and low" items 2-9 and issue 11's chunked body and block-scalar domain:
each test reproduces the attack the security review found and asserts the exact outcome now."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from together_reconcile.cli import main
from together_reconcile.events.app import Settings
from together_reconcile.events.serve import prepare
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Store, StoreError, mask_url

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
