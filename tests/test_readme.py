"""The README tells the truth: its commands exist and are exercised, its messages are real.

- every `together-reconcile ...` command line in a shell code block names a command, options
  and values the CLI has (the checker of `test_workflows`, click introspection);
- every such command is run by the demo or by a named test;
- the Quickstart is exactly `make demo` and `make test`, and both are Makefile targets;
- the sections come in the order the README promises its readers;
- every `TOGETHER_*` variable it names is one the product reads;
- every error message quoted in Troubleshooting is built from text that is in the source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tests.click_helpers import subcommands
from tests.test_demo import run_demo
from tests.test_workflows import KNOWN_TOGETHER_ENV, check_arguments, invocations_in_script
from together_reconcile.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SOURCE = "\n".join(
    path.read_text(encoding="utf-8") for path in sorted((ROOT / "src").rglob("*.py"))
)

SECTIONS = [
    "Quickstart",
    "Adding an account (support staff)",
    "What the pull-request checks show",
    "Running it in GitHub Actions",
    "Connecting a merchant",
    "Running the handler in production",
    "Key rotation",
    "Privacy and security model",
    "Exit codes",
    "Troubleshooting",
]

# Commands the README shows that the demo does not run, and the test that runs each.
EXERCISED_BY = {
    ("new",): "tests/test_new.py",
    ("schema",): "tests/test_schema.py",
    ("keygen",): "tests/test_credentials_cli.py",
    ("credentials", "put"): "tests/test_credentials_cli.py",
    ("credentials", "rotate"): "tests/test_credentials_cli.py",
    ("serve",): "tests/serve_helpers.py",
    ("sandbox",): "tests/test_sandbox_cli.py",
    ("plan",): "tests/test_reconcile_e2e.py",
    ("apply",): "tests/test_reconcile_e2e.py",
    ("verify",): "tests/contract/test_support_loop.py",
}


# ------------------------------------------------------------------------------ parsing


def sections(text: str) -> dict[str, str]:
    """`## Title` → the text up to the next `## `."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def shell_blocks(text: str) -> Iterator[str]:
    for match in re.finditer(r"^\s*```(?:sh|bash|shell)\n(.*?)^\s*```", text, re.M | re.S):
        yield match.group(1)


_END = "__end_of_line__"


def readme_invocations() -> list[tuple[str, ...]]:
    """The shared extractor drops a final number (the `2` of `2>`); an end marker on each line
    keeps a real one, like the 16 of `--threads 16`."""
    found = []
    for block in shell_blocks(README):
        marked = "\n".join(
            f"{line} {_END}" if line.strip() else line for line in block.splitlines()
        )
        for args in invocations_in_script(marked):
            found.append(args[:-1] if args and args[-1] == _END else args)
    return found


def command_path(args: tuple[str, ...]) -> tuple[str, ...]:
    """The (sub)command words of an invocation: ("credentials", "put") for `credentials put
    gorgias acme.gorgias.com`."""
    command: click.Command = main
    path: list[str] = []
    for arg in args:
        if not isinstance(command, click.Group):
            break
        sub = subcommands(command).get(arg)
        if sub is not None:
            path.append(arg)
            command = sub
    return tuple(path)


INVOCATIONS = readme_invocations()


# ------------------------------------------------------------------------------ structure


def test_the_sections_come_in_the_promised_order() -> None:
    titles = list(sections(README))
    assert [title for title in titles if title in SECTIONS] == SECTIONS
    assert README.startswith("# together-reconcile\n")
    assert titles[0] == "Quickstart"  # before it: what it does, and the flow picture
    assert "accounts/*.yaml → validate → plan" in README.split("## Quickstart")[0]


def test_the_quickstart_is_exactly_make_demo_and_make_test() -> None:
    blocks = list(shell_blocks(sections(README)["Quickstart"]))
    commands = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo: .*\n\t\$\(BIN\)/together-reconcile demo$", makefile, re.M)
    assert re.search(r"^test: ", makefile, re.M)


# ------------------------------------------------------------------------------ commands


def test_the_readme_shows_the_commands_users_need() -> None:
    shown = {command_path(args) for args in INVOCATIONS}
    assert shown >= {
        ("new",),
        ("validate",),
        ("plan",),
        ("apply",),
        ("keygen",),
        ("credentials", "put"),
        ("credentials", "import"),
        ("credentials", "list"),
        ("credentials", "rotate"),
        ("serve",),
        ("schema",),
    }


@pytest.mark.parametrize("args", INVOCATIONS, ids=[" ".join(args) for args in INVOCATIONS])
def test_each_command_line_exists_in_the_cli(args: tuple[str, ...]) -> None:
    assert check_arguments(main, args) == []


@pytest.fixture(scope="module")
def demo_commands() -> set[tuple[str, ...]]:
    run = run_demo()
    assert run.returncode == 0, run.output
    lines = re.findall(r"^\$ together-reconcile (.*)$", run.output, re.M)
    return {command_path(tuple(line.split())) for line in lines}


def test_every_readme_command_is_run_by_the_demo_or_a_test(
    demo_commands: set[tuple[str, ...]],
) -> None:
    unexercised = []
    for args in INVOCATIONS:
        path = command_path(args)
        if path in demo_commands:
            continue
        test_file = EXERCISED_BY.get(path)
        if test_file is None or not invokes(ROOT / test_file, path):
            unexercised.append(" ".join(args))
    assert unexercised == []


def invokes(test_file: Path, path: tuple[str, ...]) -> bool:
    """The file passes the command words to the CLI: `["credentials", "rotate"`, `("plan", `,
    `"together_reconcile", "serve",`."""
    words = r",\s*".join(f"[\"']{re.escape(word)}[\"']" for word in path)
    return (
        re.search(rf"[\[(,]\s*{words}\s*[,\])]", test_file.read_text(encoding="utf-8")) is not None
    )


def test_the_exercise_check_reads_invocations() -> None:
    assert command_path(("--state-url", "x", "credentials", "put", "gorgias", "a")) == (
        "credentials",
        "put",
    )
    assert command_path(("apply", "plan.json", "--yes")) == ("apply",)
    sample = ROOT / "tests" / "test_credentials_cli.py"
    assert invokes(sample, ("credentials", "rotate"))
    assert not invokes(sample, ("credentials", "rotat"))


# ------------------------------------------------------------------------------ settings


def cli_env_vars(command: click.Command) -> Iterator[str]:
    for param in command.params:
        if isinstance(param.envvar, str):
            yield param.envvar
    if isinstance(command, click.Group):
        for sub in subcommands(command).values():
            yield from cli_env_vars(sub)


def test_every_variable_named_is_one_the_product_reads() -> None:
    known = KNOWN_TOGETHER_ENV | set(cli_env_vars(main))
    named = set(re.findall(r"\bTOGETHER_[A-Z_]*[A-Z]\b", README)) - {"TOGETHER_OPTION"}
    assert named - known == set()


def test_the_github_settings_match_the_workflows() -> None:
    text = sections(README)["Running it in GitHub Actions"]
    for name, kind in (
        ("TOGETHER_SECRET_KEYS", "secret"),
        ("TOGETHER_STATE_URL", "secret"),
        ("TOGETHER_PUBLIC_URL", "variable"),
        ("TOGETHER_GORGIAS_URL", "variable, optional"),
    ):
        assert f"| `{name}` | {kind} |" in text
        workflow_kind = "secrets" if kind == "secret" else "vars"
        apply_yml = (ROOT / ".github" / "workflows" / "apply.yml").read_text(encoding="utf-8")
        assert f"{name}: ${{{{ {workflow_kind}.{name} }}}}" in apply_yml
    prose = " ".join(text.split())
    assert "**`production`**" in prose and "environment: production" in apply_yml
    assert "own concurrency group (`reconcile`, `connect`)" in prose
    assert "group: reconcile" in apply_yml and "group: connect" in apply_yml


# ------------------------------------------------------------------------------ messages

# In a quoted message: example values, `…` and placeholders stand for what the code fills in.
_FILLED_IN = re.compile(r'"[^"]*"|…|\.\.\.|<[^>]*>|\b[A-Z]\b|\b\d+\b|\bPLAN_FILE\b|\S+\.\S+')
_CODE = re.compile(r"(?:blocked \()?([a-z]+_[a-z_]+)\)?")


def troubleshooting_cells() -> list[str]:
    """The quoted first cell of each Troubleshooting row, split at ` / ` alternatives."""
    text = sections(README)["Troubleshooting"]
    cells = []
    for row in re.findall(r"^\| (``?.+?``?)(?: \([^)|]*\))? \|", text, re.M):
        cells += [cell.strip("` ") for cell in row.split("` / `")]
    return cells


CELLS = troubleshooting_cells()
CODES = [cell for cell in CELLS if _CODE.fullmatch(cell)]
MESSAGES = [cell for cell in CELLS if cell not in CODES]


def word_runs(message: str, size: int = 3) -> list[list[str]]:
    """Every run of `size` words of the message's literal parts (not its example values)."""
    runs = []
    for piece in _FILLED_IN.split(message):
        words = [word for word in piece.split() if re.search(r"\w", word)]
        runs += [words[i : i + size] for i in range(len(words) - size + 1)]
    return runs


_SOURCE_TEXT = " ".join(re.sub(r'"\s*\n\s*f?"', "", SOURCE).split())
_FIELD = r"\{[^{}]*\}\S*"


def from_the_code(message: str) -> bool:
    """Some three-word run of it is text in src/ (messages are built from parts), where one
    of the three words may be an f-string field (`{name}: must be` for `lookback_days: must be`)."""
    for run in word_runs(message) or word_runs(message, 2):  # a short one: two words
        literal = [re.escape(word) for word in run]
        variants = [literal] + [
            [
                *literal[:i],
                _FIELD + re.escape(run[i][-1:] if run[i][-1:] in ":," else ""),
                *literal[i + 1 :],
            ]
            for i in range(len(run))
        ]
        for words in variants:
            if re.search(r"\s+".join(words), _SOURCE_TEXT):
                return True
    return False


def test_troubleshooting_quotes_many_messages_and_codes() -> None:
    assert len(MESSAGES) >= 25
    assert len(CODES) >= 14


@pytest.mark.parametrize("message", MESSAGES)
def test_each_quoted_message_comes_from_the_code(message: str) -> None:
    assert from_the_code(message), f"no part of this message is in src/: {message}"


@pytest.mark.parametrize("code", CODES)
def test_each_code_is_one_the_product_uses(code: str) -> None:
    name = _CODE.fullmatch(code)
    assert name is not None
    assert re.search(rf"[\"']{name.group(1)}[\"']", SOURCE), code


def test_the_message_check_finds_invented_messages() -> None:
    assert word_runs('unknown key "enabeld": did you mean "enabled"?') == [["did", "you", "mean"]]
    assert from_the_code("lookback_days: must be between 1 and 60, got 90")
    assert from_the_code("the state database at x.db is read-only: use a writable")
    assert not from_the_code("the frobnicator at x.db is unhappy: try again later")
