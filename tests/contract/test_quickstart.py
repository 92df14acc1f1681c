"""SPEC "Precise rules" — Quickstart: the README's two commands are `make demo` and `make test`,
each working on a fresh clone with nothing installed by hand. (`make test` runs this suite, so
it is checked by reading the Makefile, not by running it.)"""

from __future__ import annotations

import re

from tests.contract.conftest import REPO, run_cli


def quickstart_block() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line.strip() for line in block.strip().splitlines()]


def makefile_target(name: str) -> tuple[list[str], list[str]]:
    text = (REPO / "Makefile").read_text()
    match = re.search(rf"^{name}:(.*)\n((?:\t.*\n)*)", text, re.M)
    assert match, f"no {name} target"
    return match.group(1).split(), [line.strip() for line in match.group(2).splitlines()]


def test_quickstart_readme_commands_are_make_demo_and_make_test() -> None:
    assert quickstart_block() == ["make demo", "make test"]


def test_quickstart_make_targets_build_the_venv_by_themselves() -> None:
    text = (REPO / "Makefile").read_text()
    stamp_deps, stamp_recipe = makefile_target(r"\$\(STAMP\)")
    assert "pyproject.toml" in stamp_deps
    assert any("-m venv" in line for line in stamp_recipe)
    assert any("pip install" in line and ".[dev]" in line for line in stamp_recipe)
    demo_deps, demo_recipe = makefile_target("demo")
    assert "$(STAMP)" in demo_deps
    assert demo_recipe == ["$(BIN)/together-reconcile demo"]
    test_deps, _ = makefile_target("test")
    for step in ("lint", "typecheck", "schema-check", "pytest"):
        assert step in test_deps
        deps, _ = makefile_target(step)
        assert "$(STAMP)" in deps, step
    assert "ruff" in text and "mypy" in text


def test_quickstart_demo_runs_the_whole_loop_and_exits_0(tmp_path: object) -> None:
    done = run_cli("demo", cwd=REPO, timeout=120)
    assert done.code == 0, done.output[-2000:]
    for step in ("validate", "plan", "apply"):
        assert step in done.stdout.lower()
    assert "final-sale" in done.stdout
