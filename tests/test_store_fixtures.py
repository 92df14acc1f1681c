"""The `state_url` fixture itself: PostgreSQL isolation, and no silent skip under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.plugins.store_fixtures import postgres_base_url

ROOT = Path(__file__).resolve().parents[1]

USES_STATE_URL = """
def test_uses_state_url(state_url):
    assert state_url
"""


def run_pytest_on(
    tmp_path: Path, env_overrides: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(USES_STATE_URL)
    env = {**os.environ, **env_overrides}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.plugins.store_fixtures",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            "-rs",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_probe.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"


def test_unreachable_postgres_is_skipped_with_the_reason_outside_ci(tmp_path: Path) -> None:
    result = run_pytest_on(tmp_path, {"TOGETHER_TEST_POSTGRES_URL": UNREACHABLE, "CI": "false"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout
    assert (
        f"PostgreSQL not reachable at {UNREACHABLE}" in result.stdout
        and "start it or set TOGETHER_TEST_POSTGRES_URL" in result.stdout
    )


def test_unreachable_postgres_fails_under_ci(tmp_path: Path) -> None:
    result = run_pytest_on(tmp_path, {"TOGETHER_TEST_POSTGRES_URL": UNREACHABLE, "CI": "true"})
    assert result.returncode == 1
    assert "1 passed, 1 error" in result.stdout  # a fixture failure is an error: not silent
    assert f"PostgreSQL not reachable at {UNREACHABLE}" in result.stdout


def test_each_postgres_test_gets_its_own_schema_dropped_after(postgres_schema_url: str) -> None:
    schema = postgres_schema_url.rsplit("search_path%3D", 1)[1]
    with psycopg.connect(postgres_base_url(), autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    assert found == (1,)
    with psycopg.connect(postgres_schema_url.replace("postgresql+psycopg", "postgresql")) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
    assert row == (schema,)
