"""The state store: credentials (encrypted), managed accounts, audit log, apply lock.

SQLAlchemy Core over SQLite (`sqlite:///path`, the default) or PostgreSQL (`postgresql://...`,
psycopg 3). `Store` is the one entry point; its parts live in:

- `store_values`: the values it keeps and returns (`Credential`, `ManagedAccount`, ...);
- `credential_input`: parsing what `credentials put` / `credentials import` read;
- `store_schema`: the tables and the ordered `MIGRATIONS`, applied at open inside one
  transaction that holds a lock (PostgreSQL advisory lock, SQLite `BEGIN IMMEDIATE`), so two
  processes opening a fresh store at once are safe;
- `store_engine`: URLs, engines, and database failures turned into `StoreError`;
- `store_lock`: the apply lock (a leased row).

Tokens are encrypted with the `Keyring` before they reach the database; nothing read from the
store is ever printed by this module, and no message carries a password or a token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from together_reconcile.secrets import (
    MISSING_KEYS_MESSAGE,
    DecryptionError,
    Keyring,
    SecretKeysError,
)
from together_reconcile.store.credential_input import (
    INPUT_KEYS,
    CredentialInputError,
    credential_from_json,
    credential_from_mapping,
    credentials_from_json_lines,
    normalize_domain,
)
from together_reconcile.store.engine import (
    CLI_LIMITS,
    PG_CONNECT_TIMEOUT_S,
    SQLITE_BUSY_TIMEOUT_S,
    EngineLimits,
    StoreError,
    create_engine,
    database_errors,
    mask_url,
    parse_url,
)
from together_reconcile.store.lock import APPLY_LOCK_NAME, LeasedLock, LockTimeout
from together_reconcile.store.tables import (
    MIGRATIONS,
    SCHEMA_VERSION,
    audit_log_table,
    credentials,
    locks,
    managed_accounts,
    metadata,
    oauth_state_nonces,
    schema_version_table,
    verifications,
)
from together_reconcile.store.values import (
    CREDENTIAL_KINDS,
    CREDENTIAL_STATUSES,
    EXPIRES_SOON,
    AuditEntry,
    Credential,
    CredentialInfo,
    CredentialKind,
    CredentialStatus,
    ManagedAccount,
    Verification,
    as_utc,
    current_commit,
    utcnow,
)

__all__ = [
    "APPLY_LOCK_NAME",
    "CREDENTIAL_KINDS",
    "CREDENTIAL_STATUSES",
    "EXPIRES_SOON",
    "INPUT_KEYS",
    "MIGRATIONS",
    "PG_CONNECT_TIMEOUT_S",
    "SCHEMA_VERSION",
    "SQLITE_BUSY_TIMEOUT_S",
    "AuditEntry",
    "Credential",
    "CredentialInfo",
    "CredentialInputError",
    "CredentialKind",
    "CredentialLock",
    "CredentialStatus",
    "LockTimeout",
    "ManagedAccount",
    "Store",
    "StoreError",
    "Verification",
    "audit_log_table",
    "credential_from_json",
    "credential_from_mapping",
    "credentials",
    "credentials_from_json_lines",
    "current_commit",
    "locks",
    "managed_accounts",
    "mask_url",
    "metadata",
    "normalize_domain",
    "oauth_state_nonces",
    "schema_version_table",
    "verifications",
]


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
    def open(
        cls, url: str, keyring: Keyring | None = None, *, limits: EngineLimits | None = None
    ) -> Store:
        """Open (and create or migrate) the state database at `url`; `limits`: timeouts and
        pool size (default: the CLI's)."""
        engine = create_engine(parse_url(url), mask_url(url), limits or CLI_LIMITS)
        store = cls(engine, url, keyring)
        try:
            store._migrate()
        except BaseException:
            engine.dispose()
            raise
        return store

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

    def _errors(self) -> AbstractContextManager[None]:
        return database_errors(self._masked, is_sqlite=self._is_sqlite)

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
        from sqlalchemy.dialects import postgresql  # loaded for PostgreSQL stores only

        return postgresql.insert(table)

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
            "updated_at": utcnow(),
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
            expires_at=as_utc(row.expires_at),
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
                row.kind, row.domain, as_utc(row.expires_at), row.status, bool(row.refreshable)
            )
            for row in rows
        ]

    def mark_reconnect_needed(self, kind: CredentialKind, domain: str) -> bool:
        """Flag a credential whose refresh token was refused. False if none is stored."""
        with self._write() as conn:
            result = conn.execute(
                credentials.update()
                .where(credentials.c.kind == kind, credentials.c.domain == domain.strip().lower())
                .values(status="reconnect_needed", updated_at=utcnow())
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
                .values(nonce=nonce, used_at=as_utc(now))
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
            "applied_at": as_utc(account.applied_at),
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
                applied_at=as_utc(row.applied_at) or utcnow(),
                commit=row.commit,
            )
            for row in rows
        }

    # Verifications -------------------------------------------------------------------------

    def claim_verification(
        self, domain: str, holder: str, *, now: datetime, stale_s: float
    ) -> bool:
        """Mark a verification of `domain` as running for `holder`; False when another one is
        in flight (claimed less than `stale_s` ago). At most one per account, across processes."""
        domain = domain.strip().lower()
        now = as_utc(now) or utcnow()
        with self._write() as conn:
            row = conn.execute(
                sa.select(verifications.c.running_since)
                .where(verifications.c.domain == domain)
                .with_for_update()
            ).first()
            if row is None:
                conn.execute(
                    verifications.insert().values(
                        domain=domain, running_since=now, running_holder=holder
                    )
                )
                return True
            since = as_utc(row.running_since)
            if since is not None and since > now - timedelta(seconds=stale_s):
                return False
            conn.execute(
                verifications.update()
                .where(verifications.c.domain == domain)
                .values(running_since=now, running_holder=holder)
            )
            return True

    def finish_verification(self, holder: str, verification: Verification) -> None:
        """Record the result and release the claim `holder` made (a claim taken over by another
        run since is left to that run; the result is recorded all the same)."""
        domain = verification.domain.strip().lower()
        result = {
            "result": verification.result,
            "code": verification.code,
            "at": as_utc(verification.at),
            "seconds": verification.seconds,
        }
        with self._write() as conn:
            conn.execute(
                verifications.update().where(verifications.c.domain == domain).values(**result)
            )
            conn.execute(
                verifications.update()
                .where(verifications.c.domain == domain, verifications.c.running_holder == holder)
                .values(running_since=None, running_holder=None)
            )

    def list_verifications(self) -> dict[str, Verification]:
        """The last recorded verification of each account (accounts never verified: absent)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(verifications).where(verifications.c.result.is_not(None))
            ).all()
        return {
            row.domain: Verification(
                domain=row.domain,
                result=row.result,
                code=row.code,
                at=as_utc(row.at) or utcnow(),
                seconds=float(row.seconds or 0.0),
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
                    at=utcnow(),
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
                at=as_utc(row.at) or utcnow(),
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

    def apply_lock(
        self,
        timeout_s: float = 30.0,
        poll_s: float = 0.2,
        *,
        lease_s: float = 60.0,
        name: str = APPLY_LOCK_NAME,
    ) -> AbstractContextManager[None]:
        """Hold the store-wide apply lock (see `store_lock.LeasedLock.hold`)."""
        lock = LeasedLock(self._write, is_sqlite=self._is_sqlite, masked_url=self._masked)
        return lock.hold(timeout_s, poll_s, lease_s=lease_s, name=name)
