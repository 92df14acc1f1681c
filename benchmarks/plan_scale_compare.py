"""`plan_scale.py` here and at another revision, alternately on this machine: the CLI's ratio.

Issue 11's goal for the CLI `plan --json` over 1,000 in-sync accounts at 50 ms (<= 1.5 s) was
set on a machine where the code of that time took 2.2-2.8 s. Seconds depend on the machine;
the ratio to that same code, timed here in the same run, does not (much). This runs
`benchmarks/plan_scale.py` of both trees (each seeds its own sandbox and store with its own
code; the other revision is checked out in a temporary git worktree, its bytecode compiled),
alternating which goes first, and prints each CLI time, the medians and the ratio, with the
goal scaled to this machine: 1.5 s / 2.8 s (the slowest "today") and 1.5 s / 2.2 s (the
fastest; the stricter reading of "<= 1.5 s" is that even it must get there).

Run: .venv/bin/python benchmarks/plan_scale_compare.py [--against b4a84f7] [--rounds 3]
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from installed_bytecode import compile_package

ROOT = Path(__file__).resolve().parents[1]
ISSUE_GOAL_S = 1.5
ISSUE_TODAY_S = (2.2, 2.8)  # the CLI at the issue's revision, on the issue's machine
CLI_LINE = re.compile(
    r"CLI `plan --json` \(subprocess, all included\)(?:, median of \d+)?:\s+([0-9.]+) s"
)


def cli_seconds(tree: Path) -> float:
    """One run of `tree`'s plan_scale.py (its own code on PYTHONPATH); the CLI's seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    script = tree / "benchmarks" / "plan_scale.py"
    # one CLI run per round on both sides (newer scripts run it 5 times by default)
    once = ["--cli-runs", "1"] if "--cli-runs" in script.read_text() else []
    done = subprocess.run(
        [sys.executable, str(script), "--baseline-accounts", "20", *once],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    found = CLI_LINE.search(done.stdout)
    if done.returncode != 0 or found is None:
        sys.exit(f"plan_scale.py in {tree} failed ({done.returncode}): {done.stderr[-800:]}")
    return float(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="b4a84f7", help="the revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(compile_package())
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(other), args.against],
            cwd=ROOT,
            check=True,
        )
        try:
            compileall.compile_dir(other / "src", quiet=1)
            ours: list[float] = []
            theirs: list[float] = []
            for round_ in range(args.rounds):
                order = [(ROOT, ours), (other, theirs)]
                for tree, times in order if round_ % 2 == 0 else reversed(order):
                    times.append(cli_seconds(tree))
                print(
                    f"round {round_ + 1}: here {ours[-1]:.2f} s, {args.against} {theirs[-1]:.2f} s"
                )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT)
    here, there = statistics.median(ours), statistics.median(theirs)
    ratio = here / there
    print(f"CLI `plan --json`, 1,000 in-sync accounts at 50 ms, medians of {args.rounds}:")
    print(f"  here: {here:.2f} s   {args.against} (the code the issue measured): {there:.2f} s")
    print(f"  ratio: {ratio:.2f}")
    for today in sorted(ISSUE_TODAY_S, reverse=True):
        goal = ISSUE_GOAL_S / today
        verdict = "met" if ratio <= goal else "NOT met"
        print(
            f"  goal scaled to this machine, from {today:g} s on the issue's: ratio <= "
            f"{goal:.2f} (the goal's {ISSUE_GOAL_S:g} s, scaled: {goal * there:.2f} s here): "
            f"{verdict}"
        )
    print(
        f"  absolute goal <= {ISSUE_GOAL_S:g} s on this machine: "
        f"{'met' if here <= ISSUE_GOAL_S else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
