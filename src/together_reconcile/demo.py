"""`together-reconcile demo`: the whole loop on one machine, narrated, leaving nothing behind.

Everything is throw-away: a temporary folder (a copy of the example account files and a SQLite
state store), a fresh secret key, the sandbox (Gorgias + Shopify stand-ins) and the event
handler, both served from threads of this process on free loopback ports. The real CLI commands
run in-process (the same code as in a terminal, without a new interpreter per step), each shown
as the command line a user would type. Secrets are never printed: the key lives only in the
environment of the commands, and the sandbox tokens go to the store through stdin.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import shlex
import shutil
import signal
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import click
import httpx

from together_reconcile.events import app as handler_module
from together_reconcile.gorgias.oauth import INSTALL_PATH as OAUTH_INSTALL_PATH
from together_reconcile.gorgias.tokens import CLIENT_ID_ENV, CLIENT_SECRET_ENV
from together_reconcile.reconcile.desired import is_ours
from together_reconcile.sandbox import RunningSandbox, start_sandbox
from together_reconcile.sandbox.demo import (
    DEMO_GORGIAS_ACCOUNTS,
    DEMO_SHOPIFY_STORES,
    seed_demo,
    shopify_token,
)
from together_reconcile.sandbox.github import GitHubStandIn
from together_reconcile.secrets import ENV_VAR as SECRET_KEYS_ENV
from together_reconcile.secrets import generate_key

PROGRAM = "together-reconcile"
EXAMPLE_ACCOUNTS = ("acme", "globex", "initech")
TICKET_ACCOUNT = "acme"  # the account a ticket is created in
DISABLED_ACCOUNT = "initech"  # the account switched off at the end
CUSTOMER_EMAIL = "jane@example.com"  # a seeded sandbox customer (see sandbox/demo.py)
# The sandbox's OAuth app: opens nothing but the sandbox (kept out of the output all the same).
DEMO_CLIENT_ID = "together-demo"
DEMO_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - a sandbox-only placeholder
LATE_ACCOUNT = "umbrella"  # merged before its merchant connects: goes live through the dispatch
DEMO_GITHUB_TOKEN = "sandbox-github-token"  # noqa: S105 - the GitHub stand-in's only token
FOREIGN_INTEGRATION = {
    "name": "Initech survey",
    "type": "http",
    "description": "Set up by Initech's own team",
    "http": {"url": "https://survey.initech.example/hook", "method": "POST", "triggers": {}},
}
# Variables a user may have set that would change what the commands print or do here.
_CLEARED_ENV_PREFIXES = ("TOGETHER_", "GITHUB_")

Echo = Callable[[str], None]


class DemoFailed(Exception):
    """A step did not do what the demo expects; the message says which and why."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived: the `finally` blocks clean up on the way out.

    Not a KeyboardInterrupt: click would turn that into "Aborted!" inside a command."""


def find_accounts_source() -> Path:
    """The example account files: `./accounts` of the repository this package lives in."""
    candidates = [Path.cwd() / "accounts", Path(__file__).resolve().parents[2] / "accounts"]
    for folder in candidates:
        if all((folder / f"{name}.yaml").is_file() for name in EXAMPLE_ACCOUNTS):
            return folder
    raise DemoFailed(
        "cannot find the example account files (accounts/acme.yaml, globex.yaml, initech.yaml): "
        "run the demo from the repository's root folder"
    )


# -- The event handler, served from a thread -----------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup
        self.server_name = "127.0.0.1"
        self.server_port = int(self.server_address[1])
        self.setup_environ()


class ServedApp:
    """A WSGI app on a free loopback port, served by a background thread until `stop()`."""

    def __init__(self) -> None:
        self._server = _ThreadingServer(("127.0.0.1", 0), _QuietHandler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self, app: handler_module.WSGIApplication) -> None:
        self._server.set_app(app)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="demo-handler",
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


# -- Running the real CLI in-process ---------------------------------------------------------


@contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    """Exactly `values` for the TOGETHER_*/GITHUB_* variables while inside; restored after."""
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith(_CLEARED_ENV_PREFIXES)]:
            del os.environ[name]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def stdin_text(text: str | None) -> Iterator[None]:
    if text is None:
        yield
        return
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


@dataclass
class Demo:
    """One run: the folders, servers and settings; each step is a method."""

    root: Path
    sandbox: RunningSandbox
    handler: ServedApp
    echo: Echo
    secret_keys: str = field(repr=False)
    pause_s: float = 0.0
    # The command line the steps run in-process (given by the `demo` command: no import cycle).
    cli: click.Command | None = field(default=None, repr=False, kw_only=True)
    # GitHub's API, as the handler sees it after a late connect (sandbox/github.py).
    github: GitHubStandIn | None = field(default=None, repr=False, kw_only=True)
    app: handler_module.HandlerApp | None = field(default=None, repr=False, kw_only=True)

    @property
    def accounts_dir(self) -> Path:
        return self.root / "accounts"

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.root / 'state.db'}"

    @property
    def shown_env(self) -> dict[str, str]:
        """The settings the commands run with, all fine to print."""
        return {
            "TOGETHER_ACCOUNTS_DIR": str(self.accounts_dir),
            "TOGETHER_STATE_URL": self.state_url,
            "TOGETHER_PUBLIC_URL": self.handler.url,
            "TOGETHER_GORGIAS_URL": self.sandbox.gorgias_url_template,
            "TOGETHER_SHOPIFY_URL": self.sandbox.shopify_url_template,
            **({"TOGETHER_GITHUB_API_URL": self.github.url} if self.github is not None else {}),
        }

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.shown_env,
            SECRET_KEYS_ENV: self.secret_keys,
            CLIENT_ID_ENV: DEMO_CLIENT_ID,
            CLIENT_SECRET_ENV: DEMO_CLIENT_SECRET,
            **(
                {
                    "TOGETHER_GITHUB_REPOSITORY": self.github.repository,
                    "TOGETHER_GITHUB_TOKEN": DEMO_GITHUB_TOKEN,
                }
                if self.github is not None
                else {}
            ),
        }

    # -- narration helpers

    def heading(self, number: int, title: str, *explanation: str) -> None:
        if self.pause_s and number:
            time.sleep(self.pause_s)
        self.echo("")
        self.echo(click.style(f"{number}. {title}", bold=True))
        for line in explanation:
            self.echo(f"   {line}")

    def run(self, *args: str, stdin: str | None = None, expect: Sequence[int] = (0,)) -> int:
        """Run `together-reconcile ARGS` in-process, after printing its command line."""
        if self.cli is None:
            raise DemoFailed("no command line to run the steps with")
        shown = shlex.join([PROGRAM, *args])
        if stdin is not None:
            shown += " < (tokens as JSON lines)"
        self.echo(click.style(f"$ {shown}", fg="cyan"))
        sys.stdout.flush()
        with patched_environ(self.env), stdin_text(stdin):
            try:
                self.cli.main(args=list(args), prog_name=PROGRAM, standalone_mode=True)
                code = 0
            except SystemExit as exit_:
                code = (
                    exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                )
        sys.stdout.flush()
        sys.stderr.flush()
        if code not in expect:
            raise DemoFailed(f"`{shown}` exited {code}, expected {' or '.join(map(str, expect))}")
        if code:
            self.echo(f"(exit status {code})")
        return code

    # -- the steps

    def setup(self) -> None:
        source = find_accounts_source()
        self.accounts_dir.mkdir()
        for name in EXAMPLE_ACCOUNTS:
            shutil.copyfile(source / f"{name}.yaml", self.accounts_dir / f"{name}.yaml")
        seed_demo(self.sandbox.control)
        self.sandbox.control.set_oauth_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        self.sandbox.control.insert_integration(DISABLED_ACCOUNT, FOREIGN_INTEGRATION)

        self.echo(click.style("together-reconcile demo", bold=True))
        self.echo(
            "The whole loop on this machine: nothing here touches the real Gorgias or Shopify."
        )
        self.heading(
            0,
            "Setting up (all throw-away, removed at the end)",
            f"sandbox Gorgias + Shopify  {self.sandbox.url}",
            "  Gorgias accounts: " + ", ".join(f"{a}.gorgias.com" for a in DEMO_GORGIAS_ACCOUNTS),
            "  Shopify stores:   "
            + ", ".join(f"{s}.myshopify.com" for s in DEMO_SHOPIFY_STORES)
            + " (with orders)",
            f"  {DISABLED_ACCOUNT}.gorgias.com already has an integration of its own,"
            f' "{FOREIGN_INTEGRATION["name"]}": not ours, so never touched',
            f"event handler              {self.handler.url}  (in production: `{PROGRAM} serve`)",
            f"account files              {self.accounts_dir}  (copies of accounts/*.yaml)",
            "a fresh secret key         kept in the environment only, never printed",
            "The commands below run with these settings:",
            *(f"  {name}={value}" for name, value in self.shown_env.items()),
        )

    def validate(self) -> None:
        self.heading(
            1,
            "Validate the account files",
            "What the pull-request check runs first: every problem as path:line:col.",
        )
        self.run("validate")

    def start_handler(self) -> None:
        """Serve the event handler (its port is bound already); needs valid account files."""
        settings = handler_module.Settings.from_env(
            self.env, accounts_dir=self.accounts_dir, state_url=self.state_url
        )
        self.app = handler_module.create_app(settings)
        self.handler.start(self.app)

    def connect(self) -> None:
        self.heading(
            2,
            "Connect the merchants",
            "Each merchant clicks Connect on the Together app in Gorgias: the browser goes to",
            "the handler's install page, on to Gorgias to approve, and back to the callback,",
            "which stores the Gorgias tokens, encrypted under the secret key (OAuth):",
            f"  {self.handler.url}{OAUTH_INSTALL_PATH}?account=SUBDOMAIN",
        )
        for account in DEMO_GORGIAS_ACCOUNTS:
            self.echo(f"   {account}.gorgias.com: {self._connect(account)}")
        self.echo(
            "   Shopify: support stores each store's Admin API token (JSON on stdin, never in"
        )
        self.echo("   the command line); the list shows what is stored, never a secret.")
        lines = [
            {"kind": "shopify", "domain": f"{s}.myshopify.com", "access_token": shopify_token(s)}
            for s in DEMO_SHOPIFY_STORES
        ]
        self.run("credentials", "import", "-", stdin="".join(json.dumps(x) + "\n" for x in lines))
        self.run("credentials", "list")

    def _connect(self, account: str, *, page: list[str] | None = None) -> str:
        """Act as the merchant's browser: install → Gorgias authorize → callback."""
        url = f"{self.handler.url}{OAUTH_INSTALL_PATH}?account={account}"
        shown = []
        with httpx.Client(timeout=10) as browser:
            for step in ("install", "Gorgias authorize", "callback"):
                answer = browser.get(url)
                shown.append(f"{step} {answer.status_code}")
                if step != "callback" and answer.status_code != 302:
                    raise DemoFailed(f"connecting {account}: {' → '.join(shown)}, not a redirect")
                url = answer.headers.get("location", "")
        if answer.status_code != 200:
            raise DemoFailed(f"connecting {account}.gorgias.com failed: {' → '.join(shown)}")
        if page is not None:  # the page's words, for the merchant
            page.extend(html.unescape(p) for p in re.findall(r"<p>([^<]*)</p>", answer.text))
        title = re.search(r"<title>([^<·]*)", answer.text)
        return " → ".join(shown) + (f": {title.group(1).strip()}" if title else "")

    def first_plan(self) -> None:
        self.heading(
            3,
            "Plan",
            "What would change in each Gorgias account: nothing of ours exists yet, so three",
            "creates (an HTTP integration and its widget each). The token is a fingerprint.",
            "--out saves the plan, as the merge workflow does, so that apply does exactly it.",
        )
        self.run("plan", "--out", str(self.plan_file))

    def first_apply(self) -> None:
        self.heading(
            4,
            "Apply",
            "What the merge to main runs: make Gorgias match the files. A saved plan is",
            "refused (exit 3, nothing changed) if Gorgias moved since it was made.",
        )
        self.run("apply", str(self.plan_file), "--yes")

    def plan_in_sync(self) -> None:
        self.heading(
            5,
            "Plan again",
            "Now live state matches the files: in sync. With --detailed-exitcode the exit",
            "status says it (0 = no changes, 2 = changes): what the nightly drift check uses.",
        )
        self.run("plan", "--detailed-exitcode")

    def ticket(self) -> dict[str, Any]:
        integration_id = self._our_integration_id(TICKET_ACCOUNT)
        self.heading(
            6,
            f"A ticket is created in Gorgias ({TICKET_ACCOUNT}.gorgias.com)",
            "Customer Jane writes in. Gorgias fires our integration: it POSTs the ticket id,",
            "the account and the customer's email to the handler, with the account's token.",
        )
        fired = self.sandbox.control.fire(
            TICKET_ACCOUNT,
            integration_id,
            {
                "id": 4242,
                "subject": "Can I return my order?",
                "customer": {"email": CUSTOMER_EMAIL},
            },
        )
        self.heading(
            7,
            "The handler answers",
            "It checks the token, finds the account's Shopify store, asks Shopify for the",
            "customer's orders tagged together-final-sale from the lookback window, and",
            "answers with them. It stores nothing about the customer.",
        )
        status = fired["status"]
        body = fired["body"]
        if status != 200 or not isinstance(body, dict):
            raise DemoFailed(f"the handler answered {status}: {body}")
        self.echo(
            f"   HTTP {status}: {body['final_sale_order_count']} final-sale order(s) from "
            f"{body['shopify_store']} in the last {body['lookback_days']} days"
        )
        return body

    def widget(self, answer: dict[str, Any]) -> None:
        self.heading(
            8,
            "What the agent sees in the ticket sidebar",
            "Gorgias keeps the answer on the customer; the widget shows it:",
        )
        if not answer:  # `{}`: no order, no card (the widget's view mode needs Together data)
            self.echo("   (no Together card for this customer)")
            return
        for line in order_table(answer["final_sale_orders"]):
            self.echo(f"   {line}")

    def disable(self) -> None:
        path = self.accounts_dir / f"{DISABLED_ACCOUNT}.yaml"
        path.write_text(path.read_text(encoding="utf-8") + "enabled: false\n", encoding="utf-8")
        self.heading(
            9,
            f"An account is disabled: {DISABLED_ACCOUNT}",
            f"A pull request adds `enabled: false` to accounts/{DISABLED_ACCOUNT}.yaml "
            "(removing the file works the same).",
            "The plan shows the delete:",
        )
        self.run("plan")

    def remove(self) -> None:
        self.heading(
            10,
            "Apply removes it",
            "Only what carries our marker goes; the account's own integration stays.",
        )
        self.run("apply", "--yes")
        left = self.sandbox.control.integrations(DISABLED_ACCOUNT)
        if any(is_ours(item) for item in left):
            raise DemoFailed(f"our integration is still in {DISABLED_ACCOUNT}.gorgias.com")
        names = ", ".join(f'"{item.get("name")}"' for item in left) or "none"
        self.echo(f"   Integrations left in {DISABLED_ACCOUNT}.gorgias.com: {names} (not ours)")

    def late_connect(self) -> None:
        domain = f"{LATE_ACCOUNT}.gorgias.com"
        store = f"{LATE_ACCOUNT}.myshopify.com"
        self.sandbox.control.add_gorgias_account(LATE_ACCOUNT, f"unused-{LATE_ACCOUNT}")
        self.sandbox.control.add_shopify_store(LATE_ACCOUNT, shopify_token(LATE_ACCOUNT))
        (self.accounts_dir / f"{LATE_ACCOUNT}.yaml").write_text(
            f"shopify_store: {store}\ngorgias_account: {domain}\n", encoding="utf-8"
        )
        self.heading(
            11,
            f"A pull request adds {LATE_ACCOUNT} before its merchant has connected",
            "Support stores the Shopify token; the merge runs apply with --verify. The account",
            "waits for the merchant (not_connected is not a failure); status says what to send:",
        )
        line = json.dumps({"kind": "shopify", "domain": store, "access_token": "x"})
        line = line.replace('"x"', json.dumps(shopify_token(LATE_ACCOUNT)))
        self.run("credentials", "import", "-", stdin=line + "\n")
        self.run("apply", "--yes", "--verify")
        self.run("status", "--account", domain)
        if self.github is None or self.app is None:
            raise DemoFailed("no GitHub stand-in to receive the dispatch, or no handler")
        self.app.registry.request_reload()  # its checkout has the merge (serve: within 2 s)
        before = len(self.github.dispatches)
        self.heading(
            12,
            f"The merchant connects: {domain} goes live by itself",
            "The callback stores the tokens and, as the account has a file, asks GitHub to run",
            "the apply workflow for it (workflow_dispatch of apply.yml, input account):",
        )
        words: list[str] = []
        self.echo(f"   {domain}: {self._connect(LATE_ACCOUNT, page=words)}")
        for sentence in words[1:]:
            self.echo(f"   page: {sentence}")
        sent = self.github.dispatches[before:]
        if sent != [{"workflow": "apply.yml", "ref": "main", "inputs": {"account": domain}}]:
            raise DemoFailed(f"the handler did not dispatch the apply workflow: {sent}")
        body = json.dumps({"ref": sent[0]["ref"], "inputs": sent[0]["inputs"]})
        self.echo(
            f"   GitHub (stand-in) got: POST /repos/{self.github.repository}/actions/workflows/"
            f"apply.yml/dispatches {body}"
        )
        self.echo("   The dispatched run (apply.yml) applies that one account and verifies it:")
        self.run("apply", "--account", domain, "--yes", "--verify")
        self.run("status", "--account", domain)

    def _our_integration_id(self, account: str) -> int:
        for item in self.sandbox.control.integrations(account):
            if is_ours(item):
                return int(item["id"])
        raise DemoFailed(f"no integration of ours in {account}.gorgias.com after apply")


def order_table(orders: Sequence[dict[str, Any]]) -> list[str]:
    """The widget's data as a small text table (one row per order)."""
    header = ("ORDER", "CREATED", "TOTAL", "PAYMENT", "FULFILMENT", "ITEMS")
    rows = [header] + [
        (
            str(order["name"]),
            str(order["created_at"])[:10],
            f"{order['total']} {order['currency']}",
            str(order.get("financial_status") or "-"),
            str(order["fulfillment_status"]),
            str(order["items"]),
        )
        for order in orders
    ]
    if not orders:
        return ["(no final-sale orders)"]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM raise `Interrupted`, so that everything is cleaned up."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise Interrupted

    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread
        return
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(echo: Echo, cli: click.Command, *, pause_s: float = 0.0) -> None:
    """The narrated loop. Raises `DemoFailed` (a step went wrong), `KeyboardInterrupt` or
    `Interrupted`; servers and the temporary folder are gone when it returns or raises."""
    with signals_as_interrupt(), tempfile.TemporaryDirectory(prefix="together-demo-") as tmp:
        sandbox = start_sandbox("127.0.0.1", 0)
        handler: ServedApp | None = None
        github = GitHubStandIn(DEMO_GITHUB_TOKEN).start()
        try:
            handler = ServedApp()
            demo = Demo(
                Path(tmp), sandbox, handler, echo, generate_key(), pause_s, cli=cli, github=github
            )
            demo.setup()
            demo.validate()
            demo.start_handler()
            demo.connect()
            demo.first_plan()
            demo.first_apply()
            demo.plan_in_sync()
            answer = demo.ticket()
            demo.widget(answer)
            demo.disable()
            demo.remove()
            demo.late_connect()
        finally:
            if handler is not None:
                handler.stop()
            github.stop()
            sandbox.stop()
    echo("")
    echo("Done: the sandbox and the handler are stopped, the temporary folder is removed.")
    echo("Next: README.md, section 'Adding an account'.")


def main_entry(echo: Echo, cli: click.Command, *, pause_s: float = 0.0) -> int:
    """`together-reconcile demo`: 0 when the loop ran, 1 when a step failed, 130 on Ctrl-C."""
    try:
        run_demo(echo, cli, pause_s=pause_s)
    except DemoFailed as error:
        echo(f"Error: the demo stopped: {error}")
        return 1
    except (KeyboardInterrupt, Interrupted):
        with suppress(Exception):
            echo("\ndemo interrupted: everything is stopped and removed")
        return 130
    return 0
