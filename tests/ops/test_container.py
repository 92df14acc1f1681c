"""deploy/Containerfile built with podman on a base made here from Debian's packages
(debootstrap --variant=minbase, podman import; no registry is reachable), run against
PostgreSQL, with an event sent through it. Skipped, with the reason, where no container
runtime can run; under CI it must run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.handler_helpers import SHOPIFY_TOKEN
from tests.ops.helpers import DEPLOY, ROOT, need
from tests.plugins.store_fixtures import fresh_schema
from tests.serve_helpers import free_port
from together_reconcile.sandbox import RunningSandbox
from together_reconcile.secrets import Keyring, generate_key
from together_reconcile.store import Credential, Store

BASE = "localhost/together-test-base:bookworm"
RUNTIME = ["--runtime", "runc"]  # crun fails on this machine's hybrid cgroups
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
KEYS = generate_key()
KEYRING = Keyring.from_env(KEYS)

pytestmark = pytest.mark.timeout(1200)


def podman(
    *args: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])}: {done.stderr[-3000:]}")
    return done


def tools_or_skip() -> None:
    need("podman", "podman")
    need("runc", "runc")
    need("debootstrap", "debootstrap")


def runtime_or_skip(image: str) -> None:
    """Skip (fail under CI) when podman cannot run a container here."""
    probe = subprocess.run(
        ["podman", *RUNTIME, "run", "--rm", "--network", "host", *LIMITS, image, "true"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        reason = f"no container runtime can run here: {probe.stderr.strip()[-300:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def base_image(tmp: Path) -> str:
    """A minimal Debian bookworm with python3 (made once, then kept in podman's storage)."""
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return BASE
    root = tmp / "rootfs"
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(root),
            "http://deb.debian.org/debian",
        ],
        capture_output=True,
        check=True,
        timeout=900,
    )
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["podman", "import", "-", BASE], stdin=tar.stdout, capture_output=True, timeout=300
    )
    tar.wait()
    assert imported.returncode == 0, imported.stderr
    shutil.rmtree(root, ignore_errors=True)
    return BASE


def build_context(tmp: Path) -> tuple[Path, Path]:
    """The files the Containerfile copies, and a wheelhouse (pip, hatchling, every dependency)
    for the offline build."""
    context = tmp / "context"
    context.mkdir()
    shutil.copy(ROOT / "pyproject.toml", context)
    shutil.copy(ROOT / "README.md", context)
    shutil.copytree(ROOT / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp / "wheelhouse"
    pip = [str(ROOT / ".venv" / "bin" / "pip")]
    subprocess.run(
        [*pip, "wheel", "--quiet", "--wheel-dir", str(wheels), str(context)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    subprocess.run(
        [*pip, "download", "--quiet", "--dest", str(wheels), "pip", "hatchling"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    for wheel in wheels.glob("together_reconcile-*.whl"):
        wheel.unlink()  # the image builds its own
    return context, wheels


@pytest.fixture
def schema_url(postgres_url_or_skip_reason: tuple[str | None, str | None]) -> Iterator[str]:
    with fresh_schema(postgres_url_or_skip_reason) as url:
        yield url


def test_image_builds_runs_as_non_root_and_answers_an_event(
    tmp_path: Path, sandbox: RunningSandbox, schema_url: str
) -> None:
    tools_or_skip()
    base = base_image(tmp_path)
    runtime_or_skip(base)
    context, wheels = build_context(tmp_path)
    tag = f"localhost/together-reconcile:test-{uuid.uuid4().hex[:8]}"
    name = f"together-test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    podman(
        *RUNTIME,
        "build",
        "--format",
        "docker",
        "--network",
        "host",
        *LIMITS,
        "--build-arg",
        f"BASE={base}",
        "--build-arg",
        "PIP_NO_INDEX=1",
        "--build-arg",
        "PIP_FIND_LINKS=/wheelhouse",
        "--volume",
        f"{wheels}:/wheelhouse:ro",
        "-f",
        str(DEPLOY / "Containerfile"),
        "-t",
        tag,
        str(context),
        timeout=900,
    )
    build_s = time.monotonic() - started
    try:
        inspected = json.loads(podman("image", "inspect", tag).stdout)[0]
        config = inspected["Config"]
        assert config["User"] == "10001:10001"
        assert config["Cmd"] == ["serve", "--host", "0.0.0.0"]
        assert not any(
            item.startswith(
                ("TOGETHER_SECRET_KEYS", "TOGETHER_STATE_URL", "TOGETHER_GORGIAS_CLIENT")
            )
            for item in config["Env"]
        )
        listing = podman(
            "run",
            *RUNTIME,
            "--rm",
            "--network",
            "host",
            *LIMITS,
            "--entrypoint",
            "sh",
            tag,
            "-c",
            "ls /opt/together-reconcile/lib/python3*/site-packages; ls / ; ls /accounts",
        )
        assert "together_reconcile" in listing.stdout
        assert "src" not in listing.stdout.split() and "wheels" not in listing.stdout.split()

        sandbox.control.add_shopify_store("acme", SHOPIFY_TOKEN)
        with Store.open(schema_url, KEYRING) as store:
            store.put_credential(Credential("shopify", "acme.myshopify.com", SHOPIFY_TOKEN))
        accounts = tmp_path / "accounts"
        accounts.mkdir(mode=0o755)
        (accounts / "acme.yaml").write_text(
            "shopify_store: acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"
        )
        (accounts / "acme.yaml").chmod(0o644)
        port, metrics_port = free_port(), free_port()
        podman(
            "run",
            *RUNTIME,
            "-d",
            "--name",
            name,
            "--network",
            "host",
            *LIMITS,
            "--read-only",
            "--tmpfs",
            "/tmp",
            "-e",
            f"TOGETHER_PORT={port}",
            "-e",
            f"TOGETHER_METRICS_PORT={metrics_port}",
            "-e",
            "TOGETHER_METRICS_HOST=127.0.0.1",
            "-e",
            f"TOGETHER_SECRET_KEYS={KEYS}",
            "-e",
            f"TOGETHER_STATE_URL={schema_url}",
            "-e",
            f"TOGETHER_SHOPIFY_URL={sandbox.shopify_url_template}",
            "-v",
            f"{accounts}:/accounts:ro",
            tag,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state == "running", podman("logs", name).stderr[-3000:]
            assert time.monotonic() < deadline, podman("logs", name).stderr[-3000:]
            time.sleep(0.5)
        answer = httpx.post(
            url + "/gorgias/events",
            json={
                "ticket_id": 1,
                "account_domain": "acme.gorgias.com",
                "customer_email": "c@example.com",
            },
            headers={"X-Together-Token": KEYRING.event_token("acme.gorgias.com")},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {}
        # The image's HEALTHCHECK (on /healthz) exists and passes ("no defined healthcheck"
        # would fail here).
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'together_events_total{account="acme.gorgias.com",outcome="ok"} 1.0' in metrics
        user = podman("exec", name, "id", "-u").stdout.strip()
        assert user == "10001"
        print(f"\nimage built in {build_s:.0f} s; event answered by the container")
    finally:
        podman("rm", "-f", "-t", "5", name, check=False)
        podman("rmi", "-f", tag, check=False)
