"""How much slower is `validate` than just parsing the YAML? Goal: at most 2x.

Generates 10,000 account files in a temporary folder (most with the two required keys, every
fifth with all the optional keys, as real accounts look), then times in the same run:

- baseline: open, read and `yaml.load(..., CSafeLoader)` each file (no checks at all);
- validate: `config.validate_paths([folder], folder)` in-process (every check, cross-file too).

Each is run a few times; the best time of each is compared. Run:
    .venv/bin/python benchmarks/validate_scale.py [COUNT]

On a shared machine the times move by 10-20 % from run to run. `--instructions` counts the
instructions each part executes instead (valgrind's callgrind, on 2,000 files): the same count
on every run, whatever else the machine does. The ratio of instructions is lower than the ratio
of times (validate's Python objects cost more memory traffic per instruction than the C
parser): it is a separate run to compare two versions of the code, not the goal's figure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from together_reconcile.config import SCHEMA_COMMENT, validate_paths

ROUNDS = 3


def account_text(index: int) -> str:
    name = f"shop-{index:05d}"
    text = (
        f"{SCHEMA_COMMENT}\nshopify_store: {name}.myshopify.com\n"
        f"gorgias_account: {name}.gorgias.com\n"
    )
    if index % 5 == 0:
        text += (
            "enabled: true\nlookback_days: 30\nwidget:\n  context: customer\n  order: 2\n"
            "  title: Final-sale orders\nnotes: Asked for the customer sidebar.\n"
        )
    return text


def generate(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = folder / f"shop-{index:05d}.yaml"
        path.write_text(account_text(index), encoding="utf-8")
        paths.append(path)
    return paths


def best_of(rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def bare_load(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as handle:
            yaml.load(handle.read(), Loader=yaml.CSafeLoader)


def instructions(folder: Path, part: str) -> int:
    """Instructions a fresh interpreter executes for `part` (none, baseline, validate) after
    the same warm-up, under callgrind."""
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}/callgrind.out",
                sys.executable,
                __file__,
                "--part",
                part,
                str(folder),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        sys.exit(f"callgrind printed no count: {done.stderr[-500:]}")
    return int(found.group(1))


PARTS = ("none", "baseline", "validate")


def run_part(part: str, folder: Path) -> None:
    """What each callgrind run executes: the warm-up, then one part."""
    if part not in PARTS:
        sys.exit(f"--part must be one of {', '.join(PARTS)}, not {part!r}")
    paths = sorted(folder.iterdir())
    report = validate_paths([folder], folder)
    if not report.ok:  # the count would be of reporting problems, not of a validate
        sys.exit(f"the generated files are not valid: {report.summary}")
    bare_load(paths)
    if part == "baseline":
        bare_load(paths)
    elif part == "validate":
        validate_paths([folder], folder)


def count_instructions(count: int) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        generate(folder, count)
        warm_up = instructions(folder, "none")
        baseline = instructions(folder, "baseline") - warm_up
        validate = instructions(folder, "validate") - warm_up
    print(f"files:                         {count} (instructions counted by callgrind)")
    print(f"baseline yaml.load(CSafeLoader): {baseline / count:,.0f} instructions/file")
    print(f"validate_paths (in-process):     {validate / count:,.0f} instructions/file")
    print(f"ratio validate / baseline:       {validate / baseline:.2f} (instructions)")


def main() -> None:
    if sys.argv[1:2] == ["--part"]:
        run_part(sys.argv[2], Path(sys.argv[3]))
        return
    if sys.argv[1:2] == ["--instructions"]:
        count_instructions(int(sys.argv[2]) if len(sys.argv) > 2 else 2_000)
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        paths = generate(folder, count)
        report = validate_paths([folder], folder)  # warm up; also proves the files are valid
        assert report.ok and report.files == count, report.summary
        baseline = best_of(ROUNDS, lambda: bare_load(paths))
        validate = best_of(ROUNDS, lambda: validate_paths([folder], folder))
    print(f"files:                         {count}")
    print(
        f"baseline yaml.load(CSafeLoader): {baseline:.3f} s ({baseline / count * 1e6:.1f} µs/file)"
    )
    print(
        f"validate_paths (in-process):     {validate:.3f} s ({validate / count * 1e6:.1f} µs/file)"
    )
    print(f"ratio validate / baseline:       {validate / baseline:.2f} (goal <= 2.0)")


if __name__ == "__main__":
    main()
