"""The store-wide apply lock: a row of the `locks` table with a lease, renewed while held.

One apply at a time per state database. A holder that died stops renewing: its lock is taken
over once the lease ends, or at once when it ran on this host and its process is gone.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from together_reconcile.errors import EXIT_REFUSED
from together_reconcile.store.engine import StoreError
from together_reconcile.store.tables import locks
from together_reconcile.store.values import as_utc, utcnow

APPLY_LOCK_NAME = "apply"


class LockTimeout(StoreError):
    """Another process held the apply lock for longer than we were willing to wait (exit 3:
    nothing was changed)."""

    exit_code = EXIT_REFUSED


WriteTransaction = Callable[[], AbstractContextManager[Connection]]


class LeasedLock:
    """Named locks taken through the store's write transactions (see `Store.apply_lock`)."""

    def __init__(self, write: WriteTransaction, *, is_sqlite: bool, masked_url: str) -> None:
        self._write = write
        self._is_sqlite = is_sqlite
        self._masked = masked_url

    def _try_lock(self, name: str, holder: str, lease_s: float) -> sa.Row[Any] | None:
        """Take the lock if free or stale; None on success, else the current holder's row."""
        now = utcnow()
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
                .values(expires_at=utcnow() + timedelta(seconds=lease_s))
            )

    def _release_lock(self, name: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute(locks.delete().where(locks.c.name == name, locks.c.holder == holder))

    @contextmanager
    def hold(
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
                since = as_utc(current.acquired_at) or utcnow()
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
    expires = as_utc(row.expires_at)
    if expires is not None and expires <= now:
        return True
    host, _, rest = str(row.holder).partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not (pid_text.isascii() and pid_text.isdigit()):
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
