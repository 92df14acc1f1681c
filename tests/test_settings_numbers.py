"""Number settings of the handler read only plain ASCII numbers; anything else is the default
(str.isdigit alone also takes "²" or "٣", which int() and float() refuse: serve would not start)."""

from __future__ import annotations

import pytest

from together_reconcile.events.app import (
    CREDENTIAL_TTL_S,
    STORE_POOL_SIZE,
    Settings,
    plain_number,
)
from together_reconcile.secrets import generate_key

KEY = generate_key()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", 30.0),
        ("2.5", 2.5),
        ("²", CREDENTIAL_TTL_S),
        ("٣", CREDENTIAL_TTL_S),
        ("1.2.3", CREDENTIAL_TTL_S),
        ("-1", CREDENTIAL_TTL_S),
        ("", CREDENTIAL_TTL_S),
        ("1e3", CREDENTIAL_TTL_S),
    ],
)
def test_credential_ttl(text: str, expected: float) -> None:
    settings = Settings.from_env({"TOGETHER_SECRET_KEYS": KEY, "TOGETHER_CREDENTIAL_TTL": text})
    assert settings.credential_ttl_s == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3),
        ("²", STORE_POOL_SIZE),
        ("0", STORE_POOL_SIZE),
        ("2.0", STORE_POOL_SIZE),
        ("x", STORE_POOL_SIZE),
    ],
)
def test_store_pool_size(text: str, expected: int) -> None:
    settings = Settings.from_env({"TOGETHER_SECRET_KEYS": KEY, "TOGETHER_STORE_POOL_SIZE": text})
    assert settings.store_pool_size == expected


def test_plain_number() -> None:
    assert plain_number("120") and plain_number("1.5", point=True)
    assert not plain_number("1.5") and not plain_number("²") and not plain_number("")
    assert not plain_number("1.5.1", point=True) and not plain_number("٣", point=True)
