"""Fixtures for the state store: `state_url` over SQLite and PostgreSQL, keys, an open store.

PostgreSQL comes from `TOGETHER_TEST_POSTGRES_URL` (default
`postgresql://postgres@127.0.0.1:5432/test`). Each test gets its own schema, named uniquely and
selected through the URL's `options=-csearch_path=...`, dropped afterwards: several test runs at
once on one server never see each other's rows. When the server does not answer, PostgreSQL
tests are skipped with the reason, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Store

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    return os.environ.get("TOGETHER_TEST_POSTGRES_URL") or DEFAULT_TEST_POSTGRES_URL


def _with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture(scope="session")
def postgres_url_or_skip_reason() -> tuple[str | None, str | None]:
    """(base URL, None) when PostgreSQL answers, else (None, why) — checked once a session."""
    url = postgres_base_url()
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        return None, f"PostgreSQL not reachable at {_safe(url)} ({first_line})"
    return url, None


def _safe(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@contextmanager
def fresh_schema(
    postgres_url_or_skip_reason: tuple[str | None, str | None],
) -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh schema of their own (dropped after);
    skipped with the reason when no server answers (a failure when CI=true). For fixtures of
    any scope (tests/ops keeps one for a module)."""
    base, reason = postgres_url_or_skip_reason
    if base is None:
        message = f"{reason}: start it or set TOGETHER_TEST_POSTGRES_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _with_search_path(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def postgres_schema_url(
    postgres_url_or_skip_reason: tuple[str | None, str | None],
) -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh schema of their own (dropped after)."""
    with fresh_schema(postgres_url_or_skip_reason) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A state URL for an empty store: a SQLite file, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
def secret_keys_env() -> str:
    """A `TOGETHER_SECRET_KEYS` value: two fresh keys, newest first."""
    return f"{generate_key()},{generate_key()}"


@pytest.fixture
def keyring(secret_keys_env: str) -> Keyring:
    return Keyring.from_env(secret_keys_env)


@pytest.fixture
def store(state_url: str, keyring: Keyring) -> Iterator[Store]:
    """An open, migrated store on `state_url` (both backends), closed after the test."""
    opened = Store.open(state_url, keyring)
    try:
        yield opened
    finally:
        opened.close()
