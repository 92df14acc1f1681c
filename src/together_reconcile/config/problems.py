"""Validation problems: where something is wrong in an account file, and the report of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from together_reconcile.errors import TogetherError

KeyPath = tuple[str | int, ...]  # keys and list indexes from the document root
Position = tuple[int, int]  # 1-based line, column


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in one file, at a 1-based line and column."""

    path: Path
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{shown_path(self.path)}:{self.line}:{self.col}: {shown_path(self.message)}"

    def github_annotation(self) -> str:
        """The same problem as a GitHub Actions workflow command."""
        return (
            f"::error file={_escape_property(shown_path(self.path))},line={self.line},"
            f"col={self.col}::{_escape_data(shown_path(self.message))}"
        )


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown_path(path: Path | str) -> str:
    """A path (or any text from outside) as printed: every control or other unprintable
    character escaped (`\\n`, `\\x1b`, `\\u2028`, an undecodable byte's `\\udcff`), so a file
    name can never start an output line of its own, such as a `::notice` workflow command."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@dataclass(frozen=True)
class ValidationReport:
    """What `validate` found: how many files it checked and every problem, sorted."""

    files: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        return f"{_plural(self.files, 'file')}, {_plural(len(self.problems), 'problem')}"

    def lines(self, *, github_actions: bool = False) -> list[str]:
        """The report as printed: one line per problem (plus its annotation), then the summary."""
        out: list[str] = []
        for problem in self.problems:
            out.append(str(problem))
            if github_actions:
                out.append(problem.github_annotation())
        out.append(self.summary)
        return out


class ConfigError(TogetherError):
    """The account files are not valid; `problems` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = "\n".join(str(p) for p in self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n... and {more} more" if more > 0 else ""
        super().__init__(
            f"invalid account files ({_plural(len(self.problems), 'problem')}); "
            f"run `together-reconcile validate`:\n{shown}{tail}"
        )


class AccountInputError(ValueError):
    """A domain given on the command line (e.g. to `new`) is not valid; the message says why."""


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
