"""Processes for the operations tests: `serve` replicas, nginx, tools that must be there."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def need(tool: str, package: str) -> str:
    """The tool's path; missing: fail under CI (.ci/run installs it), skip elsewhere."""
    path = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if path is None:
        message = f"{tool} is missing: apt-get install {package} (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_for(
    url: str,
    *,
    timeout_s: float = 30,
    process: subprocess.Popen[bytes] | None = None,
    verify: bool | str = True,
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout_s} s")
        time.sleep(0.1)


@dataclass
class Replica:
    """One `serve` replica on a fixed port (restartable on the same port)."""

    name: str
    port: int
    env: dict[str, str]
    log: Path
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "together_reconcile",
            "serve",
            "--port",
            str(self.port),
            *self.args,
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        wait_for(self.url + "/readyz", process=self.process)

    def stop(self, timeout_s: float = 40) -> int:
        """SIGTERM (drain) and wait; the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextmanager
def replicas(*items: Replica) -> Iterator[tuple[Replica, ...]]:
    try:
        for replica in items:
            replica.start()
        yield items
    finally:
        for replica in items:
            try:
                if replica.process is not None and replica.process.poll() is None:
                    replica.stop(timeout_s=20)
            except subprocess.TimeoutExpired:
                pass
            replica.kill()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (made with openssl)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "together.crt", folder / "together.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the shipped file changed: {old!r} is not there once"
    return text.replace(old, new)


@dataclass
class Nginx:
    conf_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    cert: Path

    def tls(self) -> ssl.SSLContext:
        """Trusts the test's self-signed certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.cert))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        return (self.conf_dir / "error.log").read_text(errors="replace")

    def access_log(self) -> str:
        return (self.conf_dir / "access.log").read_text(errors="replace")


@contextmanager
def run_nginx(tmp: Path, port: int, upstream_ports: list[int]) -> Iterator[Nginx]:
    """The shipped deploy/nginx files, with only the listen port, the replicas' addresses and
    the log path changed, under a main nginx.conf of the test's own."""
    nginx = need("nginx", "nginx")
    conf = tmp / "nginx"
    conf.mkdir()
    cert, _key = make_certificate(conf / "tls")
    upstream = (DEPLOY / "nginx" / "upstream.conf").read_text()
    upstream = replace_once(
        upstream, "server 127.0.0.1:8001 ", f"server 127.0.0.1:{upstream_ports[0]} "
    )
    upstream = replace_once(
        upstream, "server 127.0.0.1:8002 ", f"server 127.0.0.1:{upstream_ports[1]} "
    )
    (conf / "upstream.conf").write_text(upstream)
    site = (DEPLOY / "nginx" / "together-reconcile.conf").read_text()
    site = replace_once(site, "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    site = replace_once(site, "listen [::]:443 ssl;", "")
    site = replace_once(
        site, "/var/log/nginx/together-reconcile.access.log", str(conf / "access.log")
    )
    (conf / "together-reconcile.conf").write_text(site)
    shutil.copy(DEPLOY / "nginx" / "together-reconcile-proxy.conf", conf)
    user = "user root;\n" if os.geteuid() == 0 else ""
    (conf / "nginx.conf").write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {conf}/nginx.pid;\n"
        f"error_log {conf}/error.log info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"  client_body_temp_path {conf}/body; proxy_temp_path {conf}/proxy;\n"
        f"  fastcgi_temp_path {conf}/fastcgi; uwsgi_temp_path {conf}/uwsgi;\n"
        f"  scgi_temp_path {conf}/scgi;\n"
        "  include upstream.conf;\n  include together-reconcile.conf;\n}\n"
    )
    check = subprocess.run(
        [nginx, "-t", "-p", str(conf), "-c", str(conf / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [nginx, "-p", str(conf), "-c", str(conf / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    running = Nginx(conf, port, process, cert)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(running.url + "/", verify=running.tls(), timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start: " + running.error_log()) from None
                time.sleep(0.1)
        yield running
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
