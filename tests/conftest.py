import pytest

from together_reconcile.gorgias.client import PROXY_ENV

pytest_plugins = [
    "tests.plugins.store_fixtures",
    "tests.plugins.sandbox_fixtures",
]


@pytest.fixture
def without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy setting in the environment (either case), whatever the machine has."""
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
