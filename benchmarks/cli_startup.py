"""How long does a check wait for `together-reconcile validate FILE`? Goal: <= 1.5x yamllint.

Every pre-commit hook and pull-request check starts the command line for one or two files, so
its start-up is what people wait for. This times whole processes, alternating ours and the
baseline so that both see the same machine load, and prints the median of each:

- `together-reconcile validate FILE` against `yamllint -d relaxed FILE` (the same file; the
  yardstick the issue names: a YAML linter that only parses and lints);
- `together-reconcile --help` against the same yamllint run (for information; no goal).

Run:
    .venv/bin/python benchmarks/cli_startup.py [PAIRS]    (default 21 pairs, at least 15)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from installed_bytecode import compile_package

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GOAL = 1.5
ACCOUNT_FILE = "accounts/acme.yaml"


def program(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        sys.exit(f"{name} not found: install the dev extra (pip install -e '.[dev]')")
    return on_path


def elapsed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return seconds


def median_pair(ours: list[str], theirs: list[str], pairs: int) -> tuple[float, float]:
    elapsed(ours), elapsed(theirs)  # warm the file cache and the bytecode
    mine, baseline = [], []
    for index in range(pairs):
        # Alternate which goes first, so neither always runs right after the other.
        if index % 2:
            baseline.append(elapsed(theirs))
            mine.append(elapsed(ours))
        else:
            mine.append(elapsed(ours))
            baseline.append(elapsed(theirs))
    return statistics.median(mine), statistics.median(baseline)


def main() -> None:
    pairs = max(15, int(sys.argv[1]) if len(sys.argv) > 1 else 21)
    print(compile_package())
    ours = program("together-reconcile")
    yamllint = [program("yamllint"), "-d", "relaxed", ACCOUNT_FILE]
    print(f"{pairs} alternating pairs each, medians (whole processes, this machine)")
    validate, baseline = median_pair([ours, "validate", ACCOUNT_FILE], yamllint, pairs)
    ratio = validate / baseline
    verdict = "met" if ratio <= GOAL else "MISSED"
    print(f"validate {ACCOUNT_FILE}: {validate * 1000:6.0f} ms")
    print(f"yamllint -d relaxed (baseline): {baseline * 1000:6.0f} ms")
    print(f"ratio: {ratio:.2f}x (goal <= {GOAL}x: {verdict})")
    helped, baseline = median_pair([ours, "--help"], yamllint, pairs)
    print(f"--help: {helped * 1000:6.0f} ms vs yamllint {baseline * 1000:.0f} ms")
    print(f"ratio: {helped / baseline:.2f}x (no goal)")


if __name__ == "__main__":
    main()
