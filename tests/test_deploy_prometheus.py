"""The alert rules in deploy/prometheus: valid, and each one unit-tested with `promtool test
rules` (deploy/prometheus/alerts_test.yml: fires when it should, stays quiet when it should
not). promtool comes with Debian's `prometheus` package; `.ci/run` installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus"
README = ROOT / "README.md"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (apt-get install prometheus; .ci/run does it)")
        pytest.skip("promtool is missing: apt-get install prometheus")
    return path


def test_rules_are_valid() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", "alerts.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_rules_unit_tests_pass() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def alerts() -> list[dict[str, object]]:
    document = yaml.safe_load((RULES / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_alert_is_unit_tested_and_has_a_runbook_line() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load((RULES / "alerts_test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    readme = README.read_text()
    for rule in alerts():
        name = rule["alert"]
        assert name in tested, f"{name} never fires in alerts_test.yml"
        assert rule["annotations"]["runbook"] == "README.md#alerts-and-what-to-do"  # type: ignore[index]
        assert f"**{name}**" in readme, f"README has no runbook line for {name}"
