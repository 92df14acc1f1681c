"""`make mutation`: mutation testing of the core with mutmut 3, one score per module.

The modules and the fast tests come from `[tool.mutmut]` in pyproject.toml; mutmut first runs
those tests once to learn which tests reach which function, then runs each mutant against only
those tests. The handler module is large, so only its body reading (`read_body` and its two
helpers), `parse_event` and `plausible_email` are mutated and scored (one line each).

    .venv/bin/python tools/mutation.py                # all groups, 2 workers, floor 90 %
    .venv/bin/python tools/mutation.py --only secrets.py --max-children 1
    .venv/bin/python tools/mutation.py --report       # scores of the last run, no new run

Exit status: 0 when every group scored is at or above the floor, 1 otherwise, 2 when mutmut
itself failed. Not part of `make test`: a full run takes tens of minutes on two cores.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = "together_reconcile.events.app"
# report line -> (mutated file, mutant-name patterns)
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "reconcile/plan.py": (
        "src/together_reconcile/reconcile/plan.py",
        ("together_reconcile.reconcile.plan.*",),
    ),
    "secrets.py": ("src/together_reconcile/secrets.py", ("together_reconcile.secrets.*",)),
    "reconcile/desired.py": (
        "src/together_reconcile/reconcile/desired.py",
        ("together_reconcile.reconcile.desired.*",),
    ),
    "events/app.py read_body": (
        "src/together_reconcile/events/app.py",
        (
            f"{APP}.x_read_body__mutmut_*",
            f"{APP}.x__read_up_to__mutmut_*",
            f"{APP}.x__too_large__mutmut_*",
        ),
    ),
    "events/app.py parse_event": (
        "src/together_reconcile/events/app.py",
        (f"{APP}.x_parse_event__mutmut_*",),
    ),
    "events/app.py plausible_email": (
        "src/together_reconcile/events/app.py",
        (f"{APP}.x_plausible_email__mutmut_*",),
    ),
}
KILLED = {1, 3, 36, 37, -24, 24, 152, 255}  # failed test, pytest error, timeouts, type check
STATUS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}


def mutmut_command() -> list[str]:
    candidate = Path(sys.executable).parent / "mutmut"
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("mutmut")
    if found is None:
        sys.exit("mutmut is not installed: run `make mutation` (it installs the dev extra)")
    return [found]


def run_mutmut(patterns: list[str], max_children: int, keep: bool) -> None:
    if not keep:
        # mutmut reuses files already copied into mutants/: start from the current sources
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    command = [*mutmut_command(), "run", "--max-children", str(max_children), *patterns]
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, cwd=ROOT, check=False)
    if done.returncode != 0:
        print(f"mutmut run failed (exit {done.returncode})", file=sys.stderr)
        sys.exit(2)


def results(path: str) -> dict[str, int | None]:
    meta = ROOT / "mutants" / (path + ".meta")
    if not meta.exists():
        return {}
    data: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return data


TIMEOUTS = {36, -24, 24, 152, 255}


def not_killed_note(left: Counter[str], codes: dict[str, int | None]) -> str:
    """What was not killed; timeouts count as killed (as mutmut counts them) but are named,
    since on a loaded machine an equivalent mutant can run out of CPU time."""
    parts = [f"{count} {status}" for status, count in left.items()]
    timeouts = sum(1 for code in codes.values() if code in TIMEOUTS)
    if timeouts:
        parts.append(f"({timeouts} killed by timeout)")
    return ", ".join(parts)


def report(groups: list[str], floor: float) -> bool:
    ok = True
    rows = []
    survivors: dict[str, list[str]] = {}
    for group in groups:
        path, patterns = GROUPS[group]
        codes = {
            name: code
            for name, code in results(path).items()
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
        }
        if not codes:
            rows.append((group, 0, 0, None, "no results: run without --report first"))
            ok = False
            continue
        killed = sum(1 for code in codes.values() if code in KILLED)
        left = Counter(
            STATUS.get(code, "suspicious") for code in codes.values() if code not in KILLED
        )
        score = 100.0 * killed / len(codes)
        ok &= score >= floor
        rows.append((group, killed, len(codes), score, not_killed_note(left, codes)))
        survivors[group] = sorted(name for name, code in codes.items() if code not in KILLED)
    print()
    print(f"{'module':34} {'killed':>7} {'mutants':>8} {'score':>7}  not killed")
    for group, killed, total, score, note in rows:
        shown = "   -   " if score is None else f"{score:6.1f}%"
        print(f"{group:34} {killed:7d} {total:8d} {shown}  {note}")
    for group, names in survivors.items():
        if names:
            print(
                f"\n{group}: not killed ({len(names)}); see each with `.venv/bin/mutmut show NAME`"
            )
            for name in names:
                print(f"  {name}")
    verdict = "every module" if ok else "NOT every module"
    print(f"\n{verdict} at or above {floor:g} %")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(GROUPS), help="repeatable")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--floor", type=float, default=90.0)
    parser.add_argument("--report", action="store_true", help="only print the last run's scores")
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ from the last run")
    args = parser.parse_args()
    groups = args.only or list(GROUPS)
    if not args.report:
        patterns = [pattern for group in groups for pattern in GROUPS[group][1]]
        run_mutmut(patterns, args.max_children, args.keep)
    sys.exit(0 if report(groups, args.floor) else 1)


if __name__ == "__main__":
    main()
