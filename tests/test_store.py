"""The state store, on SQLite and on PostgreSQL (every test here runs on both via `state_url`)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from together_reconcile import store as store_module
from together_reconcile.secrets import Keyring, SecretKeysError, generate_key
from together_reconcile.store import (
    SCHEMA_VERSION,
    Credential,
    CredentialInfo,
    LockTimeout,
    ManagedAccount,
    Store,
    StoreError,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def gorgias(domain: str = "acme.gorgias.com", **changes: Any) -> Credential:
    base = Credential(
        kind="gorgias",
        domain=domain,
        access_token=f"access-{domain.lower()}",
        refresh_token=f"refresh-{domain.lower()}",
        expires_at=NOW,
    )
    return replace(base, **changes)


def raw_rows(state_url: str, table: str) -> list[dict[str, Any]]:
    """Rows as stored, read around the store (to check what is at rest)."""
    url = state_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.text(f"SELECT * FROM {table}")  # noqa: S608 (fixed table names)
            return [dict(row._mapping) for row in conn.execute(query)]
    finally:
        engine.dispose()


# Credentials ------------------------------------------------------------------------------------


def test_put_get_round_trip_lower_cases_and_keeps_utc(store: Store) -> None:
    store.put_credential(gorgias("Acme.Gorgias.com", username="ops@example.com"))
    got = store.get_credential("gorgias", "ACME.gorgias.com")
    assert got == gorgias("acme.gorgias.com", username="ops@example.com")
    assert got is not None and got.expires_at == NOW and got.expires_at.tzinfo is not None
    assert store.get_credential("shopify", "acme.gorgias.com") is None
    assert store.get_credential("gorgias", "other.gorgias.com") is None


def test_put_replaces_the_existing_row(store: Store) -> None:
    store.put_credential(gorgias())
    store.put_credential(gorgias(access_token="second", refresh_token=None, expires_at=None))
    assert store.get_credential("gorgias", "acme.gorgias.com") == gorgias(
        access_token="second", refresh_token=None, expires_at=None
    )
    assert len(store.list_credentials()) == 1


def test_tokens_are_encrypted_at_rest(store: Store, state_url: str) -> None:
    store.put_credential(
        gorgias(access_token="plain-access-XYZ", refresh_token="plain-refresh-XYZ")
    )
    (row,) = raw_rows(state_url, "credentials")
    dumped = repr(row)
    assert "plain-access-XYZ" not in dumped
    assert "plain-refresh-XYZ" not in dumped
    assert row["domain"] == "acme.gorgias.com"


def test_repr_hides_tokens() -> None:
    credential = gorgias(access_token="AT-123", refresh_token="RT-456")
    for text in (repr(credential), str(credential), f"{credential}"):
        assert "AT-123" not in text and "RT-456" not in text
        assert "acme.gorgias.com" in text


def test_list_credentials_shows_no_secret_and_needs_no_key(store: Store, state_url: str) -> None:
    store.put_credential(gorgias())
    store.put_credential(
        Credential(kind="shopify", domain="acme.myshopify.com", access_token="shpat_x")
    )
    with Store.open(state_url) as keyless:
        infos = keyless.list_credentials()
    assert infos == [
        CredentialInfo("gorgias", "acme.gorgias.com", NOW, "ok", refreshable=True),
        CredentialInfo("shopify", "acme.myshopify.com", None, "ok", refreshable=False),
    ]


def test_operations_needing_the_key_fail_clearly_without_it(store: Store, state_url: str) -> None:
    store.put_credential(gorgias())
    with Store.open(state_url) as keyless:
        for attempt in (
            lambda: keyless.get_credential("gorgias", "acme.gorgias.com"),
            lambda: keyless.put_credential(gorgias()),
            keyless.rotate_credentials,
        ):
            with pytest.raises(SecretKeysError, match="TOGETHER_SECRET_KEYS is not set"):
                attempt()


def test_get_credentials_fetches_many_in_one_query(store: Store) -> None:
    domains = [f"shop{i}.gorgias.com" for i in range(1000)]
    store.import_credentials([gorgias(domain) for domain in domains])
    statements: list[str] = []
    sa.event.listen(
        store._engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: statements.append(statement),
    )
    found = store.get_credentials("gorgias", [*domains, "missing.gorgias.com"])
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    assert len(found) == 1000
    assert found["shop7.gorgias.com"].access_token == "access-shop7.gorgias.com"
    assert store.get_credentials("gorgias", []) == {}


def test_mark_reconnect_needed(store: Store) -> None:
    store.put_credential(gorgias())
    assert store.mark_reconnect_needed("gorgias", "ACME.gorgias.com") is True
    assert store.mark_reconnect_needed("gorgias", "nobody.gorgias.com") is False
    got = store.get_credential("gorgias", "acme.gorgias.com")
    assert got is not None and got.status == "reconnect_needed"
    (info,) = store.list_credentials()
    assert info.display_status(NOW) == "reconnect_needed"


def test_rotate_reencrypts_everything_under_the_newest_key(state_url: str) -> None:
    old, new = generate_key(), generate_key()
    with Store.open(state_url, Keyring.from_env(old)) as first:
        first.import_credentials([gorgias("a.gorgias.com"), gorgias("b.gorgias.com")])
    with Store.open(state_url, Keyring.from_env(new)) as new_only:
        with pytest.raises(StoreError) as raised:
            new_only.get_credential("gorgias", "a.gorgias.com")
        assert str(raised.value) == (
            "the stored gorgias credential for a.gorgias.com cannot be decrypted with any key of "
            "TOGETHER_SECRET_KEYS: restore the key it was encrypted with, or put the credential "
            "again"
        )
    before = raw_rows(state_url, "credentials")
    with Store.open(state_url, Keyring.from_env(f"{new},{old}")) as both:
        assert both.rotate_credentials() == 2
    after = raw_rows(state_url, "credentials")
    assert {r["access_token_enc"] for r in before}.isdisjoint(r["access_token_enc"] for r in after)
    with Store.open(state_url, Keyring.from_env(new)) as new_only:
        got = new_only.get_credentials("gorgias", ["a.gorgias.com", "b.gorgias.com"])
    assert got == {
        "a.gorgias.com": gorgias("a.gorgias.com"),
        "b.gorgias.com": gorgias("b.gorgias.com"),
    }


def test_rotate_is_all_or_nothing_when_a_row_has_an_unknown_key(state_url: str) -> None:
    lost, kept = generate_key(), generate_key()
    with Store.open(state_url, Keyring.from_env(kept)) as s:
        s.put_credential(gorgias("a.gorgias.com"))
    with Store.open(state_url, Keyring.from_env(lost)) as s:
        s.put_credential(gorgias("z.gorgias.com"))
    before = raw_rows(state_url, "credentials")
    rotating = Keyring.from_env(f"{generate_key()},{kept}")
    with (
        Store.open(state_url, rotating) as s,
        pytest.raises(StoreError, match=r"z\.gorgias\.com cannot be decrypted.*nothing was"),
    ):
        s.rotate_credentials()
    assert raw_rows(state_url, "credentials") == before


def test_import_is_all_or_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put_credential(gorgias("existing.gorgias.com"))
    real_row = Store._credential_row
    calls = {"n": 0}

    def fail_on_third(self: Store, credential: Credential) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real_row(self, credential)

    monkeypatch.setattr(Store, "_credential_row", fail_on_third)
    batch = [gorgias("existing.gorgias.com", access_token="changed"), gorgias("new1.gorgias.com")]
    with pytest.raises(RuntimeError):
        store.import_credentials([*batch, gorgias("new2.gorgias.com")])
    monkeypatch.undo()
    assert [info.domain for info in store.list_credentials()] == ["existing.gorgias.com"]
    existing = store.get_credential("gorgias", "existing.gorgias.com")
    assert existing is not None and existing.access_token == "access-existing.gorgias.com"
    assert store.import_credentials(batch) == 2
    assert len(store.list_credentials()) == 2


def test_credential_rejects_bad_kind_status_and_empty_token() -> None:
    with pytest.raises(ValueError, match="kind"):
        Credential(kind="github", domain="x", access_token="t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        Credential(kind="gorgias", domain="x", access_token="t", status="meh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="access_token"):
        Credential(kind="gorgias", domain="x", access_token="")


def test_display_status() -> None:
    def info(expires: datetime | None, refreshable: bool = False, status: str = "ok") -> str:
        return CredentialInfo(
            "gorgias", "a.gorgias.com", expires, status, refreshable
        ).display_status(NOW)  # type: ignore[arg-type]

    assert info(None) == "ok"
    assert info(NOW + timedelta(hours=2)) == "ok"
    assert info(NOW + timedelta(minutes=59)) == "expires soon"
    assert info(NOW - timedelta(seconds=1)) == "expired"
    assert info(NOW - timedelta(days=1), refreshable=True) == "ok"
    assert info(NOW + timedelta(days=1), status="reconnect_needed") == "reconnect_needed"


# Row lock for token refresh ---------------------------------------------------------------------


def test_locked_credential_save_and_rollback(store: Store) -> None:
    store.put_credential(gorgias())
    with store.locked_credential("gorgias", "acme.gorgias.com") as held:
        assert held.credential == gorgias()
        held.save(gorgias(access_token="fresh", refresh_token="rotated"))
    got = store.get_credential("gorgias", "acme.gorgias.com")
    assert got is not None and (got.access_token, got.refresh_token) == ("fresh", "rotated")
    with (
        pytest.raises(RuntimeError),
        store.locked_credential("gorgias", "acme.gorgias.com") as held,
    ):
        held.save(gorgias(access_token="lost"))
        raise RuntimeError("refresh failed half-way")
    got = store.get_credential("gorgias", "acme.gorgias.com")
    assert got is not None and got.access_token == "fresh"
    with store.locked_credential("gorgias", "nobody.gorgias.com") as held:
        assert held.credential is None


def test_locked_credential_serialises_concurrent_refreshers(
    state_url: str, keyring: Keyring
) -> None:
    """Each refresher reads the refresh token and writes the next one; none may be lost."""
    with Store.open(state_url, keyring) as setup:
        setup.put_credential(gorgias(refresh_token="r0"))
    stores = [Store.open(state_url, keyring) for _ in range(2)]
    errors: list[BaseException] = []

    def refresher(store: Store) -> None:
        try:
            for _ in range(4):
                with store.locked_credential("gorgias", "acme.gorgias.com") as held:
                    assert held.credential is not None and held.credential.refresh_token
                    n = int(held.credential.refresh_token[1:])
                    time.sleep(0.02)  # the window in which an unlocked refresher loses an update
                    held.save(replace(held.credential, refresh_token=f"r{n + 1}"))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=refresher, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for s in stores:
        s.close()
    assert errors == []
    with Store.open(state_url, keyring) as check:
        final = check.get_credential("gorgias", "acme.gorgias.com")
    assert final is not None and final.refresh_token == "r8"


REFRESHER = """
import os, sys, time
from dataclasses import replace
from together_reconcile.secrets import Keyring
from together_reconcile.store import Store
store = Store.open(sys.argv[1], Keyring.from_env(os.environ["TOGETHER_SECRET_KEYS"]))
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[2])):
    with store.locked_credential("gorgias", "acme.gorgias.com") as held:
        n = int(held.credential.refresh_token[1:])
        time.sleep(0.01)
        held.save(replace(held.credential, refresh_token=f"r{n + 1}"))
print("done", flush=True)
"""


def test_two_processes_refreshing_at_once_lose_no_refresh_token(
    state_url: str, keyring: Keyring, secret_keys_env: str
) -> None:
    with Store.open(state_url, keyring) as setup:
        setup.put_credential(gorgias(refresh_token="r0"))
    env = {**os.environ, "TOGETHER_SECRET_KEYS": secret_keys_env}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", REFRESHER, state_url, "5"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    for process in processes:  # release both at the same moment
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert (process.returncode, out.strip()) == (0, "done")
    with Store.open(state_url, keyring) as check:
        final = check.get_credential("gorgias", "acme.gorgias.com")
    assert final is not None and final.refresh_token == "r10"


def test_sixteen_threads_write_through_one_store(store: Store) -> None:
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for step in range(10):
                domain = f"shop{worker}.gorgias.com"
                store.append_audit(domain, "update", "widget", step, {"step": step})
                store.record_managed(
                    ManagedAccount(domain, worker, step, "sha256:00000000", NOW, None)
                )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(store.audit_log()) == 160
    assert {m.widget_id for m in store.list_managed().values()} == {9}


# Managed accounts and audit log ---------------------------------------------------------------


def test_managed_accounts_record_update_list_forget(store: Store) -> None:
    first = ManagedAccount("Acme.gorgias.com", 11, None, "sha256:aaaaaaaa", NOW, "abc123")
    store.record_managed(first)
    store.record_managed(ManagedAccount("b.gorgias.com", 21, 22, "sha256:bbbbbbbb", NOW, None))
    store.record_managed(replace(first, domain="acme.gorgias.com", widget_id=12))
    managed = store.list_managed()
    assert list(managed) == ["acme.gorgias.com", "b.gorgias.com"]
    assert managed["acme.gorgias.com"] == ManagedAccount(
        "acme.gorgias.com", 11, 12, "sha256:aaaaaaaa", NOW, "abc123"
    )
    assert store.forget_managed("ACME.gorgias.com") is True
    assert store.forget_managed("acme.gorgias.com") is False
    assert list(store.list_managed()) == ["b.gorgias.com"]


def test_audit_log_appends_in_order_with_commit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_SHA", "deadbeef")
    store.append_audit("acme.gorgias.com", "create", "integration", 11, {"name": "Together"})
    monkeypatch.delenv("GITHUB_SHA")
    store.append_audit("b.gorgias.com", "delete", "widget", None, {}, commit=None)
    store.append_audit(
        "Acme.gorgias.com", "update", "widget", "12", {"fields": ["order"]}, "c0ffee"
    )
    entries = store.audit_log()
    assert [(e.domain, e.action, e.kind, e.resource_id, e.commit) for e in entries] == [
        ("acme.gorgias.com", "create", "integration", "11", "deadbeef"),
        ("b.gorgias.com", "delete", "widget", None, None),
        ("acme.gorgias.com", "update", "widget", "12", "c0ffee"),
    ]
    assert entries[0].id < entries[1].id < entries[2].id
    assert entries[2].detail == {"fields": ["order"]}
    assert all(e.at.tzinfo is not None for e in entries)
    assert [e.action for e in store.audit_log("ACME.gorgias.com")] == ["create", "update"]


def test_audit_log_has_no_way_to_change_or_remove_entries() -> None:
    audit_methods = {name for name in dir(Store) if "audit" in name}
    assert audit_methods == {"append_audit", "audit_log"}


# Apply lock -----------------------------------------------------------------------------------


def test_apply_lock_excludes_a_second_holder_until_released(store: Store) -> None:
    holding = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with store.apply_lock(timeout_s=5):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(10)
    started = time.monotonic()
    with pytest.raises(LockTimeout) as raised, store.apply_lock(timeout_s=0.3, poll_s=0.05):
        pass
    assert 0.25 <= time.monotonic() - started < 5
    message = str(raised.value)
    assert message.startswith("another apply holds the lock on the state database at ")
    assert "waited 0.3 s" in message
    release.set()
    thread.join(10)
    with store.apply_lock(timeout_s=1):
        pass


def test_apply_lock_waits_for_a_release_within_its_timeout(store: Store) -> None:
    acquired = threading.Event()

    def short_holder() -> None:
        with store.apply_lock(timeout_s=5):
            acquired.set()
            time.sleep(0.3)

    thread = threading.Thread(target=short_holder)
    thread.start()
    assert acquired.wait(10)
    with store.apply_lock(timeout_s=10, poll_s=0.05):
        pass
    thread.join(10)


def test_expired_lease_is_taken_over(store: Store) -> None:
    with store._write() as conn:
        conn.execute(
            store_module.locks.insert().values(
                name="apply",
                holder="elsewhere:1:x",
                acquired_at=NOW,
                expires_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
    with store.apply_lock(timeout_s=0.5):
        pass


LOCK_HOLDER = """
import sys, time
from together_reconcile.store import Store
store = Store.open(sys.argv[1])
with store.apply_lock(timeout_s=10):
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


def test_apply_lock_across_processes_and_after_a_crash(state_url: str, keyring: Keyring) -> None:
    Store.open(state_url).close()

    def start_holder() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, state_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        return process

    with Store.open(state_url, keyring) as store:
        holder = start_holder()
        with pytest.raises(LockTimeout), store.apply_lock(timeout_s=0.3, poll_s=0.05):
            pass
        assert holder.stdin is not None
        holder.communicate("\n", timeout=20)
        with store.apply_lock(timeout_s=1):
            pass
        crashed = start_holder()
        crashed.kill()  # SIGKILL: no release; the lease still runs for a minute
        crashed.wait(10)
        started = time.monotonic()
        with store.apply_lock(timeout_s=5):
            pass
        assert time.monotonic() - started < 2  # a dead holder on this host is noticed at once


# Opening, migrations, errors ------------------------------------------------------------------


def test_migrations_are_idempotent_and_keep_data(state_url: str, keyring: Keyring) -> None:
    with Store.open(state_url, keyring) as first:
        assert first.schema_version() == SCHEMA_VERSION
        first.put_credential(gorgias())
    for _ in range(2):
        with Store.open(state_url, keyring) as again:
            assert again.schema_version() == SCHEMA_VERSION
            assert again.get_credential("gorgias", "acme.gorgias.com") == gorgias()
    assert raw_rows(state_url, "schema_version") == [{"id": 1, "version": SCHEMA_VERSION}]


def test_concurrent_first_opens_are_safe(state_url: str) -> None:
    errors: list[BaseException] = []

    def open_once() -> None:
        try:
            Store.open(state_url).close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert raw_rows(state_url, "schema_version") == [{"id": 1, "version": SCHEMA_VERSION}]


def test_a_newer_schema_is_refused(state_url: str) -> None:
    Store.open(state_url).close()
    url = state_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_version SET version = 999"))
    engine.dispose()
    with pytest.raises(StoreError, match="has schema version 999, newer than"):
        Store.open(state_url)


def test_sqlite_parent_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    Store.open(f"sqlite:///{path}").close()
    assert path.is_file()


def test_relative_sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Store.open("sqlite:///.together/state.db").close()
    assert (tmp_path / ".together" / "state.db").is_file()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path}/s.db") as store, store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_unreachable_postgres_names_it_without_password() -> None:
    with pytest.raises(StoreError) as raised:
        Store.open("postgresql://bob:hunter2@127.0.0.1:1/state")
    assert str(raised.value) == (
        "cannot reach the state database at postgresql://bob:***@127.0.0.1:1/state: "
        "connection refused"
    )
    assert "hunter2" not in repr(raised.value)


def test_read_only_sqlite_reads_but_refuses_writes_clearly(
    tmp_path: Path, keyring: Keyring
) -> None:
    path = tmp_path / "state.db"
    with Store.open(f"sqlite:///{path}", keyring) as writable:
        writable.put_credential(gorgias())
    with Store.open(f"sqlite:///file:{path}?mode=ro&uri=true", keyring) as read_only:
        assert read_only.get_credential("gorgias", "acme.gorgias.com") == gorgias()
        with pytest.raises(StoreError) as raised:
            read_only.put_credential(gorgias(access_token="new"))
    assert str(raised.value) == (
        f"the state database at sqlite:///file:{path} is read-only: use a writable file or "
        "database for TOGETHER_STATE_URL"
    )


@pytest.mark.postgres
def test_read_only_postgres_refuses_writes_clearly(
    postgres_schema_url: str, keyring: Keyring
) -> None:
    ro_url = postgres_schema_url + "%20-cdefault_transaction_read_only%3Don"
    Store.open(postgres_schema_url).close()
    with (
        Store.open(ro_url, keyring) as read_only,
        pytest.raises(StoreError, match=r"is read-only: use a writable file or database"),
    ):
        read_only.put_credential(gorgias())


def test_missing_sqlite_file_in_read_only_mode(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as raised:
        Store.open(f"sqlite:///file:{tmp_path}/none.db?mode=ro&uri=true")
    assert str(raised.value) == (
        f"cannot reach the state database at sqlite:///file:{tmp_path}/none.db: "
        "unable to open database file"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://root@localhost/state",
            "unsupported state database URL scheme 'mysql': use sqlite:///path/to/state.db or "
            "postgresql://user@host:5432/dbname",
        ),
        (
            "not a url",
            "the state URL is not a URL: use sqlite:///path/to/state.db or "
            "postgresql://user@host:5432/dbname",
        ),
        (
            "postgresql://u:hunter2@host:notaport/db",
            "the state URL is not a URL: use sqlite:///path/to/state.db or "
            "postgresql://user@host:5432/dbname",
        ),
        (
            "postgresql://u:hunter2@[::1:5432/db",
            "the state URL is not a URL: use sqlite:///path/to/state.db or "
            "postgresql://user@host:5432/dbname",
        ),
        (
            "sqlite://",
            "an in-memory SQLite state database cannot be shared: use sqlite:///path/to/state.db",
        ),
    ],
)
def test_unusable_urls(url: str, message: str) -> None:
    with pytest.raises(StoreError) as raised:
        Store.open(url)
    assert str(raised.value) == message


def test_mask_url() -> None:
    assert store_module.mask_url("postgresql://u:p%40ss@h:5433/db?options=x") == (
        "postgresql://u:***@h:5433/db"
    )
    assert store_module.mask_url("postgresql://h/db") == "postgresql://h/db"
    assert store_module.mask_url("sqlite:///rel/state.db") == "sqlite:///rel/state.db"
    assert store_module.mask_url("postgresql://u:hunter2@h:notaport/db") == "<unparsable URL>"
