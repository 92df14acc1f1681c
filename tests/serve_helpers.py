"""Run `together-reconcile serve` as a real process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServedHandler:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextmanager
def run_serve(
    tmp: Path,
    *,
    accounts_dir: Path,
    state_url: str,
    secret_keys: str,
    shopify_url: str,
    workers: int = 1,
    threads: int = 8,
    extra_args: tuple[str, ...] = (),
) -> Iterator[ServedHandler]:
    port = free_port()
    stderr_path = tmp / "serve.stderr"
    env = {
        **os.environ,
        "TOGETHER_SECRET_KEYS": secret_keys,
        "TOGETHER_ACCOUNTS_DIR": str(accounts_dir),
        "TOGETHER_STATE_URL": state_url,
        "TOGETHER_SHOPIFY_URL": shopify_url,
    }
    command = [
        sys.executable,
        "-m",
        "together_reconcile",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        *extra_args,
    ]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=stderr, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited: {stderr_path.read_text()}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start in 20 s")
            time.sleep(0.1)
        yield ServedHandler(url, port, process, stderr_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
