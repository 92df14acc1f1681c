"""`--verify-wait N`: retries `unknown_account` until N seconds have passed, the last try at
the end of the wait (a fake clock; the store is a real SQLite file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from together_reconcile.reconcile import verify as verify_module
from together_reconcile.reconcile.verify import Verifier
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Store


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("wait_s", "interval_s", "tries_at"),
    [
        (3.0, 1.0, [0.0, 1.0, 2.0, 3.0]),
        (2.5, 1.0, [0.0, 1.0, 2.0, 2.5]),  # the last try at the end, not at 2.0
        (0.0, 1.0, [0.0]),
    ],
)
def test_unknown_account_is_retried_until_the_end_of_the_wait(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    wait_s: float,
    interval_s: float,
    tries_at: list[float],
) -> None:
    fake = FakeTime()
    tried: list[float] = []

    def handler_does_not_know_it(*_args: Any, **_kwargs: Any) -> str:
        tried.append(fake.now)
        return "unknown_account"

    monkeypatch.setattr(verify_module, "call_handler", handler_does_not_know_it)
    keyring = Keyring.from_env(generate_key())
    with Store.open(f"sqlite:///{tmp_path}/state.db", keyring) as store:
        verifier = Verifier(
            store,
            keyring,
            "https://together.example.com",
            {"acme.gorgias.com": "acme.myshopify.com"},
            http=None,  # type: ignore[arg-type]  # call_handler is replaced
            retry_interval_s=interval_s,
            clock=fake.clock,
            sleep=fake.sleep,
        )
        result = verifier.verify("acme.gorgias.com", wait_s=wait_s)
    assert (result.result, result.code) == ("failed", "unknown_account")
    assert tried == tries_at
    assert sum(fake.slept) == wait_s
