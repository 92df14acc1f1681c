"""How much slower is `validate` than just parsing the YAML? Goal: at most 2x.

Generates 10,000 account files in a temporary folder (most with the two required keys, every
fifth with all the optional keys, as real accounts look), then times in the same run:

- baseline: open, read and `yaml.load(..., CSafeLoader)` each file (no checks at all);
- validate: `config.validate_paths([folder], folder)` in-process (every check, cross-file too).

Each is run a few times; the best time of each is compared. Run:
    .venv/bin/python benchmarks/validate_scale.py [COUNT]
"""

from __future__ import annotations

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


def main() -> None:
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
