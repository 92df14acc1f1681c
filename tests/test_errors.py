"""One error root: every error a user reads is a `TogetherError` with its exit code, and the
root group converts it once (`Error: <message>` on stderr, exit `exit_code`)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

import together_reconcile.cli as cli_module
from together_reconcile.config import ConfigError
from together_reconcile.errors import EXIT_ERROR, EXIT_REFUSED, Refused, TogetherError
from together_reconcile.reconcile.apply import ApplyRefused, PlanFileError
from together_reconcile.reconcile.observe import SetupError
from together_reconcile.reconcile.safety import DeleteCapExceeded, StalePlan, UpdateCapExceeded
from together_reconcile.reconcile.select import UnknownAccount
from together_reconcile.secrets import SecretKeysError
from together_reconcile.store import CredentialInputError, LockTimeout, StoreError


@pytest.mark.parametrize(
    ("error", "exit_code"),
    [
        (SetupError, EXIT_ERROR),
        (UnknownAccount, EXIT_ERROR),
        (SecretKeysError, EXIT_ERROR),
        (ConfigError, EXIT_ERROR),
        (StoreError, EXIT_ERROR),
        (CredentialInputError, EXIT_ERROR),
        (PlanFileError, EXIT_ERROR),
        (LockTimeout, EXIT_REFUSED),
        (ApplyRefused, EXIT_REFUSED),
        (DeleteCapExceeded, EXIT_REFUSED),
        (UpdateCapExceeded, EXIT_REFUSED),
        (StalePlan, EXIT_REFUSED),
    ],
)
def test_each_user_error_is_a_together_error_with_its_exit_code(
    error: type[TogetherError], exit_code: int
) -> None:
    assert issubclass(error, TogetherError)
    assert error.exit_code == exit_code
    assert issubclass(error, Refused) == (exit_code == EXIT_REFUSED and error is not LockTimeout)


def test_credential_input_error_is_still_a_value_error() -> None:
    assert issubclass(CredentialInputError, ValueError)


@pytest.mark.parametrize(
    ("raised", "exit_code"),
    [
        (DeleteCapExceeded(5, 3), 3),
        (StalePlan(["acme.gorgias.com"]), 3),
        (SetupError("TOGETHER_PUBLIC_URL is not set: set it"), 1),
    ],
)
def test_the_root_group_converts_a_together_error_once(
    monkeypatch: pytest.MonkeyPatch, raised: TogetherError, exit_code: int
) -> None:
    @click.command("boom")
    def boom() -> None:
        raise raised

    monkeypatch.setitem(cli_module.COMMANDS, "boom", ("reconcile:boom", "Fails."))
    monkeypatch.setattr(cli_module, "load_command", lambda name: boom)
    result = CliRunner().invoke(cli_module.main, ["boom"])
    assert result.exit_code == exit_code
    assert result.stdout == ""
    assert result.stderr == f"Error: {raised.message}\n"
