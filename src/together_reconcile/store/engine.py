"""Connecting to the state database: URLs, engines, and failures turned into clear errors.

SQLite (`sqlite:///path`) runs in WAL mode with our own `BEGIN` (so a write can take the lock
up front); PostgreSQL goes through psycopg 3 with a connect timeout. A URL is only ever shown
through `mask_url` (password masked), and no message carries a password.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from together_reconcile.errors import TogetherError
from together_reconcile.secrets import SecretKeysError

SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class EngineLimits:
    """How long a database may keep us waiting, and how many connections one engine holds.

    The defaults suit the CLI (long migrations and applies may run); `HANDLER_LIMITS` is what
    the event handler uses. PostgreSQL only, except the pool numbers (SQLite too). TCP keepalives
    and `tcp_user_timeout` notice a database host that vanished; a frozen server (the kernel
    still acknowledges, the process does not answer) is caught by the caller's own deadline.
    """

    connect_timeout_s: int = PG_CONNECT_TIMEOUT_S  # libpq counts whole seconds, at least 2
    statement_timeout_ms: int | None = None
    lock_timeout_ms: int | None = None
    idle_in_transaction_timeout_ms: int | None = None
    pool_size: int = 4
    max_overflow: int = 16
    pool_timeout_s: float = 30.0
    keepalives_idle_s: int = 10
    keepalives_interval_s: int = 3
    keepalives_count: int = 3
    tcp_user_timeout_ms: int = 10_000

    def postgres_connect_args(self, existing_options: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle_s,
            "keepalives_interval": self.keepalives_interval_s,
            "keepalives_count": self.keepalives_count,
            "tcp_user_timeout": self.tcp_user_timeout_ms,
        }
        settings = [
            ("statement_timeout", self.statement_timeout_ms),
            ("lock_timeout", self.lock_timeout_ms),
            ("idle_in_transaction_session_timeout", self.idle_in_transaction_timeout_ms),
        ]
        options = [f"-c {name}={value}" for name, value in settings if value is not None]
        if options:
            args["options"] = " ".join(
                [*([existing_options] if existing_options else []), *options]
            )
        return args


CLI_LIMITS = EngineLimits()


def handler_limits(pool_size: int) -> EngineLimits:
    """The event handler's limits: a fixed pool (no overflow, so `workers × pool_size` is the
    whole PostgreSQL connection budget of one replica), a 1 s wait for a free connection, and
    server-side statement and lock timeouts below the handler's own 1 s store deadline."""
    return EngineLimits(
        connect_timeout_s=2,
        statement_timeout_ms=900,
        lock_timeout_ms=500,
        idle_in_transaction_timeout_ms=5_000,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout_s=1.0,
        keepalives_idle_s=5,
        keepalives_interval_s=2,
        keepalives_count=2,
        tcp_user_timeout_ms=5_000,
    )


class StoreError(TogetherError):
    """The state database cannot be used; the message says which one and why (no password)."""


def _unencoded_at(url: str, parsed: URL) -> bool:
    """An `@` left unencoded in the user name or password: the URL's parts are then ambiguous
    (`svc:Sup3r@Secr3t@db` parses as password `Sup3r` on host `Secr3t@db`)."""
    raw_user = url.partition("://")[2].split(":", 1)[0].split("/", 1)[0]
    in_user = "@" in (parsed.username or "") and "@" in raw_user  # not the %40 it decoded
    return in_user or "@" in (parsed.host or "") or "@" in (parsed.database or "")


def mask_url(url: str) -> str:
    """The URL as it may be printed: password masked, query (may carry options) dropped.

    When an `@` in the user name or password was not percent-encoded, everything up to the
    last `@` is masked: that is where the password may end.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return "<unparsable URL>"
    driver = parsed.drivername.split("+", 1)[0]
    if driver == "sqlite":
        return f"sqlite:///{parsed.database or ''}"
    if _unencoded_at(url, parsed):
        tail = url.rsplit("@", 1)[1].split("?", 1)[0].split("#", 1)[0]
        return f"{driver}://***@{tail}"
    userinfo = ""
    if parsed.username:
        userinfo = parsed.username + (":***" if parsed.password else "") + "@"
    host = parsed.host or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{driver}://{userinfo}{host}{port}/{parsed.database or ''}"


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StoreError(
            "the state URL is not a URL: use sqlite:///path/to/state.db or "
            "postgresql://user@host:5432/dbname"
        ) from None
    scheme = parsed.drivername
    if not scheme.startswith("sqlite") and _unencoded_at(url, parsed):
        raise StoreError(
            "the state URL has an unencoded '@' in its user name or password: "
            "percent-encode the password (write '@' as %40, ':' as %3A, '/' as %2F)"
        )
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
    import psycopg  # here, not at the top: SQLite users (and every CLI start) skip ~50 ms

    if not isinstance(orig, psycopg.OperationalError):
        return False
    sqlstate = orig.sqlstate
    # 08 connection exception, 28 authorization, 3D no such database, 57P server shutting down
    return sqlstate is None or sqlstate.startswith(("08", "28", "3D", "57P"))


# What the driver said, in our own words: its text names the host it tried (which, from a
# URL with an unencoded `@`, holds part of the password) and other quoted values.
_KNOWN_REASONS = (
    ("refused", "connection refused"),
    ("timeout", "connection timed out"),
    ("timed out", "connection timed out"),
    ("resolve host", "the host name does not resolve"),
    ("translate host name", "the host name does not resolve"),
    ("password authentication failed", "password authentication failed"),
    ("no password supplied", "the server asks for a password and the URL has none"),
    ("pg_hba.conf", "the server does not accept this user from this address (pg_hba.conf)"),
    ('role "', "the user does not exist"),
    ('database "', "the database does not exist"),
)


def _reason(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    text = str(orig)
    lowered = text.lower()
    for needle, reason in _KNOWN_REASONS:
        if needle in lowered and (not needle.endswith('"') or "does not exist" in lowered):
            return reason
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(orig).__name__)
    # psycopg prefixes "connection failed: connection to server at ... failed: <reason>"
    reason = first.rsplit("failed: ", 1)[-1].removeprefix("FATAL:").strip()
    # Never the driver's own quoted values (hosts, users, names): they came from the URL.
    return re.sub(r"\"[^\"]*\"|'[^']*'", "…", reason)


def create_engine(parsed: URL, masked: str, limits: EngineLimits = CLI_LIMITS) -> Engine:
    """The engine for a parsed state URL: SQLite (see `_sqlite_engine`) or PostgreSQL."""
    if parsed.drivername.startswith("sqlite"):
        return _sqlite_engine(parsed, masked, limits)
    existing = parsed.query.get("options")
    connect_args = limits.postgres_connect_args(existing if isinstance(existing, str) else None)
    if "options" in connect_args:
        parsed = parsed.difference_update_query(["options"])
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = limits.connect_timeout_s
    return sa.create_engine(
        parsed,
        connect_args=connect_args,
        pool_size=limits.pool_size,
        max_overflow=limits.max_overflow,
        pool_timeout=limits.pool_timeout_s,
        pool_pre_ping=True,
    )


def _sqlite_engine(parsed: URL, masked: str, limits: EngineLimits = CLI_LIMITS) -> Engine:
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
        pool_size=limits.pool_size,
        max_overflow=limits.max_overflow,
        pool_timeout=limits.pool_timeout_s,
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


@contextmanager
def database_errors(masked: str, *, is_sqlite: bool) -> Iterator[None]:
    """Turn a database failure into a `StoreError` naming the database (masked) and why."""
    try:
        yield
    except (StoreError, SecretKeysError):
        raise
    except DBAPIError as error:
        if _is_read_only(error):
            raise StoreError(
                f"the state database at {masked} is read-only: use a writable "
                "file or database for TOGETHER_STATE_URL"
            ) from None
        if is_sqlite and "locked" in str(error.orig):
            raise StoreError(
                f"the state database at {masked} is busy: another process kept it "
                f"locked for over {SQLITE_BUSY_TIMEOUT_S:g} s; try again"
            ) from None
        if error.connection_invalidated or "unable to open" in str(error.orig):
            raise StoreError(
                f"cannot reach the state database at {masked}: {_reason(error)}"
            ) from None
        if _is_connection_failure(error.orig):
            raise StoreError(
                f"cannot reach the state database at {masked}: {_reason(error)}"
            ) from None
        raise StoreError(
            f"the state database at {masked} failed: {type(error.orig).__name__}: {_reason(error)}"
        ) from None
    except SQLAlchemyError as error:
        raise StoreError(f"the state database at {masked} failed: {type(error).__name__}") from None
