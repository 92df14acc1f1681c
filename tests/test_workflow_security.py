"""No code that did not come from `main` ever runs with a secret (issue 15, critical).

The attack this guards against: a branch of this repository changed one line of the CLI, and
the pull-request plan job installed and ran that code with the production secrets in its
environment. The checker below reads each workflow and reports every job that can see a
secret (a `secrets.` reference, `secrets: inherit` or an `environment:`) and

- runs on a trigger that a branch can fire (anything but a schedule, a manual run, a push to
  `main` only, or `pull_request_target` into `main` only), or
- reads secrets outside a GitHub environment (i.e. repository secrets),

and every job that holds a secret or runs under `pull_request_target` (whose token and caches
are the base branch's) and

- checks out pull-request code (refs such as `github.event.pull_request.head.*`,
  `github.head_ref`, `refs/pull/N/merge`), except the pull request's `accounts/` and `schemas/`
  alone, sparse, non-cone, into a folder of their own, without credentials, or
- installs anything without `--require-hashes`, or installs after the pull request's files are
  on disk, or
- runs, sources, builds or cds into anything from that data folder.

And because only `production` has required reviewers, a job holding secrets in any other
environment runs unattended: every `together-reconcile apply` it runs must carry `--only
create` (the `connect` job of apply.yml: a late connect goes live without a person, but nothing
is updated or deleted without a reviewed plan).

The negative tests feed it known-bad workflows (the original attack first) and check each is
flagged. zizmor runs offline over the real workflows and must report nothing above "low".
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = ROOT / ".github" / "workflows"
WORKFLOW_PATHS = sorted(WORKFLOWS_DIR.glob("*.y*ml"))
LOCK = ROOT / "requirements" / "ci.lock"

# The environments secrets may live in; all allow deployments from `main` only (README).
ENVIRONMENTS = {"plan", "production", "connect"}
# The one environment with required reviewers: the only one where apply may update or delete.
REVIEWED_ENVIRONMENTS = {"production"}
PROGRAM = "together-reconcile"
# What a pull request may contribute to a privileged job: these folders, as data.
DATA_FOLDERS = {"accounts", "schemas"}
# Expressions that name pull-request code.
PR_REF = re.compile(
    r"github\.event\.pull_request\.head\.|github\.head_ref|refs/pull/|merge_commit_sha"
    r"|github\.event\.pull_request\.merge|github\.event\.workflow_run\.head_"
)
# Triggers under which the job gets the base branch's token and caches.
PRIVILEGED_TRIGGERS = {"pull_request_target", "workflow_run"}
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ";;", "(", ")", "!"}
SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!"}
PREFIX_COMMANDS = {"exec", "command", "env", "nohup", "time", "sudo", "xargs"}
# Commands that may name the data folder: they read it, they do not run it.
READS_DATA = {"together-reconcile", "find", "test", "["}
INSTALLERS = {"uv", "poetry", "pipx", "npm", "npx", "yarn", "pnpm", "conda", "easy_install"}


# --------------------------------------------------------------------------- the checker


def load(text: str) -> dict[str, Any]:
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    if True in document:  # YAML 1.1 reads the key `on` as the boolean true
        document["on"] = document.pop(True)
    return document


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    on = workflow.get("on") or {}
    if isinstance(on, str):
        return {on: {}}
    if isinstance(on, list):
        return {name: {} for name in on}
    return {name: (spec or {}) for name, spec in on.items()}


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def sees_secrets(job: dict[str, Any]) -> bool:
    return (
        "environment" in job
        or job.get("secrets") == "inherit"
        or any(re.search(r"\bsecrets\.(?!GITHUB_TOKEN\b)", text) for text in strings(job))
    )


def reads_secret_values(job: dict[str, Any]) -> bool:
    return job.get("secrets") == "inherit" or any(
        re.search(r"\bsecrets\.(?!GITHUB_TOKEN\b)", text) for text in strings(job)
    )


def environment_name(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    return None if environment is None else str(environment)


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(item) for item in value]


def trigger_problems(on: dict[str, Any]) -> list[str]:
    problems = []
    for name, spec in on.items():
        spec = spec if isinstance(spec, dict) else {}
        if name in {"schedule", "workflow_dispatch"}:
            continue
        if name in {"push", "pull_request_target"}:
            other = sorted(set(spec) & {"tags", "branches-ignore", "tags-ignore"})
            if as_list(spec.get("branches")) != ["main"] or other:
                problems.append(f"runs on `{name}` for refs other than main")
            continue
        problems.append(f"runs on `{name}`, which a branch can fire")
    return problems


def normal_path(path: str) -> str:
    path = path.strip()
    while path.startswith("./"):
        path = path[2:]
    return path.rstrip("/")


def data_checkout_problems(step: dict[str, Any]) -> list[str]:
    """Why a checkout of pull-request refs is more than its data folders (empty: it is not)."""
    options = step.get("with") or {}
    problems = []
    folder = normal_path(str(options.get("path", "")))
    if folder in {"", "."} or ".." in folder.split("/"):
        problems.append("into the workspace itself, not a folder of its own")
    patterns = [line.strip() for line in str(options.get("sparse-checkout", "")).splitlines()]
    patterns = [pattern for pattern in patterns if pattern]
    if not patterns:
        problems.append("whole (no sparse-checkout)")
    for pattern in patterns:
        if pattern.strip("/") not in DATA_FOLDERS or pattern.startswith("!"):
            problems.append(f"with `{pattern}`, which is not one of the data folders")
    if patterns and options.get("sparse-checkout-cone-mode") is not False:
        problems.append("in cone mode (which also checks out every top-level file)")
    if options.get("persist-credentials") is not False:
        problems.append("keeping the token (persist-credentials is not false)")
    if options.get("submodules") not in (None, False, "false"):
        problems.append("with submodules")
    return problems


def unwrap(script: str) -> Iterator[str]:
    """The script, then the text of each `$( ... )` and backquote inside it."""
    yield script
    for inner in re.findall(r"\$\(([^()]*(?:\([^()]*\)[^()]*)*)\)", script):
        yield from unwrap(inner)
    for inner in re.findall(r"`([^`]*)`", script):
        yield from unwrap(inner)


def simple_commands(script: str) -> Iterator[list[str]]:
    """Each simple command's words, keywords, prefixes and `VAR=value` assignments dropped."""
    for text in unwrap(script):
        for line in text.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            try:
                words = list(lexer)
            except ValueError:  # unbalanced quotes: judge the raw words
                words = line.split()
            command: list[str] = []
            for word in [*words, ";"]:
                if word in SHELL_OPERATORS or set(word) <= set("<>&|;()"):
                    if command:
                        yield command
                    command = []
                    continue
                if not command and (
                    word in SHELL_KEYWORDS
                    or word in PREFIX_COMMANDS
                    or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word)
                ):
                    continue
                command.append(word)


def names_folder(word: str, folder: str) -> bool:
    for part in (word, *word.split("=")[1:]):
        path = normal_path(part.strip("\"'"))
        if path == folder or path.startswith(folder + "/"):
            return True
    return False


def is_pip_install(words: list[str]) -> bool:
    name = Path(words[0]).name
    if re.fullmatch(r"pip3?(\.\d+)?", name):
        return "install" in words[1:3]
    if re.fullmatch(r"python3?(\.\d+)?", name):
        return words[1:4] == ["-m", "pip", "install"]
    return False


def pip_install_problem(words: list[str], data: set[str]) -> str | None:
    args = words[words.index("install") + 1 :]
    if any(names_folder(arg, folder) for arg in args for folder in data):
        return f"installs from the pull request's files: `{' '.join(words)}`"
    positional, index = [], 0
    while index < len(args):
        arg = args[index]
        if arg in {"-r", "--requirement", "-c", "--constraint", "--only-binary", "--no-binary"}:
            index += 2
            continue
        if not arg.startswith("-"):
            positional.append(arg)
        index += 1
    if "--require-hashes" in args and ("-r" in args or "--requirement" in args) and not positional:
        return None
    if positional == ["."] and "--no-deps" in args and "--no-build-isolation" in args:
        return None  # the checked-out project itself, its build backend from the hashed lock
    return f"installs without --require-hashes: `{' '.join(words)}`"


def job_problems(
    job_name: str, job: dict[str, Any], on: dict[str, Any], privileged_workflow: bool
) -> list[str]:
    where = f"job {job_name}"
    secrets = sees_secrets(job)
    problems: list[str] = []
    if secrets:
        problems += [f"{where} can see secrets and {problem}" for problem in trigger_problems(on)]
        environment = environment_name(job)
        if reads_secret_values(job) and environment is None:
            problems.append(f"{where} reads secrets outside an environment (repository secrets)")
        elif environment is not None and environment not in ENVIRONMENTS:
            problems.append(f"{where} uses environment `{environment}`, not one of the documented")
    if not (secrets or privileged_workflow):
        return problems

    data: set[str] = set()  # folders holding the pull request's files, once checked out
    default_dir = normal_path(
        str((job.get("defaults") or {}).get("run", {}).get("working-directory", ""))
    )
    for number, step in enumerate(job.get("steps") or [], start=1):
        label = f"{where} step {step.get('name') or number}"
        uses = str(step.get("uses", ""))
        if uses.startswith("actions/checkout@"):
            options = step.get("with") or {}
            refs = " ".join(str(options.get(key, "")) for key in ("ref", "repository"))
            if PR_REF.search(refs):
                reasons = data_checkout_problems(step)
                if reasons:
                    problems.append(f"{label} checks out pull-request code: " + "; ".join(reasons))
                else:
                    data.add(normal_path(str(options["path"])))
            elif not options.get("ref") and {"pull_request", "merge_group"} & set(on):
                problems.append(f"{label} checks out pull-request code (the event's own ref)")
            continue
        if uses.startswith("./") and any(names_folder(uses, folder) for folder in data):
            problems.append(f"{label} runs an action from the pull request's files: {uses}")
        script = step.get("run")
        if not isinstance(script, str):
            continue
        directory = normal_path(str(step.get("working-directory", default_dir)))
        in_data = any(names_folder(directory, folder) for folder in data)
        if in_data and secrets:
            problems.append(f"{label} runs inside the pull request's files while holding secrets")
        for words in simple_commands(script):
            program = Path(words[0]).name
            if is_pip_install(words):
                problem = pip_install_problem(words, data)
                if problem:
                    problems.append(f"{label} {problem}")
                elif data or in_data:
                    problems.append(f"{label} installs after the pull request's files are on disk")
                continue
            if program in INSTALLERS or re.fullmatch(r"setup\.py|install(\.sh)?", program):
                problems.append(f"{label} installs with `{' '.join(words)}`")
                continue
            if program == "cd" and any(names_folder(w, f) for w in words[1:] for f in data):
                problems.append(
                    f"{label} changes into the pull request's files: `{' '.join(words)}`"
                )
                continue
            if any(names_folder(words[0], folder) for folder in data):
                problems.append(f"{label} runs a pull-request file: `{' '.join(words)}`")
                continue
            if in_data and program not in READS_DATA:
                problems.append(f"{label} runs `{program}` inside the pull request's files")
                continue
            if program not in READS_DATA and any(
                names_folder(word, folder) for word in words[1:] for folder in data
            ):
                problems.append(f"{label} runs the pull request's files: `{' '.join(words)}`")
    return problems


def only_actions(words: list[str]) -> set[str] | None:
    """The actions an `apply` command line is limited to by `--only` (None: not limited)."""
    found: set[str] | None = None
    for index, word in enumerate(words):
        if word == "--only" and index + 1 < len(words):
            value = words[index + 1]
        elif word.startswith("--only="):
            value = word.partition("=")[2]
        else:
            continue
        actions = {part.strip().lower() for part in value.split(",") if part.strip()}
        found = actions if found is None else found & actions
    return found


def unattended_problems(job_name: str, job: dict[str, Any]) -> list[str]:
    """A job holding secrets without required reviewers may apply creates only."""
    if not sees_secrets(job) or environment_name(job) in REVIEWED_ENVIRONMENTS:
        return []
    problems = []
    for number, step in enumerate(job.get("steps") or [], start=1):
        script = step.get("run")
        if not isinstance(script, str):
            continue
        for words in simple_commands(script):
            if Path(words[0]).name != PROGRAM or "apply" not in words[1:]:
                continue
            if only_actions(words) != {"create"}:
                problems.append(
                    f"job {job_name} step {step.get('name') or number} applies more than creates"
                    f" without required reviewers (environment `{environment_name(job)}`):"
                    f" `{' '.join(words)}` needs `--only create`"
                )
    return problems


def workflow_problems(workflow: dict[str, Any]) -> list[str]:
    on = triggers(workflow)
    privileged = bool(PRIVILEGED_TRIGGERS & set(on))
    problems = []
    if "secrets." in " ".join(strings({k: v for k, v in workflow.items() if k != "jobs"})):
        problems.append("secrets referenced at workflow level (every job sees them)")
    for job_name, job in (workflow.get("jobs") or {}).items():
        problems += job_problems(str(job_name), job, on, privileged)
        problems += unattended_problems(str(job_name), job)
    return problems


# --------------------------------------------------------------------------- the real workflows


@pytest.mark.parametrize("path", WORKFLOW_PATHS, ids=[path.name for path in WORKFLOW_PATHS])
def test_no_job_runs_pull_request_code_with_a_secret(path: Path) -> None:
    assert workflow_problems(load(path.read_text("utf-8"))) == []


def test_the_checker_sees_which_jobs_hold_secrets() -> None:
    holding = {
        (path.name, name)
        for path in WORKFLOW_PATHS
        for name, job in load(path.read_text("utf-8"))["jobs"].items()
        if sees_secrets(job)
    }
    assert holding == {
        ("plan.yml", "plan"),
        ("apply.yml", "apply"),
        ("apply.yml", "connect"),
        ("drift.yml", "drift"),
    }
    environments = {
        (path.name, name): environment_name(job)
        for path in WORKFLOW_PATHS
        for name, job in load(path.read_text("utf-8"))["jobs"].items()
        if "environment" in job
    }
    assert environments == {
        ("plan.yml", "plan"): "plan",
        ("apply.yml", "apply"): "production",
        ("apply.yml", "connect"): "connect",
        ("drift.yml", "drift"): "plan",
    }


def test_the_unattended_connect_job_only_creates() -> None:
    """apply.yml's `connect` job runs without a reviewer (dispatched after a late connect, and
    hourly): each apply it runs is limited to creates, and it never applies a saved plan."""
    apply = load((WORKFLOWS_DIR / "apply.yml").read_text("utf-8"))
    connect = apply["jobs"]["connect"]
    commands = [
        words
        for step in connect["steps"]
        for words in simple_commands(step.get("run", ""))
        if words[0] == PROGRAM and "apply" in words
    ]
    assert [" ".join(words) for words in commands] == [
        f"{PROGRAM} apply --account $ACCOUNT --only create --yes --verify",
        f"{PROGRAM} apply --only create --yes --verify",
    ]
    assert unattended_problems("connect", connect) == []
    # the reviewed job applies the saved plan, in the one environment with reviewers
    assert environment_name(apply["jobs"]["apply"]) in REVIEWED_ENVIRONMENTS
    assert environment_name(connect) not in REVIEWED_ENVIRONMENTS


def test_ci_tests_pull_request_code_without_any_secret() -> None:
    ci = load((WORKFLOWS_DIR / "ci.yml").read_text("utf-8"))
    assert "pull_request" in triggers(ci)
    assert not any(sees_secrets(job) for job in ci["jobs"].values())
    text = " ".join(strings(ci))  # every value, comments aside
    assert "secrets." not in text and "vars." not in text


def test_the_pull_request_plan_takes_only_data_from_the_pull_request() -> None:
    plan = load((WORKFLOWS_DIR / "plan.yml").read_text("utf-8"))
    assert triggers(plan) == {
        "pull_request_target": {"branches": ["main"], "paths": ["accounts/**", "schemas/**"]}
    }
    for name in ("validate", "plan"):
        steps = plan["jobs"][name]["steps"]
        checkouts = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@")]
        main_code, data = checkouts
        assert "ref" not in main_code.get("with", {})  # the base branch: main
        assert data["with"]["ref"] == "${{ github.event.pull_request.head.sha }}"
        assert data["with"]["path"] == "pr"
        assert data["with"]["sparse-checkout"].split() == ["/accounts/", "/schemas/"]
        assert data_checkout_problems(data) == []
        install = next(i for i, s in enumerate(steps) if s.get("name") == "Install")
        assert install < steps.index(data)  # nothing is installed once PR files are on disk
        guard = next(s for s in steps if s.get("name") == "Refuse symbolic links")
        assert steps.index(data) < steps.index(guard)
        assert "find pr -type l" in guard["run"]
    validate = plan["jobs"]["validate"]
    assert not sees_secrets(validate)
    assert validate["permissions"] == {"contents": "read"}
    runs = {s["name"]: s for s in validate["steps"] if "run" in s}
    assert runs["Validate account files"]["working-directory"] == "pr"  # paths: accounts/x.yaml
    assert runs["Validate account files"]["run"] == "together-reconcile validate"


@pytest.mark.parametrize("path", WORKFLOW_PATHS, ids=[path.name for path in WORKFLOW_PATHS])
def test_secret_holding_jobs_install_only_the_hashed_lock(path: Path) -> None:
    for job in load(path.read_text("utf-8"))["jobs"].values():
        if not sees_secrets(job):
            continue
        installs = [
            words
            for step in job["steps"]
            for words in simple_commands(step.get("run", ""))
            if is_pip_install(words)
        ]
        assert [" ".join(words) for words in installs] == [
            "python -m pip install --require-hashes --only-binary :all: -r requirements/ci.lock",
            "python -m pip install --no-deps --no-build-isolation .",
        ]
        setup = next(s for s in job["steps"] if "setup-python@" in s.get("uses", ""))
        assert "cache" not in setup["with"]  # no cache a pull request's run could have written


# --------------------------------------------------------------------------- known-bad workflows

THE_ATTACK = """
on:
  pull_request:
    paths: ["accounts/**"]
permissions:
  contents: read
jobs:
  plan:
    if: github.event.pull_request.head.repo.full_name == github.repository
    runs-on: ubuntu-24.04
    env:
      TOGETHER_SECRET_KEYS: ${{ secrets.TOGETHER_SECRET_KEYS }}
      TOGETHER_STATE_URL: ${{ secrets.TOGETHER_STATE_URL }}
    steps:
      - uses: actions/checkout@v4.2.2
        with:
          persist-credentials: false
      - run: python -m pip install .
      - run: together-reconcile plan --format markdown --out plan.json > plan.md
"""


def test_the_original_attack_is_flagged() -> None:
    """The job that leaked the secrets: PR code, installed and run, with repository secrets."""
    assert workflow_problems(load(THE_ATTACK)) == [
        "job plan can see secrets and runs on `pull_request`, which a branch can fire",
        "job plan reads secrets outside an environment (repository secrets)",
        "job plan step 1 checks out pull-request code (the event's own ref)",
        "job plan step 2 installs without --require-hashes: `python -m pip install .`",
    ]


def target_workflow(steps: str, *, job_extra: str = "    environment: plan\n") -> str:
    return (
        "on:\n"
        "  pull_request_target:\n"
        "    branches: [main]\n"
        "jobs:\n"
        "  plan:\n"
        "    runs-on: ubuntu-24.04\n"
        f"{job_extra}"
        "    env:\n"
        "      KEYS: ${{ secrets.TOGETHER_SECRET_KEYS }}\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4.2.2\n"
        "        with:\n"
        "          persist-credentials: false\n"
        "      - name: Install\n"
        "        run: |\n"
        "          python -m pip install --require-hashes -r requirements/ci.lock\n"
        "          python -m pip install --no-deps --no-build-isolation .\n"
        f"{steps}"
    )


DATA_CHECKOUT = (
    "      - name: Data\n"
    "        uses: actions/checkout@v4.2.2\n"
    "        with:\n"
    "          ref: ${{ github.event.pull_request.head.sha }}\n"
    "          path: pr\n"
    "          sparse-checkout: |\n"
    "            /accounts/\n"
    "            /schemas/\n"
    "          sparse-checkout-cone-mode: false\n"
    "          persist-credentials: false\n"
)


def test_a_good_pull_request_target_plan_passes() -> None:
    steps = DATA_CHECKOUT + (
        "      - name: Plan\n"
        "        run: |\n"
        '          if [ -n "$(find pr -type l -print -quit)" ]; then exit 1; fi\n'
        "          together-reconcile --accounts-dir pr/accounts plan > plan.md\n"
    )
    assert workflow_problems(load(target_workflow(steps))) == []


def test_pull_request_code_in_a_job_with_secrets_is_flagged() -> None:
    """pull_request_target with the PR's head checked out over main's code and installed."""
    steps = (
        "      - uses: actions/checkout@v4.2.2\n"
        "        with:\n"
        "          ref: ${{ github.event.pull_request.head.sha }}\n"
        "          persist-credentials: false\n"
        "      - name: Build\n"
        "        run: python -m pip install --no-deps --no-build-isolation .\n"
    )
    assert workflow_problems(load(target_workflow(steps))) == [
        "job plan step 3 checks out pull-request code: into the workspace itself, not a folder"
        " of its own; whole (no sparse-checkout)",
    ]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("${{ github.head_ref }}", "checks out pull-request code"),
        ("refs/pull/${{ github.event.number }}/merge", "checks out pull-request code"),
        ("${{ github.event.pull_request.merge_commit_sha }}", "checks out pull-request code"),
        ("${{ github.event.pull_request.head.ref }}", "checks out pull-request code"),
    ],
)
def test_every_spelling_of_a_pull_request_ref_is_flagged(ref: str, expected: str) -> None:
    steps = (
        "      - uses: actions/checkout@v4.2.2\n"
        "        with:\n"
        f"          ref: {ref}\n"
        "          persist-credentials: false\n"
    )
    (problem,) = workflow_problems(load(target_workflow(steps)))
    assert expected in problem


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("          sparse-checkout-cone-mode: false\n", ""), "in cone mode"),
        (("            /schemas/\n", "            /schemas/\n            /src/\n"), "`/src/`"),
        (("            /accounts/\n", "            /\n"), "`/`"),
        (("          path: pr\n", ""), "into the workspace itself"),
        (("          path: pr\n", "          path: .\n"), "into the workspace itself"),
        (("          persist-credentials: false\n          ", "          "), "keeping the token"),
    ],
)
def test_a_data_checkout_that_is_more_than_data_is_flagged(
    change: tuple[str, str], expected: str
) -> None:
    old, new = change
    checkout = DATA_CHECKOUT.replace(old, new, 1) if old in DATA_CHECKOUT else DATA_CHECKOUT
    if "persist-credentials" in old:
        checkout = DATA_CHECKOUT.rsplit("          persist-credentials: false\n", 1)[0]
    assert checkout != DATA_CHECKOUT
    problems = workflow_problems(load(target_workflow(checkout)))
    assert len(problems) == 1 and "checks out pull-request code" in problems[0], problems
    assert expected in problems[0]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("        run: bash pr/accounts/evil.sh\n", "runs the pull request's files"),
        ("        run: ./pr/accounts/evil\n", "runs a pull-request file"),
        ("        run: source pr/accounts/env.sh\n", "runs the pull request's files"),
        ("        run: python pr/schemas/x.py\n", "runs the pull request's files"),
        ("        run: cd pr && make\n", "changes into the pull request's files"),
        ("        run: make -C pr\n", "runs the pull request's files"),
        ('        run: echo "$(sh pr/accounts/x)"\n', "runs the pull request's files"),
        ("        run: python -m pip install ./pr\n", "installs from the pull request's files"),
        (
            "        run: python -m pip install --require-hashes -r pr/requirements.txt\n",
            "installs from the pull request's files",
        ),
        (
            "        run: python -m pip install --no-deps --no-build-isolation .\n",
            "installs after the pull request's files are on disk",
        ),
        ("        run: uv sync\n", "installs with `uv sync`"),
        ("        working-directory: pr\n        run: together-reconcile plan\n", "runs inside"),
        ("        uses: ./pr/accounts\n", "runs an action from the pull request's files"),
    ],
)
def test_running_the_pull_requests_files_with_secrets_is_flagged(step: str, expected: str) -> None:
    steps = DATA_CHECKOUT + "      - name: Evil\n" + step
    problems = workflow_problems(load(target_workflow(steps)))
    assert len(problems) == 1, problems
    assert problems[0].startswith("job plan step Evil ")
    assert expected in problems[0]


def test_without_secrets_only_the_cli_may_run_inside_the_data_folder() -> None:
    steps = DATA_CHECKOUT + (
        "      - name: Validate\n"
        "        working-directory: pr\n"
        "        run: together-reconcile validate\n"
        "      - name: Evil\n"
        "        working-directory: pr\n"
        "        run: make\n"
    )
    workflow = load(target_workflow(steps, job_extra=""))
    workflow["jobs"]["plan"].pop("env")
    assert workflow_problems(workflow) == [
        "job plan step Evil runs `make` inside the pull request's files"
    ]


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        ("pull_request", "runs on `pull_request`, which a branch can fire"),
        ("pull_request_target", "runs on `pull_request_target` for refs other than main"),
        ("push", "runs on `push` for refs other than main"),
        ("{push: {branches: [main, dev]}}", "runs on `push` for refs other than main"),
        ("{push: {branches: [main], tags: ['v*']}}", "runs on `push` for refs other than main"),
        ("{push: {branches-ignore: [dev]}}", "runs on `push` for refs other than main"),
        ("workflow_run", "runs on `workflow_run`, which a branch can fire"),
        ("merge_group", "runs on `merge_group`, which a branch can fire"),
        ("[schedule, issue_comment]", "runs on `issue_comment`, which a branch can fire"),
    ],
)
def test_a_job_with_secrets_on_a_trigger_a_branch_can_fire_is_flagged(
    on: str, expected: str
) -> None:
    workflow = load(
        f"on: {on}\n"
        "jobs:\n"
        "  apply:\n"
        "    runs-on: ubuntu-24.04\n"
        "    environment: production\n"
        "    steps:\n"
        "      - run: together-reconcile apply --yes\n"
    )
    assert f"job apply can see secrets and {expected}" in workflow_problems(workflow)


def test_allowed_triggers_for_a_job_with_secrets() -> None:
    workflow = load(
        "on:\n"
        "  push: {branches: [main], paths: ['accounts/**']}\n"
        "  schedule: [{cron: '0 * * * *'}]\n"
        "  workflow_dispatch: {}\n"
        "jobs:\n"
        "  apply:\n"
        "    runs-on: ubuntu-24.04\n"
        "    environment: {name: production}\n"
        "    steps:\n"
        "      - run: together-reconcile apply --yes\n"
    )
    assert workflow_problems(workflow) == []


def test_repository_secrets_and_unknown_environments_are_flagged() -> None:
    base = (
        "on: {schedule: [{cron: '0 3 * * *'}]}\n"
        "jobs:\n"
        "  drift:\n"
        "    runs-on: ubuntu-24.04\n"
        "EXTRA"
        "    steps:\n"
        "      - run: together-reconcile plan\n"
        "        env:\n"
        "          K: ${{ secrets.TOGETHER_SECRET_KEYS }}\n"
    )
    assert workflow_problems(load(base.replace("EXTRA", ""))) == [
        "job drift reads secrets outside an environment (repository secrets)"
    ]
    assert workflow_problems(load(base.replace("EXTRA", "    environment: staging\n"))) == [
        "job drift uses environment `staging`, not one of the documented"
    ]
    inherit = load(
        "on: pull_request\njobs:\n  call:\n    uses: ./.github/workflows/x.yml\n"
        "    secrets: inherit\n"
    )
    assert workflow_problems(inherit) == [
        "job call can see secrets and runs on `pull_request`, which a branch can fire",
        "job call reads secrets outside an environment (repository secrets)",
    ]
    top_level = load(
        "on: workflow_dispatch\nenv:\n  K: ${{ secrets.K }}\njobs:\n  x:\n    runs-on: u\n"
        "    steps: [{run: echo}]\n"
    )
    assert workflow_problems(top_level) == [
        "secrets referenced at workflow level (every job sees them)"
    ]


def unattended_workflow(environment: str, script: str) -> dict[str, Any]:
    return load(
        "on:\n"
        "  schedule: [{cron: '41 * * * *'}]\n"
        "  workflow_dispatch: {inputs: {account: {type: string}}}\n"
        "jobs:\n"
        "  connect:\n"
        "    runs-on: ubuntu-24.04\n"
        f"    environment: {environment}\n"
        "    env:\n"
        "      K: ${{ secrets.TOGETHER_SECRET_KEYS }}\n"
        "    steps:\n"
        "      - name: Apply\n"
        "        run: |\n" + "".join(f"          {line}\n" for line in script.splitlines())
    )


@pytest.mark.parametrize(
    "command",
    [
        'together-reconcile apply --account "$ACCOUNT" --yes --verify',  # the old dispatched run
        "together-reconcile apply plan.json --yes",
        "together-reconcile apply --only create,update --yes",
        "together-reconcile apply --only=delete --yes",
        "together-reconcile --accounts-dir accounts apply --yes",
        '[ -n "$A" ] && together-reconcile apply --yes --only update',
    ],
)
def test_an_unattended_job_that_could_update_or_delete_is_flagged(command: str) -> None:
    for environment in ("connect", "plan"):
        problems = workflow_problems(unattended_workflow(environment, command))
        assert len(problems) == 1, problems
        assert problems[0].startswith(
            "job connect step Apply applies more than creates without required reviewers"
            f" (environment `{environment}`): `together-reconcile "
        )
        assert problems[0].endswith("` needs `--only create`")


@pytest.mark.parametrize(
    "command",
    [
        'together-reconcile apply --account "$ACCOUNT" --only create --yes --verify',
        "together-reconcile apply --only=create --yes",
        "together-reconcile apply --only CREATE --yes",
        "together-reconcile plan --format markdown --out plan.json",
        'if [ -n "$A" ]; then\n  together-reconcile apply --only create --yes\nfi',
    ],
)
def test_an_unattended_job_that_only_creates_passes(command: str) -> None:
    assert workflow_problems(unattended_workflow("connect", command)) == []


def test_the_real_connect_job_without_only_create_is_flagged() -> None:
    """The attack on the split: the unattended job given back the old dispatched command."""
    text = (WORKFLOWS_DIR / "apply.yml").read_text("utf-8")
    bad = text.replace('--account "$ACCOUNT" --only create --yes', '--account "$ACCOUNT" --yes')
    assert bad != text
    assert workflow_problems(load(bad)) == [
        "job connect step Apply applies more than creates without required reviewers"
        " (environment `connect`): `together-reconcile apply --account $ACCOUNT --yes --verify`"
        " needs `--only create`"
    ]
    # moving the reviewed job's saved-plan apply into `connect` is flagged too
    moved = text.replace("environment: production", "environment: connect")
    assert workflow_problems(load(moved)) == [
        "job apply step Apply applies more than creates without required reviewers"
        " (environment `connect`): `together-reconcile apply plan.json --yes --max-deletes"
        " $MAX_DELETES` needs `--only create`"
    ]


def test_a_reviewed_job_may_apply_anything() -> None:
    workflow = unattended_workflow("production", "together-reconcile apply plan.json --yes")
    assert workflow_problems(workflow) == []


def test_unhashed_installs_in_a_job_with_secrets_are_flagged() -> None:
    workflow = load(
        "on: workflow_dispatch\n"
        "jobs:\n"
        "  apply:\n"
        "    runs-on: ubuntu-24.04\n"
        "    environment: production\n"
        "    steps:\n"
        "      - run: |\n"
        "          pip install -r requirements/ci.lock\n"
        "          python -m pip install --no-deps .\n"
        "          pip3 install --require-hashes -r requirements/ci.lock extra-package\n"
    )
    assert workflow_problems(workflow) == [
        "job apply step 1 installs without --require-hashes: `pip install -r requirements/ci.lock`",
        "job apply step 1 installs without --require-hashes: `python -m pip install --no-deps .`",
        "job apply step 1 installs without --require-hashes: "
        "`pip3 install --require-hashes -r requirements/ci.lock extra-package`",
    ]


# --------------------------------------------------------------------------- the lock file


def lock_entries() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) from requirements/ci.lock."""
    entries: dict[str, tuple[str, int]] = {}
    current = ""
    for line in LOCK.read_text("utf-8").splitlines():
        pinned = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
        if pinned:
            current = str(canonicalize_name(pinned.group(1)))
            entries[current] = (pinned.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, count = entries[current]
            entries[current] = (version, count + 1)
    return entries


def test_the_lock_pins_every_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    entries = lock_entries()
    assert entries and all(count >= 1 for _, count in entries.values())
    for spec in project["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = str(canonicalize_name(requirement.name))
        assert name in entries, f"{name} is not in requirements/ci.lock: run `make lock`"
        assert requirement.specifier.contains(entries[name][0]), (
            f"{name}=={entries[name][0]} does not satisfy {spec}: run `make lock`"
        )
    backend = Requirement(project["build-system"]["requires"][0])
    assert backend.specifier.contains(entries[str(canonicalize_name(backend.name))][0])
    assert "pip-compile" in LOCK.read_text("utf-8") and "--generate-hashes" in LOCK.read_text(
        "utf-8"
    )


# --------------------------------------------------------------------------- zizmor


def zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "zizmor"
    if not binary.exists():
        pytest.fail("zizmor is not installed: run `make test`, or pip install -e '.[dev]'")
    return subprocess.run(
        [
            str(binary),
            "--offline",
            "--no-progress",
            "--color=never",
            "--persona=auditor",
            "--min-severity=medium",
            *map(str, paths),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_zizmor_reports_nothing_above_low() -> None:
    result = zizmor(WORKFLOWS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


def test_zizmor_does_report_the_original_workflows_problems(tmp_path: Path) -> None:
    bad = tmp_path / "drift.yml"
    bad.write_text(
        "on: {schedule: [{cron: '0 3 * * *'}]}\n"
        "permissions:\n"
        "  contents: read\n"
        "  issues: write\n"
        "jobs:\n"
        "  drift:\n"
        "    runs-on: ubuntu-24.04\n"
        "    services:\n"
        "      postgres:\n"
        "        image: postgres:15\n"
        "    env:\n"
        "      K: ${{ secrets.TOGETHER_SECRET_KEYS }}\n"
        "    steps:\n"
        "      - run: echo\n",
        encoding="utf-8",
    )
    result = zizmor(bad)
    assert result.returncode != 0
    for audit in ("secrets-outside-env", "excessive-permissions", "unpinned-images"):
        assert audit in result.stdout, result.stdout
