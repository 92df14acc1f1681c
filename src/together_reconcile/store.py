"""The state store: credentials (encrypted), managed accounts, audit log, apply lock.

SQLAlchemy Core over SQLite (`sqlite:///path`, the default) or PostgreSQL (`postgresql://...`,
psycopg 3). The schema is versioned: `MIGRATIONS` is an ordered list, applied at open inside one
transaction that holds a lock (PostgreSQL advisory lock, SQLite `BEGIN IMMEDIATE`), so two
processes opening a fresh store at once are safe.

Tokens are encrypted with the `Keyring` before they reach the database; nothing read from the
store is ever printed by this module, and no message carries a password or a token.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from together_reconcile.config import GORGIAS_ACCOUNT_RE, SHOPIFY_STORE_RE
from together_reconcile.secrets import (
    MISSING_KEYS_MESSAGE,
    DecryptionError,
    Keyring,
    SecretKeysError,
)

CredentialKind = Literal["gorgias", "shopify"]
CredentialStatus = Literal["ok", "reconnect_needed"]
CREDENTIAL_KINDS: tuple[str, ...] = ("gorgias", "shopify")
CREDENTIAL_STATUSES: tuple[str, ...] = ("ok", "reconnect_needed")
APPLY_LOCK_NAME = "apply"
SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 5
EXPIRES_SOON = timedelta(hours=1)


class StoreError(Exception):
    """The state database cannot be used; the message says which one and why (no password)."""


class LockTimeout(StoreError):
    """Another process held the apply lock for longer than we were willing to wait."""


def current_commit() -> str | None:
    """The commit a change is made from: `GITHUB_SHA` when set (GitHub Actions)."""
    return os.environ.get("GITHUB_SHA") or None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite keeps no zone: we only ever write UTC
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# Values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """Tokens for one Gorgias account or Shopify store. `repr` never shows a token."""

    kind: CredentialKind
    domain: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    status: CredentialStatus = "ok"
    username: str | None = None  # Basic auth (Gorgias API key): the user's email; not secret

    def __post_init__(self) -> None:
        if self.kind not in CREDENTIAL_KINDS:
            raise ValueError(f"credential kind must be one of {CREDENTIAL_KINDS}")
        if self.status not in CREDENTIAL_STATUSES:
            raise ValueError(f"credential status must be one of {CREDENTIAL_STATUSES}")
        if not self.access_token:
            raise ValueError("a credential needs a non-empty access_token")
        object.__setattr__(self, "domain", self.domain.strip().lower())
        object.__setattr__(self, "expires_at", _as_utc(self.expires_at))

    def __repr__(self) -> str:
        return (
            f"Credential(kind={self.kind!r}, domain={self.domain!r}, access_token=<hidden>, "
            f"refresh_token={'<hidden>' if self.refresh_token else None}, "
            f"expires_at={self.expires_at!r}, status={self.status!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class CredentialInfo:
    """What may be shown about a credential: no secret."""

    kind: CredentialKind
    domain: str
    expires_at: datetime | None
    status: CredentialStatus
    refreshable: bool = False  # a refresh token is stored: expiry is handled on use

    def display_status(self, now: datetime) -> str:
        """What `credentials list` shows: whether someone has to act.

        `reconnect_needed` (the refresh token was refused), `expired` / `expires soon` (within
        `EXPIRES_SOON`) for a token nobody can refresh, else `ok` — a refreshable token is
        renewed when the reconciler next uses it, so its access-token expiry needs no action.
        """
        if self.status == "reconnect_needed":
            return "reconnect_needed"
        if self.expires_at is None or self.refreshable:
            return "ok"
        if self.expires_at <= now:
            return "expired"
        if self.expires_at - now < EXPIRES_SOON:
            return "expires soon"
        return "ok"


@dataclass(frozen=True)
class ManagedAccount:
    """A Gorgias account whose integration and widget the reconciler created."""

    domain: str
    integration_id: int | None
    widget_id: int | None
    fingerprint: str
    applied_at: datetime
    commit: str | None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    domain: str
    action: str
    kind: str
    resource_id: str | None
    detail: dict[str, Any]
    commit: str | None


# Input (what `credentials put` and `credentials import` read) -------------------------------

INPUT_KEYS: dict[str, tuple[str, ...]] = {
    "gorgias": ("access_token", "refresh_token", "expires_in", "username"),
    "shopify": ("access_token",),
}
_PRINTABLE_KEY = re.compile(r"^[a-z_]{1,32}$")  # a field name, not something secret-like
_PRINTABLE_DOMAIN = re.compile(r"^[A-Za-z0-9.-]{1,100}$")


def _shown_domain(domain: str) -> str:
    """The domain quoted for a message, unless it could be a secret pasted in the wrong place."""
    if _PRINTABLE_DOMAIN.match(domain) and "." in domain:  # a token has no dots
        return repr(domain)
    return "the domain given"


class CredentialInputError(ValueError):
    """Input for a credential is unusable; the message never contains a value from it."""


def normalize_domain(kind: str, domain: str) -> str:
    """The lower-case domain, if it is a full domain of that kind; else `CredentialInputError`."""
    if kind == "gorgias":
        pattern, example = GORGIAS_ACCOUNT_RE, "acme.gorgias.com"
    elif kind == "shopify":
        pattern, example = SHOPIFY_STORE_RE, "acme.myshopify.com"
    else:
        shown = f" {kind!r}" if _PRINTABLE_KEY.match(kind) else ""
        raise CredentialInputError(f"unknown credential kind{shown}: use gorgias or shopify")
    if not pattern.match(domain.strip()):
        raise CredentialInputError(
            f"{_shown_domain(domain)} is not a {kind} domain: give the full domain, like {example}"
        )
    return domain.strip().lower()


def credential_from_mapping(
    kind: str, domain: str, data: object, *, now: datetime | None = None
) -> Credential:
    """Build a credential from decoded JSON (`{"access_token", ...}`), checking every key."""
    domain = normalize_domain(kind, domain)
    allowed = INPUT_KEYS[kind]
    if not isinstance(data, dict):
        raise CredentialInputError('expected a JSON object like {"access_token": "..."}')
    for key in data:
        if key not in allowed:
            shown = repr(key) if _PRINTABLE_KEY.match(str(key)) else "(not shown)"
            raise CredentialInputError(
                f"unknown key {shown} for a {kind} credential: allowed keys are "
                + ", ".join(allowed)
            )
    access = data.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise CredentialInputError('"access_token" is missing or not a non-empty string')
    refresh = data.get("refresh_token")
    if refresh is not None and (not isinstance(refresh, str) or not refresh.strip()):
        raise CredentialInputError('"refresh_token" must be a non-empty string or null')
    expires_in = data.get("expires_in")
    expires_at = None
    if expires_in is not None:
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
            raise CredentialInputError('"expires_in" must be a positive whole number of seconds')
        expires_at = (now or _utcnow()) + timedelta(seconds=expires_in)
    username = data.get("username")
    if username is not None and (not isinstance(username, str) or not username.strip()):
        raise CredentialInputError('"username" must be a non-empty string or null')
    return Credential(
        kind="gorgias" if kind == "gorgias" else "shopify",
        domain=domain,
        access_token=access.strip(),
        refresh_token=refresh.strip() if refresh else None,
        expires_at=expires_at,
        username=username.strip() if username else None,
    )


def credential_from_json(
    kind: str, domain: str, document: str, *, now: datetime | None = None
) -> Credential:
    """Parse the JSON object `credentials put` reads on stdin."""
    if not document.strip():
        raise CredentialInputError(
            'nothing on stdin: pipe a JSON object like {"access_token": "..."}'
        )
    try:
        data = json.loads(document)
    except json.JSONDecodeError as error:
        # error.msg never quotes the document; the position is enough to find the problem
        raise CredentialInputError(
            f"stdin is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    return credential_from_mapping(kind, domain, data, now=now)


def credentials_from_json_lines(
    lines: Iterable[str], *, now: datetime | None = None
) -> list[Credential]:
    """Parse `credentials import` input: one `{"kind", "domain", "access_token", ...}` a line.

    Blank lines are skipped. The first bad line raises `CredentialInputError` naming its number.
    """
    parsed: list[Credential] = []
    seen: set[tuple[str, str]] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            credential = _credential_from_line(line, now=now)
            if (credential.kind, credential.domain) in seen:
                raise CredentialInputError(
                    f"{credential.kind} credential for {credential.domain} appears twice"
                )
        except CredentialInputError as error:
            raise CredentialInputError(f"line {number}: {error}") from None
        seen.add((credential.kind, credential.domain))
        parsed.append(credential)
    if not parsed:
        raise CredentialInputError(
            'no credentials in the input: expected one JSON object a line, like {"kind": '
            '"gorgias", "domain": "acme.gorgias.com", "access_token": "..."}'
        )
    return parsed


def _credential_from_line(line: str, *, now: datetime | None) -> Credential:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise CredentialInputError(f"not valid JSON (column {error.colno}: {error.msg})") from None
    if not isinstance(data, dict):
        raise CredentialInputError(
            'expected a JSON object like {"kind": "gorgias", "domain": ..., "access_token": ...}'
        )
    kind, domain = data.get("kind"), data.get("domain")
    if not isinstance(kind, str):
        raise CredentialInputError('"kind" is missing: use "gorgias" or "shopify"')
    if not isinstance(domain, str):
        raise CredentialInputError('"domain" is missing or not a string')
    rest = {key: value for key, value in data.items() if key not in ("kind", "domain")}
    return credential_from_mapping(kind, domain, rest, now=now)


# Schema ------------------------------------------------------------------------------------

metadata = sa.MetaData()

schema_version_table = sa.Table(
    "schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
)

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("domain", sa.String(255), primary_key=True),
    sa.Column("access_token_enc", sa.Text, nullable=False),
    sa.Column("refresh_token_enc", sa.Text, nullable=True),
    sa.Column("username", sa.String(320), nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

managed_accounts = sa.Table(
    "managed_accounts",
    metadata,
    sa.Column("domain", sa.String(255), primary_key=True),
    sa.Column("integration_id", sa.BigInteger, nullable=True),
    sa.Column("widget_id", sa.BigInteger, nullable=True),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("commit", sa.String(64), nullable=True),
)

audit_log_table = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("domain", sa.String(255), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("resource_id", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("commit", sa.String(64), nullable=True),
    sa.Index("audit_log_domain", "domain", "id"),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)


# Nonces of OAuth `state` values already used: a state works once, across every process.
# Rows older than the longest a state lives are deleted as new ones arrive.
oauth_state_nonces = sa.Table(
    "oauth_state_nonces",
    metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("oauth_state_nonces_used_at", "used_at"),
)


def _migration_1_initial(conn: Connection) -> None:
    for table in (credentials, managed_accounts, audit_log_table, locks):
        table.create(conn)


def _migration_2_oauth_state_nonces(conn: Connection) -> None:
    oauth_state_nonces.create(conn)


# Ordered; never edit a released entry, append a new one. Version N = first N applied.
# Migration 1 creates the tables as defined above. Before a later migration alters one of them,
# freeze its current definition into `_migration_1_initial` (a copy), then change it above, so
# a fresh database still goes through every step.
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (
    _migration_1_initial,
    _migration_2_oauth_state_nonces,
)
SCHEMA_VERSION = len(MIGRATIONS)


# URLs and errors ---------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """The URL as it may be printed: password masked, query (may carry options) dropped."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparsable URL>"
    driver = parsed.drivername.split("+", 1)[0]
    if driver == "sqlite":
        return f"sqlite:///{parsed.database or ''}"
    userinfo = ""
    if parsed.username:
        userinfo = parsed.username + (":***" if parsed.password else "") + "@"
    host = parsed.host or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{driver}://{userinfo}{host}{port}/{parsed.database or ''}"


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            "the state URL is not a URL: use sqlite:///path/to/state.db or "
            "postgresql://user@host:5432/dbname"
        ) from None
    scheme = parsed.drivername
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if scheme in ("sqlite", "sqlite+pysqlite"):
        if not parsed.database or parsed.database == ":memory:":
            raise StoreError(
                "an in-memory SQLite state database cannot be shared: use sqlite:///path/to/state.db"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    raise StoreError(
        f"unsupported state database URL scheme {scheme.split('+')[0]!r}: use "
        "sqlite:///path/to/state.db or postgresql://user@host:5432/dbname"
    )


def _sqlite_path(parsed: URL) -> Path | None:
    database = parsed.database or ""
    if parsed.query.get("uri") == "true":
        if not database.startswith("file:"):
            return None
        database = database[len("file:") :]
    return Path(database)


def _is_read_only(error: BaseException) -> bool:
    orig = getattr(error, "orig", error)
    if isinstance(orig, sqlite3.Error):
        text = str(orig).lower()
        return "readonly" in text or "read-only" in text
    sqlstate = getattr(orig, "sqlstate", None)
    return sqlstate == "25006"


def _is_connection_failure(orig: BaseException | None) -> bool:
    """psycopg failed to connect (no SQLSTATE), or the server refused the session."""
    if not isinstance(orig, psycopg.OperationalError):
        return False
    sqlstate = orig.sqlstate
    # 08 connection exception, 28 authorization, 3D no such database, 57P server shutting down
    return sqlstate is None or sqlstate.startswith(("08", "28", "3D", "57P"))


def _reason(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    text = str(orig)
    if "refused" in text.lower():
        return "connection refused"
    if "timeout" in text.lower() or "timed out" in text.lower():
        return "connection timed out"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(orig).__name__)
    # psycopg prefixes "connection failed: connection to server at ... failed: <reason>"
    reason = first.rsplit("failed: ", 1)[-1]
    return reason.removeprefix("FATAL:").strip()


# The store ---------------------------------------------------------------------------------


class CredentialLock:
    """A credential row held locked inside a transaction (see `Store.locked_credential`)."""

    def __init__(self, store: Store, conn: Connection, credential: Credential | None) -> None:
        self._store = store
        self._conn = conn
        self.credential = credential

    def save(self, credential: Credential) -> None:
        """Write `credential` in the same transaction that holds the lock."""
        self._store._upsert_credentials(self._conn, [credential])
        self.credential = credential

    def mark_reconnect_needed(self) -> None:
        if self.credential is not None:
            self.save(replace(self.credential, status="reconnect_needed"))


class Store:
    """One state database. Thread-safe: share one instance across worker threads."""

    def __init__(self, engine: Engine, url: str, keyring: Keyring | None) -> None:
        self._engine = engine
        self._url = url
        self._masked = mask_url(url)
        self._keyring = keyring
        self._is_sqlite = engine.dialect.name == "sqlite"

    # Opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, keyring: Keyring | None = None) -> Store:
        """Open (and create or migrate) the state database at `url`."""
        parsed = _parse_url(url)
        masked = mask_url(url)
        if parsed.drivername.startswith("sqlite"):
            engine = cls._sqlite_engine(parsed, masked)
        else:
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in parsed.query:
                connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
            engine = sa.create_engine(
                parsed,
                connect_args=connect_args,
                pool_size=4,
                max_overflow=16,
                pool_pre_ping=True,
            )
        store = cls(engine, url, keyring)
        try:
            store._migrate()
        except BaseException:
            engine.dispose()
            raise
        return store

    @staticmethod
    def _sqlite_engine(parsed: URL, masked: str) -> Engine:
        path = _sqlite_path(parsed)
        if path is not None and parsed.query.get("mode") != "ro":
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(
                    f"cannot create the folder of the state database at {masked}: "
                    f"{error.strerror or error}"
                ) from None
        engine = sa.create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            poolclass=sa.pool.QueuePool,
            pool_size=4,
            max_overflow=16,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let us issue BEGIN ourselves (pysqlite's own handling defers it), see "begin".
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
                with suppress(sqlite3.OperationalError):  # read-only: keeps its journal mode
                    cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            finally:
                cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._masked})"

    @property
    def url(self) -> str:
        """The store's URL with any password masked: safe to print."""
        return self._masked

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    # Transactions --------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (StoreError, SecretKeysError):
            raise
        except DBAPIError as error:
            if _is_read_only(error):
                raise StoreError(
                    f"the state database at {self._masked} is read-only: use a writable "
                    "file or database for TOGETHER_STATE_URL"
                ) from None
            if self._is_sqlite and "locked" in str(error.orig):
                raise StoreError(
                    f"the state database at {self._masked} is busy: another process kept it "
                    f"locked for over {SQLITE_BUSY_TIMEOUT_S:g} s; try again"
                ) from None
            if error.connection_invalidated or "unable to open" in str(error.orig):
                raise StoreError(
                    f"cannot reach the state database at {self._masked}: {_reason(error)}"
                ) from None
            if _is_connection_failure(error.orig):
                raise StoreError(
                    f"cannot reach the state database at {self._masked}: {_reason(error)}"
                ) from None
            raise StoreError(
                f"the state database at {self._masked} failed: {type(error.orig).__name__}: "
                f"{_reason(error)}"
            ) from None
        except SQLAlchemyError as error:
            raise StoreError(
                f"the state database at {self._masked} failed: {type(error).__name__}"
            ) from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._errors(), self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE)."""
        with self._errors(), self._engine.connect() as conn:
            if self._is_sqlite:
                conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def _migrate(self) -> None:
        with self._write() as conn:
            if not self._is_sqlite:
                # One migrator per schema at a time; released at commit.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))
            schema_version_table.create(conn, checkfirst=True)
            current = conn.execute(
                sa.select(schema_version_table.c.version).where(schema_version_table.c.id == 1)
            ).scalar()
            if current is None:
                conn.execute(schema_version_table.insert().values(id=1, version=0))
                current = 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the state database at {self._masked} has schema version {current}, newer "
                    f"than this together-reconcile understands ({SCHEMA_VERSION}): upgrade it"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version - 1](conn)
            if current != SCHEMA_VERSION:
                conn.execute(
                    schema_version_table.update()
                    .where(schema_version_table.c.id == 1)
                    .values(version=SCHEMA_VERSION)
                )

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(
                conn.execute(
                    sa.select(schema_version_table.c.version).where(schema_version_table.c.id == 1)
                ).scalar_one()
            )

    def ping(self) -> None:
        """Raise `StoreError` unless the database answers (for `/readyz`)."""
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    # Credentials ---------------------------------------------------------------------------

    def _require_keyring(self) -> Keyring:
        if self._keyring is None:
            raise SecretKeysError(MISSING_KEYS_MESSAGE)
        return self._keyring

    def _insert(self, table: sa.Table) -> Any:
        if self._is_sqlite:
            return sqlite_dialect.insert(table)
        return pg_dialect.insert(table)

    def _credential_row(self, credential: Credential) -> dict[str, Any]:
        keyring = self._require_keyring()
        return {
            "kind": credential.kind,
            "domain": credential.domain,
            "access_token_enc": keyring.encrypt(credential.access_token),
            "refresh_token_enc": (
                keyring.encrypt(credential.refresh_token) if credential.refresh_token else None
            ),
            "username": credential.username,
            "expires_at": credential.expires_at,
            "status": credential.status,
            "updated_at": _utcnow(),
        }

    def _upsert_credentials(self, conn: Connection, creds: Iterable[Credential]) -> None:
        statement = self._insert(credentials)
        statement = statement.on_conflict_do_update(
            index_elements=[credentials.c.kind, credentials.c.domain],
            set_={
                name: statement.excluded[name]
                for name in (
                    "access_token_enc",
                    "refresh_token_enc",
                    "username",
                    "expires_at",
                    "status",
                    "updated_at",
                )
            },
        )
        for credential in creds:  # one by one: a failure part-way rolls back the earlier ones
            conn.execute(statement, self._credential_row(credential))

    def _credential_from_row(self, row: sa.Row[Any]) -> Credential:
        keyring = self._require_keyring()
        try:
            access = keyring.decrypt(row.access_token_enc)
            refresh = keyring.decrypt(row.refresh_token_enc) if row.refresh_token_enc else None
        except DecryptionError:
            raise StoreError(
                f"the stored {row.kind} credential for {row.domain} cannot be decrypted with any "
                "key of TOGETHER_SECRET_KEYS: restore the key it was encrypted with, or put the "
                "credential again"
            ) from None
        return Credential(
            kind=row.kind,
            domain=row.domain,
            access_token=access,
            refresh_token=refresh,
            expires_at=_as_utc(row.expires_at),
            status=row.status,
            username=row.username,
        )

    def put_credential(self, credential: Credential) -> None:
        """Store (insert or replace) one credential, encrypted under the newest key."""
        self._require_keyring()
        with self._write() as conn:
            self._upsert_credentials(conn, [credential])

    def import_credentials(self, creds: list[Credential]) -> int:
        """Store every credential, or none of them (one transaction). Returns how many."""
        self._require_keyring()
        with self._write() as conn:
            self._upsert_credentials(conn, creds)
        return len(creds)

    def get_credential(self, kind: CredentialKind, domain: str) -> Credential | None:
        self._require_keyring()
        with self._read() as conn:
            row = conn.execute(
                sa.select(credentials).where(
                    credentials.c.kind == kind, credentials.c.domain == domain.strip().lower()
                )
            ).first()
            return None if row is None else self._credential_from_row(row)

    def get_credentials(
        self, kind: CredentialKind, domains: Iterable[str]
    ) -> dict[str, Credential]:
        """Credentials of `kind` for these domains, keyed by lower-case domain (one query)."""
        self._require_keyring()
        wanted = sorted({domain.strip().lower() for domain in domains})
        if not wanted:
            return {}
        with self._read() as conn:
            rows = conn.execute(
                sa.select(credentials).where(
                    credentials.c.kind == kind, credentials.c.domain.in_(wanted)
                )
            ).all()
            return {row.domain: self._credential_from_row(row) for row in rows}

    def list_credentials(self) -> list[CredentialInfo]:
        """Every stored credential, without secrets (no keyring needed)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(
                    credentials.c.kind,
                    credentials.c.domain,
                    credentials.c.expires_at,
                    credentials.c.status,
                    credentials.c.refresh_token_enc.is_not(None).label("refreshable"),
                ).order_by(credentials.c.kind, credentials.c.domain)
            ).all()
        return [
            CredentialInfo(
                row.kind, row.domain, _as_utc(row.expires_at), row.status, bool(row.refreshable)
            )
            for row in rows
        ]

    def mark_reconnect_needed(self, kind: CredentialKind, domain: str) -> bool:
        """Flag a credential whose refresh token was refused. False if none is stored."""
        with self._write() as conn:
            result = conn.execute(
                credentials.update()
                .where(credentials.c.kind == kind, credentials.c.domain == domain.strip().lower())
                .values(status="reconnect_needed", updated_at=_utcnow())
            )
            return bool(result.rowcount)

    def delete_credential(self, kind: CredentialKind, domain: str) -> bool:
        with self._write() as conn:
            result = conn.execute(
                credentials.delete().where(
                    credentials.c.kind == kind, credentials.c.domain == domain.strip().lower()
                )
            )
            return bool(result.rowcount)

    @contextmanager
    def locked_credential(self, kind: CredentialKind, domain: str) -> Iterator[CredentialLock]:
        """Hold one credential row locked while the caller refreshes it.

        Yields a `CredentialLock` whose `.credential` was re-read after the lock was taken;
        `.save(new)` writes in the same transaction. PostgreSQL locks the row
        (`SELECT ... FOR UPDATE`); SQLite takes the database write lock (`BEGIN IMMEDIATE`).
        Other refreshers of the same row wait; an exception rolls everything back.
        """
        self._require_keyring()
        with self._write() as conn:
            row = conn.execute(
                sa.select(credentials)
                .where(credentials.c.kind == kind, credentials.c.domain == domain.strip().lower())
                .with_for_update()
            ).first()
            yield CredentialLock(
                self, conn, None if row is None else self._credential_from_row(row)
            )

    def rotate_credentials(self) -> int:
        """Re-encrypt every stored token under the newest key, in one transaction."""
        keyring = self._require_keyring()
        with self._write() as conn:
            rows = conn.execute(
                sa.select(
                    credentials.c.kind,
                    credentials.c.domain,
                    credentials.c.access_token_enc,
                    credentials.c.refresh_token_enc,
                ).with_for_update()
            ).all()
            for row in rows:
                try:
                    access = keyring.reencrypt(row.access_token_enc)
                    refresh = (
                        keyring.reencrypt(row.refresh_token_enc) if row.refresh_token_enc else None
                    )
                except DecryptionError:
                    raise StoreError(
                        f"the stored {row.kind} credential for {row.domain} cannot be decrypted "
                        "with any key of TOGETHER_SECRET_KEYS: nothing was rotated; restore the "
                        "key it was encrypted with, or put that credential again"
                    ) from None
                conn.execute(
                    credentials.update()
                    .where(credentials.c.kind == row.kind, credentials.c.domain == row.domain)
                    .values(access_token_enc=access, refresh_token_enc=refresh)
                )
            return len(rows)

    # OAuth state nonces --------------------------------------------------------------------

    def use_oauth_state_nonce(self, nonce: str, *, now: datetime, keep: timedelta) -> bool:
        """Record `nonce` as used; False if it was used before (a replayed OAuth `state`).

        Nonces used more than `keep` ago are deleted first: pass at least the lifetime of a
        state (plus clock skew), after which a replay fails on expiry anyway.
        """
        with self._write() as conn:
            conn.execute(
                oauth_state_nonces.delete().where(oauth_state_nonces.c.used_at < now - keep)
            )
            inserted = conn.execute(
                self._insert(oauth_state_nonces)
                .values(nonce=nonce, used_at=_as_utc(now))
                .on_conflict_do_nothing(index_elements=[oauth_state_nonces.c.nonce])
                .returning(oauth_state_nonces.c.nonce)
            ).first()
            return inserted is not None

    # Managed accounts ----------------------------------------------------------------------

    def record_managed(self, account: ManagedAccount) -> None:
        row = {
            "domain": account.domain.strip().lower(),
            "integration_id": account.integration_id,
            "widget_id": account.widget_id,
            "fingerprint": account.fingerprint,
            "applied_at": _as_utc(account.applied_at),
            "commit": account.commit,
        }
        statement = self._insert(managed_accounts).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=[managed_accounts.c.domain],
            set_={name: value for name, value in row.items() if name != "domain"},
        )
        with self._write() as conn:
            conn.execute(statement)

    def forget_managed(self, domain: str) -> bool:
        with self._write() as conn:
            result = conn.execute(
                managed_accounts.delete().where(managed_accounts.c.domain == domain.strip().lower())
            )
            return bool(result.rowcount)

    def list_managed(self) -> dict[str, ManagedAccount]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(managed_accounts).order_by(managed_accounts.c.domain)
            ).all()
        return {
            row.domain: ManagedAccount(
                domain=row.domain,
                integration_id=row.integration_id,
                widget_id=row.widget_id,
                fingerprint=row.fingerprint,
                applied_at=_as_utc(row.applied_at) or _utcnow(),
                commit=row.commit,
            )
            for row in rows
        }

    # Audit log (append-only: there is no update or delete) ---------------------------------

    def append_audit(
        self,
        domain: str,
        action: str,
        kind: str,
        resource_id: int | str | None,
        detail: dict[str, Any],
        commit: str | None = None,
    ) -> None:
        """Record one change the reconciler made. `detail` must hold no secret."""
        with self._write() as conn:
            conn.execute(
                audit_log_table.insert().values(
                    at=_utcnow(),
                    domain=domain.strip().lower(),
                    action=action,
                    kind=kind,
                    resource_id=None if resource_id is None else str(resource_id),
                    detail=json.dumps(detail, sort_keys=True, default=str),
                    commit=commit if commit is not None else current_commit(),
                )
            )

    def audit_log(self, domain: str | None = None) -> list[AuditEntry]:
        """The audit entries, oldest first; only one account's when `domain` is given."""
        query = sa.select(audit_log_table).order_by(audit_log_table.c.id)
        if domain is not None:
            query = query.where(audit_log_table.c.domain == domain.strip().lower())
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            AuditEntry(
                id=row.id,
                at=_as_utc(row.at) or _utcnow(),
                domain=row.domain,
                action=row.action,
                kind=row.kind,
                resource_id=row.resource_id,
                detail=json.loads(row.detail),
                commit=row.commit,
            )
            for row in rows
        ]

    # Apply lock ----------------------------------------------------------------------------

    def _try_lock(self, name: str, holder: str, lease_s: float) -> sa.Row[Any] | None:
        """Take the lock if free or stale; None on success, else the current holder's row."""
        now = _utcnow()
        with self._write() as conn:
            if not self._is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))
            row = conn.execute(sa.select(locks).where(locks.c.name == name)).first()
            if row is not None and not _lock_is_stale(row, now):
                return row
            if row is not None:
                conn.execute(locks.delete().where(locks.c.name == name))
            conn.execute(
                locks.insert().values(
                    name=name,
                    holder=holder,
                    acquired_at=now,
                    expires_at=now + timedelta(seconds=lease_s),
                )
            )
            return None

    def _renew_lock(self, name: str, holder: str, lease_s: float) -> None:
        with self._write() as conn:
            conn.execute(
                locks.update()
                .where(locks.c.name == name, locks.c.holder == holder)
                .values(expires_at=_utcnow() + timedelta(seconds=lease_s))
            )

    def _release_lock(self, name: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute(locks.delete().where(locks.c.name == name, locks.c.holder == holder))

    @contextmanager
    def apply_lock(
        self,
        timeout_s: float = 30.0,
        poll_s: float = 0.2,
        *,
        lease_s: float = 60.0,
        name: str = APPLY_LOCK_NAME,
    ) -> Iterator[None]:
        """Hold the store-wide apply lock; wait at most `timeout_s`, then raise `LockTimeout`.

        The lock is a row with a lease, renewed in the background while held. A holder that
        died stops renewing: its lock is taken over once the lease ends, or at once when it
        ran on this host and its process no longer exists.
        """
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        deadline = time.monotonic() + timeout_s
        while True:
            current = self._try_lock(name, holder, lease_s)
            if current is None:
                break
            if time.monotonic() >= deadline:
                since = _as_utc(current.acquired_at) or _utcnow()
                raise LockTimeout(
                    f"another apply holds the lock on the state database at {self._masked} "
                    f"(holder {current.holder}, since {since:%Y-%m-%d %H:%M:%S} UTC); waited "
                    f"{timeout_s:g} s. Try again when it has finished; a crashed holder's lock "
                    f"lapses {lease_s:g} s after its last renewal"
                )
            time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._keep_renewing,
            args=(name, holder, lease_s, stop),
            name="apply-lock-renewer",
            daemon=True,
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            self._release_lock(name, holder)

    def _keep_renewing(self, name: str, holder: str, lease_s: float, stop: threading.Event) -> None:
        while not stop.wait(lease_s / 3):
            try:
                self._renew_lock(name, holder, lease_s)
            except StoreError:
                continue  # try again next period; the lease covers a missed renewal or two


def _lock_is_stale(row: sa.Row[Any], now: datetime) -> bool:
    expires = _as_utc(row.expires_at)
    if expires is not None and expires <= now:
        return True
    host, _, rest = str(row.holder).partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not _process_exists(int(pid_text))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
