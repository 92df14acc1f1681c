"""The one error root: every error a user is meant to read is a `TogetherError`.

A `TogetherError` carries its exit code and a user message that says what to do next (never a
secret). The command line converts it in one place (`cli.TogetherGroup.main`: `Error: <message>`
on stderr, exit `exit_code`); library code raises it and never prints.

Contract for a subclass:

- it MUST set `exit_code` when it is not 1 (`EXIT_ERROR`): 3 (`EXIT_REFUSED`) means a safety
  rule refused the whole run and nothing was changed;
- it MAY carry data (a count, a cap, the domains concerned) as attributes and build its message
  from them in `__init__`, so tests assert the data and one place words the message;
- its message MUST NOT contain a token, a key, a password or a customer email.

This module imports nothing: it sits below every layer (see the import-linter contracts).
"""

from __future__ import annotations

from typing import ClassVar

EXIT_ERROR = 1
EXIT_REFUSED = 3


class TogetherError(Exception):
    """An error the user is meant to read: `message` says what went wrong and what to do."""

    exit_code: ClassVar[int] = EXIT_ERROR

    @property
    def message(self) -> str:
        return str(self)


class Refused(TogetherError):
    """A safety rule refused the whole run before any write (exit 3)."""

    exit_code: ClassVar[int] = EXIT_REFUSED


__all__ = ["EXIT_ERROR", "EXIT_REFUSED", "Refused", "TogetherError"]
