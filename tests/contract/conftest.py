"""Shared set-up for the contract tests: the installed CLI as real processes, one sandbox
process and the `serve` processes over loopback sockets.

Every output of every CLI run and every HTTP answer of the suite is kept; after each test,
`no_secret_in_any_output` checks that none of them holds a secret the suite knows (keys,
Gorgias and Shopify tokens, event tokens). SPEC: "No output of any command ever contains a
secret".
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve_helpers import ServedHandler, run_serve
from together_reconcile.reconcile.desired import OWNERSHIP_MARKER
from together_reconcile.sandbox import SandboxController
from together_reconcile.secrets import Keyring, generate_key

CLI = Path(sys.executable).with_name("together-reconcile")
PUBLIC_URL = "https://together.example.com"
REPO = Path(__file__).resolve().parents[2]

KNOWN_SECRETS: set[str] = set()
SEEN_OUTPUT: list[str] = []


def remember_secret(*values: str) -> None:
    KNOWN_SECRETS.update(v for v in values if v)


def keep_output(text: str) -> str:
    SEEN_OUTPUT.append(text)
    return text


@pytest.fixture(autouse=True)
def no_secret_in_any_output() -> Iterator[None]:
    """SPEC: no output of any command ever contains a secret (checked after every test)."""
    start = len(SEEN_OUTPUT)
    yield
    produced = "\n".join(SEEN_OUTPUT[start:])
    leaked = sorted(s for s in KNOWN_SECRETS if s in produced)
    assert leaked == [], f"{len(leaked)} secret(s) appeared in command output"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any TOGETHER_* / GitHub settings, plus `extra`."""
    drop = ("TOGETHER_", "GITHUB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    module: bool = False,
) -> Result:
    """Run the installed console script (or `python -m together_reconcile`) as a process."""
    command = [sys.executable, "-m", "together_reconcile"] if module else [str(CLI)]
    done = subprocess.run(
        [*command, *args],
        env=clean_env(env),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    keep_output(done.stdout + done.stderr)
    return Result(done.returncode, done.stdout, done.stderr)


# -- the sandbox, as a real `together-reconcile sandbox` process -----------------------------


@dataclass
class SandboxProcess:
    process: subprocess.Popen[str]
    banner: list[str]
    url: str
    control: SandboxController

    @property
    def gorgias_url(self) -> str:
        return f"{self.url}/gorgias/{{account}}"

    @property
    def shopify_url(self) -> str:
        return f"{self.url}/shopify/{{store}}"


def start_sandbox_process(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [str(CLI), "sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Control API:"):
            break
    return process, lines


def stop_process(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return out, err


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[SandboxProcess]:
    """One `together-reconcile sandbox --port 0` for the whole suite (demo data seeded).

    Tests isolate themselves by using Gorgias accounts and stores of their own names.
    """
    process, banner = start_sandbox_process()
    url = banner[0].removeprefix("Sandbox listening on ")
    controller = SandboxController(url)
    try:
        yield SandboxProcess(process, banner, url, controller)
    finally:
        controller.close()
        stop_process(process)


_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A fresh subdomain, so tests sharing the sandbox never see each other's objects."""
    return f"{prefix}{next(_names)}x{os.getpid() % 1000}"


# -- a reconcile world: accounts folder, SQLite store, keys, sandbox ---------------------------


@dataclass
class World:
    sandbox: SandboxProcess
    root: Path
    keys: str = field(default_factory=lambda: f"{generate_key()},{generate_key()}")

    def __post_init__(self) -> None:
        self.accounts_dir = self.root / "accounts"
        self.accounts_dir.mkdir(parents=True, exist_ok=True)
        self.state_url = f"sqlite:///{self.root}/state.db"
        self.keyring = Keyring.from_env(self.keys)
        remember_secret(*self.keys.split(","))

    @property
    def env(self) -> dict[str, str]:
        return {
            "TOGETHER_SECRET_KEYS": self.keys,
            "TOGETHER_PUBLIC_URL": PUBLIC_URL,
            "TOGETHER_GORGIAS_URL": self.sandbox.gorgias_url,
            "TOGETHER_SHOPIFY_URL": self.sandbox.shopify_url,
            "TOGETHER_STATE_URL": self.state_url,
            "TOGETHER_ACCOUNTS_DIR": str(self.accounts_dir),
        }

    def cli(self, *args: str, stdin: str | None = None, **env: str) -> Result:
        return run_cli(*args, env={**self.env, **env}, stdin=stdin, cwd=self.root)

    def write_account(self, sub: str, extra: str = "") -> Path:
        path = self.accounts_dir / f"{sub}.yaml"
        path.write_text(
            f"shopify_store: {sub}.myshopify.com\ngorgias_account: {sub}.gorgias.com\n{extra}"
        )
        return path

    def connect(self, *subs: str) -> None:
        """Register each account in the sandbox and store its token with `credentials import`."""
        lines = []
        for sub in subs:
            token = f"tok-{sub}-{generate_key()[:24]}"
            remember_secret(token, self.keyring.event_token(f"{sub}.gorgias.com"))
            self.sandbox.control.add_gorgias_account(sub, token)
            lines.append(
                json.dumps(
                    {"kind": "gorgias", "domain": f"{sub}.gorgias.com", "access_token": token}
                )
            )
        done = self.cli("credentials", "import", "-", stdin="\n".join(lines) + "\n")
        assert done.code == 0, done.output

    def ours(self, sub: str) -> list[dict[str, Any]]:
        return [
            i
            for i in self.sandbox.control.integrations(sub)
            if OWNERSHIP_MARKER in (i.get("description") or "")
        ]

    def writes(self, *subs: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.sandbox.control.requests()
            if r["method"] != "GET" and r["target"] == "gorgias" and r["account"] in subs
        ]


@pytest.fixture
def world(sandbox_process: SandboxProcess, tmp_path: Path) -> World:
    return World(sandbox_process, tmp_path)


@pytest.fixture(scope="module")
def module_world(
    sandbox_process: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> World:
    return World(sandbox_process, tmp_path_factory.mktemp("world"))


def by_account(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["gorgias_account"]: a for a in document["accounts"]}


# -- the event handler, as a real `together-reconcile serve` -----------------------------------

SHOPIFY_TOKEN = "shpat_" + "0a1b2c3d" * 4
OAUTH_CLIENT_ID = "together-contract-client"
OAUTH_CLIENT_SECRET = "client-secret-" + "9f8e7d6c" * 4


@dataclass
class Served:
    handler: ServedHandler
    world: World
    accounts: dict[str, str]  # role → subdomain

    @property
    def url(self) -> str:
        return self.handler.url

    def token(self, domain: str) -> str:
        return self.world.keyring.event_token(domain)

    def post(
        self,
        body: Any = None,
        *,
        content: bytes | None = None,
        token: str | None = None,
        content_type: str = "application/json",
        method: str = "POST",
        path: str = "/gorgias/events",
        timeout: float = 15,
    ) -> httpx.Response:
        raw = content if content is not None else json.dumps(body).encode()
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["X-Together-Token"] = token
        answer = httpx.request(
            method, self.url + path, content=raw, headers=headers, timeout=timeout
        )
        keep_output(answer.text)
        return answer

    def get(self, path: str, **params: str) -> httpx.Response:
        answer = httpx.get(self.url + path, params=params, timeout=15)
        keep_output(answer.text + str(answer.headers))
        return answer


def start_serve(
    stack: ExitStack, world: World, tmp: Path, extra_env: dict[str, str]
) -> ServedHandler:
    """`together-reconcile serve` (tests/serve_helpers.run_serve) with extra settings."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("TOGETHER_")]:
            patch.delenv(key)
        for key, value in extra_env.items():
            patch.setenv(key, value)
        return stack.enter_context(
            run_serve(
                tmp,
                accounts_dir=world.accounts_dir,
                state_url=world.state_url,
                secret_keys=world.keys,
                shopify_url=world.sandbox.shopify_url,
                workers=1,
                threads=8,
            )
        )


@pytest.fixture(scope="session")
def served(
    sandbox_process: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One `serve` with three accounts (enabled, lookback 30, disabled), Shopify tokens stored,
    OAuth set up against the sandbox, and the Shopify API version set explicitly."""
    root = tmp_path_factory.mktemp("served")
    world = World(sandbox_process, root)
    roles = {"main": unique("hmain"), "short": unique("hshort"), "off": unique("hoff")}
    world.write_account(roles["main"])
    world.write_account(roles["short"], "lookback_days: 30\n")
    world.write_account(roles["off"], "enabled: false\n")
    lines = [
        json.dumps(
            {"kind": "shopify", "domain": f"{sub}.myshopify.com", "access_token": SHOPIFY_TOKEN}
        )
        for sub in roles.values()
    ]
    stored = world.cli("credentials", "import", "-", stdin="\n".join(lines) + "\n")
    assert stored.code == 0, stored.output
    for sub in roles.values():
        world.sandbox.control.add_shopify_store(sub, SHOPIFY_TOKEN)
    world.sandbox.control.set_oauth_client(OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET)
    remember_secret(SHOPIFY_TOKEN, OAUTH_CLIENT_SECRET)
    env = {
        "TOGETHER_PUBLIC_URL": PUBLIC_URL,
        "TOGETHER_GORGIAS_URL": world.sandbox.gorgias_url,
        "TOGETHER_GORGIAS_CLIENT_ID": OAUTH_CLIENT_ID,
        "TOGETHER_GORGIAS_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
        "TOGETHER_SHOPIFY_API_VERSION": "2025-07",
    }
    with ExitStack() as stack:
        handler = start_serve(stack, world, root, env)
        yield Served(handler, world, roles)
        keep_output(handler.stderr())


# -- one planned scenario shared by the plan/integration/no-secret modules ---------------------

STOLEN_HEADER = "stolen-header-value-" + "e1" * 12


@dataclass
class Scenario:
    """Accounts in every state a plan can show, observed by one `plan --json` run."""

    world: World
    subs: dict[str, str]  # role → subdomain
    plan: Result
    applied: Result
    ids: dict[str, int]  # role → integration id before the drift

    def domain(self, role: str) -> str:
        return f"{self.subs[role]}.gorgias.com"

    def account(self, role: str) -> dict[str, Any]:
        return by_account(self.plan.json())[self.domain(role)]


@pytest.fixture(scope="session")
def scenario(sandbox_process: SandboxProcess, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    world = World(sandbox_process, tmp_path_factory.mktemp("scenario"))
    roles = ("new", "sync", "drift", "react", "gone", "nc")
    subs = {role: unique(f"p{role}") for role in roles}
    control = sandbox_process.control
    for role in ("sync", "drift", "react", "gone"):
        world.write_account(subs[role])
    world.connect(subs["sync"], subs["drift"], subs["react"], subs["gone"], subs["new"])
    applied = world.cli("apply", "--yes")
    assert applied.code == 0, applied.output
    ids = {role: world.ours(subs[role])[0]["id"] for role in ("sync", "drift", "react", "gone")}
    world.write_account(subs["new"])
    world.write_account(subs["nc"])
    world.write_account(subs["gone"], "enabled: false\n")
    remember_secret(STOLEN_HEADER)
    control.edit_integration(
        subs["drift"],
        ids["drift"],
        {
            "http": {
                "url": "https://elsewhere.example.com/hook",
                "headers": {"X-Together-Token": STOLEN_HEADER},
                "triggers": {"ticket-message-created": True, "ticket-deleted": False},
            }
        },
    )
    control.edit_integration(
        subs["react"], ids["react"], {"deactivated_datetime": "2026-03-01T00:00:00"}
    )
    (widget,) = control.widgets(subs["react"])
    control.remove_widget(subs["react"], widget["id"])
    plan = world.cli("plan", "--json", "--detailed-exitcode")
    return Scenario(world, subs, plan, applied, ids)
