"""Sandbox fixtures: one sandbox per test session, reset before each test that uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from together_reconcile.sandbox import RunningSandbox, start_sandbox


@pytest.fixture(scope="session")
def sandbox_session() -> Iterator[RunningSandbox]:
    with start_sandbox() as running:
        yield running


@pytest.fixture
def sandbox(sandbox_session: RunningSandbox) -> Iterator[RunningSandbox]:
    """A running sandbox on a loopback port, empty and with default knobs."""
    sandbox_session.control.reset()
    yield sandbox_session
    sandbox_session.control.reset()
