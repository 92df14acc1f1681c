"""The state database's tables (SQLAlchemy Core) and the ordered migrations that create them."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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


# The last verification of each account (`verify`, `apply --verify`) and the one in flight:
# `running_since`/`running_holder` are set while a verification runs (at most one per account;
# a claim older than the verify bound is taken over, so a killed run never blocks the next).
verifications = sa.Table(
    "verifications",
    metadata,
    sa.Column("domain", sa.String(255), primary_key=True),
    sa.Column("result", sa.String(16), nullable=True),
    sa.Column("code", sa.String(64), nullable=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("seconds", sa.Float, nullable=True),
    sa.Column("running_since", sa.DateTime(timezone=True), nullable=True),
    sa.Column("running_holder", sa.String(64), nullable=True),
)


def _migration_1_initial(conn: Connection) -> None:
    for table in (credentials, managed_accounts, audit_log_table, locks):
        table.create(conn)


def _migration_2_oauth_state_nonces(conn: Connection) -> None:
    oauth_state_nonces.create(conn)


def _migration_3_verifications(conn: Connection) -> None:
    verifications.create(conn)


# Ordered; never edit a released entry, append a new one. Version N = first N applied.
# Migration 1 creates the tables as defined above. Before a later migration alters one of them,
# freeze its current definition into `_migration_1_initial` (a copy), then change it above, so
# a fresh database still goes through every step.
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (
    _migration_1_initial,
    _migration_2_oauth_state_nonces,
    _migration_3_verifications,
)
SCHEMA_VERSION = len(MIGRATIONS)
