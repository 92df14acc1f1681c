"""Observation: read each account's live Gorgias state and diff it into a `Plan`.

The I/O half of planning. Accounts are observed on one asyncio event loop (one `GorgiasClient`
per account, its lists sent through `h11_client.AsyncH11Client`; what may block runs in worker
threads); an in-sync account costs two requests: list integrations, and list the widgets
bound to our integration (both at once when the last apply recorded the integration's id,
then checked against what is listed). Each account's Gorgias auth comes from
`GorgiasAuthProvider`, the one place where token refresh (before use, or after a 401) is to
be added.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from together_reconcile.config import AccountFile, load_accounts
from together_reconcile.errors import TogetherError
from together_reconcile.gorgias.client import (
    DEFAULT_HEADERS,
    DEFAULT_TIMEOUT,
    JSON,
    AsyncSender,
    BasicAuth,
    BearerAuth,
    CredentialsRejected,
    GorgiasClient,
    GorgiasError,
    GorgiasUnavailable,
    Sender,
    new_sender,
    proxy_configured,
)
from together_reconcile.gorgias.reasons import (
    CREDENTIALS_REJECTED,
    GORGIAS_ERROR,
    GORGIAS_UNAVAILABLE,
    NOT_CONNECTED,
    RECONNECT_NEEDED,
)
from together_reconcile.gorgias.tokens import GorgiasTokenRefresher, TokenBlocked, needs_refresh
from together_reconcile.h11_client import AsyncH11Client
from together_reconcile.reconcile.desired import (
    TOKEN_HEADER,
    check_public_url,
    desired_integration,
    desired_widget,
)
from together_reconcile.reconcile.kinds import INTEGRATION, KINDS, Kind
from together_reconcile.reconcile.plan import (
    AccountPlan,
    DesiredResources,
    Observation,
    Plan,
    blocked,
    plan_account,
    sorted_plan,
)
from together_reconcile.reconcile.select import covered
from together_reconcile.secrets import Keyring, fingerprint
from together_reconcile.store import Credential, Store

GorgiasAuth = BearerAuth | BasicAuth
T = TypeVar("T")
ClientFactory = Callable[[str, GorgiasAuth], GorgiasClient]

PUBLIC_URL_ENV = "TOGETHER_PUBLIC_URL"
SECRET_KEYS_ENV = "TOGETHER_SECRET_KEYS"  # noqa: S105 - a variable name
# An in-sync account costs 2 sequential requests: at 50 ms each, 1,000 accounts wait 0.8 s.
DEFAULT_PLAN_CONCURRENCY = 128


class SetupError(TogetherError):
    """A missing or bad setting: the message says what to set."""


@dataclass(frozen=True)
class Blocked:
    """Why an account cannot be observed or changed (a `plan` blocked reason)."""

    reason: str
    message: str | None = None


class GorgiasAuthProvider:
    """Credentials → the auth to call Gorgias with, or why there is none.

    The seam for OAuth refresh: `auth_for` is where an expiring token gets refreshed before
    use, and `rejected` is where a 401 can trigger one refresh and a retry.
    """

    def __init__(
        self,
        credentials: Mapping[str, Credential],
        refresher: GorgiasTokenRefresher | None = None,
    ) -> None:
        self._credentials = {domain.lower(): cred for domain, cred in credentials.items()}
        self._refresher = refresher
        self._checked: set[str] = set()  # refreshed (if it had to be) during this run

    @classmethod
    def from_store(
        cls,
        store: Store,
        domains: Iterable[str],
        refresher: GorgiasTokenRefresher | None = None,
    ) -> GorgiasAuthProvider:
        """Read every account's Gorgias credentials in one query."""
        return cls(store.get_credentials("gorgias", list(domains)), refresher)

    def _refreshed(self, domain: str, fresh: Credential | TokenBlocked) -> GorgiasAuth | Blocked:
        if isinstance(fresh, TokenBlocked):
            return Blocked(fresh.reason, fresh.message)
        self._checked.add(domain.lower())
        self._credentials[domain.lower()] = fresh
        return _auth(fresh)

    def may_refresh(self, domain: str) -> bool:
        """`auth_for` would ask the token endpoint first (the token expires soon)."""
        credential = self._credentials.get(domain.lower())
        return bool(
            self._refresher
            and credential
            and domain.lower() not in self._checked
            and needs_refresh(credential, datetime.now(UTC))
        )

    def auth_for(self, domain: str) -> GorgiasAuth | Blocked:
        if self._refresher is not None and self.may_refresh(domain):
            return self._refreshed(domain, self._refresher.fresh(domain))
        return _auth(self._credentials.get(domain.lower()))

    def rejected(self, domain: str) -> GorgiasAuth | Blocked:
        """Gorgias answered 401 to `auth_for`'s auth: a new auth to retry with, or why not."""
        credential = self._credentials.get(domain.lower())
        if self._refresher is None or credential is None:
            return Blocked(CREDENTIALS_REJECTED)
        return self._refreshed(
            domain, self._refresher.after_rejection(domain, credential.access_token)
        )


def _auth(credential: Credential | None) -> GorgiasAuth | Blocked:
    if credential is None:
        return Blocked(NOT_CONNECTED)
    if credential.status == "reconnect_needed":
        return Blocked(RECONNECT_NEEDED)
    if credential.username:
        return BasicAuth(credential.username, credential.access_token)
    return BearerAuth(credential.access_token)


class SharedTransportClientFactory:
    """Builds each account's `GorgiasClient` on one shared sender (`new_sender`: kept-alive
    connections per thread and host, one SSL context; the account's auth goes with each
    request): an account client costs no connection, SSL context or proxy lookup."""

    def __init__(self) -> None:
        self._sender: Sender | None = None
        self._lock = threading.Lock()

    def sender(self) -> Sender:
        with self._lock:
            if self._sender is None:
                self._sender = new_sender()
            return self._sender

    def __call__(self, domain: str, auth: GorgiasAuth) -> GorgiasClient:
        return GorgiasClient(domain, auth, http=self.sender())


default_client_factory: ClientFactory = SharedTransportClientFactory()


@dataclass(frozen=True)
class DesiredState:
    """The desired resources of every account in the accounts folder."""

    accounts: Mapping[str, AccountFile]
    public_url: str
    keyring: Keyring
    commit: str | None
    older_keyrings: tuple[Keyring, ...] = ()  # one per older key of TOGETHER_SECRET_KEYS

    def rotated(self, domain: str) -> frozenset[tuple[str, str]]:
        """Live values a key rotation legitimately replaces (the update cap does not count
        them): the event token header derived from each older key, as plans show it."""
        field = f"{INTEGRATION.name} http.headers.{TOKEN_HEADER}"
        return frozenset(
            (field, fingerprint(older.event_token(domain))) for older in self.older_keyrings
        )

    def resources(self, domain: str) -> DesiredResources | None:
        """None when the account is disabled or has no file (all of ours must go)."""
        account_file = self.accounts.get(domain)
        if account_file is None or not account_file.account.enabled:
            return None
        integration = desired_integration(
            account_file,
            public_url=self.public_url,
            event_token=self.keyring.event_token(domain),
            commit=self.commit,
        )
        account = account_file.account

        def widget(integration_id: int | None) -> dict[str, Any]:
            return desired_widget(account, integration_id)

        return DesiredResources(integration, widget)


@dataclass(frozen=True)
class Reconciler:
    """Everything planning and applying need: desired state, managed accounts, Gorgias access."""

    desired: DesiredState
    managed: Collection[str]
    auth: GorgiasAuthProvider
    client_factory: ClientFactory = default_client_factory
    kinds: tuple[Kind, ...] = KINDS  # what is planned and applied (reconcile.kinds)
    # Each account's object ids as its last apply recorded them (kind name -> id): a guess
    # that lets a plan list the children of a root object while listing the roots; what is
    # observed decides, the guess only saves a round trip when it is right.
    last_applied: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def scope(self, only: Iterable[str] = ()) -> list[str]:
        """The accounts covered: every account file plus every managed account (or `only`)."""
        return covered(self.desired.accounts, self.managed, only)

    def client(self, domain: str, auth: GorgiasAuth) -> GorgiasClient:
        return self.client_factory(domain, auth)


# One list to make: a kind's objects under a parent (None for a root kind).
Listing = tuple[Kind, int | None]


def _observation_steps(kinds: Sequence[Kind]) -> Generator[Listing, list[JSON], Observation]:
    """What to list, kind by kind (every object of each root kind, the children of ours),
    and the `Observation` made of the answers: the logic, whichever way the lists are made."""
    listed: dict[str, list[JSON]] = {}
    ours: dict[str, list[int]] = {}
    for kind in kinds:
        if kind.parent is None:
            objects = yield (kind, None)
        else:
            objects = []
            for parent_id in ours[kind.parent]:
                objects.extend((yield (kind, parent_id)))
        listed[kind.listed_as] = objects
        ours[kind.name] = [
            obj["id"] for obj in objects if kind.is_ours(obj) and isinstance(obj.get("id"), int)
        ]
    builtin = ("integrations", "widgets")
    return Observation(
        tuple(listed.get("integrations", ())),
        tuple(listed.get("widgets", ())),
        {name: tuple(objects) for name, objects in listed.items() if name not in builtin},
    )


def observe(client: GorgiasClient, kinds: Sequence[Kind] = KINDS) -> Observation:
    """Every object of each root kind (every integration), and the children of ours (the
    widgets bound to our integrations), listed through each kind's `fetch` in this thread."""
    steps = _observation_steps(kinds)
    try:
        kind, parent_id = next(steps)
        while True:
            kind, parent_id = steps.send(kind.fetch(client, parent_id))
    except StopIteration as done:
        observation: Observation = done.value
        return observation


async def observe_async(
    client: GorgiasClient,
    kinds: Sequence[Kind],
    sender: AsyncSender,
    likely_ids: Mapping[str, int] | None = None,
) -> Observation:
    """`observe`, each list sent through `sender` on the running event loop (every kind
    must have a `listing`).

    `likely_ids` (kind name -> id, from the last apply) lists the children of those objects
    at the same time as their parents' kind: an in-sync account then costs one round trip
    instead of two. A list is used only if the observation asks for it (the object is still
    ours); a wrong guess is cancelled, and its list is made again the usual way."""

    def listing(kind: Kind, parent_id: int | None) -> Awaitable[list[JSON]]:
        if kind.listing is None:
            raise ValueError(f"the {kind.name} kind has no listing to observe it with")
        return client.list_async(sender, *kind.listing(parent_id))

    guesses = likely_ids or {}
    early: dict[tuple[str, int | None], asyncio.Future[list[JSON]]] = {}
    for kind in kinds:
        guess = guesses.get(kind.parent) if kind.parent else None
        if guess is not None:
            early[(kind.name, guess)] = asyncio.ensure_future(listing(kind, guess))
    steps = _observation_steps(kinds)
    try:
        kind, parent_id = next(steps)
        while True:
            started = early.pop((kind.name, parent_id), None)
            objects = await (started if started is not None else listing(kind, parent_id))
            kind, parent_id = steps.send(objects)
    except StopIteration as done:
        observation: Observation = done.value
        return observation
    finally:
        for unused in early.values():  # a wrong guess, or the observation failed first
            unused.cancel()
        if early:
            await asyncio.gather(*early.values(), return_exceptions=True)


def observation_failure(error: GorgiasError) -> Blocked:
    if isinstance(error, CredentialsRejected):
        return Blocked(CREDENTIALS_REJECTED)
    if isinstance(error, GorgiasUnavailable):
        return Blocked(GORGIAS_UNAVAILABLE, str(error))
    return Blocked(GORGIAS_ERROR, str(error))


@dataclass(frozen=True)
class _Observer:
    """How `make_plan` observes: Gorgias lists on the event loop through `sender`; anything
    that may block (a token refresh, a client or kind without async listing, a proxy: no
    `sender`) in the worker threads of `pool`."""

    reconciler: Reconciler
    sender: AsyncSender | None
    pool: ThreadPoolExecutor

    async def off_loop(self, function: Callable[[str], T], domain: str) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, domain)

    async def auth_for(self, domain: str) -> GorgiasAuth | Blocked:
        auth = self.reconciler.auth
        if auth.may_refresh(domain):  # a token request: not on the loop
            return await self.off_loop(auth.auth_for, domain)
        return auth.auth_for(domain)

    async def observation(self, domain: str, auth: GorgiasAuth) -> Observation:
        kinds = self.reconciler.kinds
        sender = self.sender
        with self.reconciler.client(domain, auth) as client:
            on_loop = isinstance(client, GorgiasClient) and all(kind.listing for kind in kinds)
            if sender is not None and on_loop:
                likely_ids = self.reconciler.last_applied.get(domain)
                return await observe_async(client, kinds, sender, likely_ids)
            return await self.off_loop(lambda _domain: observe(client, kinds), domain)


async def _plan_one(observer: _Observer, domain: str) -> AccountPlan:
    """Observe one account and diff it; failures become a blocked account, never an exception."""
    reconciler = observer.reconciler
    desired = reconciler.desired.resources(domain)
    wanted = desired is not None
    auth = await observer.auth_for(domain)
    if isinstance(auth, Blocked):
        return blocked(domain, auth.reason, wanted=wanted, message=auth.message)
    try:
        observation = await observer.observation(domain, auth)
    except CredentialsRejected:
        retry = await observer.off_loop(reconciler.auth.rejected, domain)
        if isinstance(retry, Blocked):
            return blocked(domain, retry.reason, wanted=wanted, message=retry.message)
        try:
            observation = await observer.observation(domain, retry)
        except GorgiasError as error:
            failure = observation_failure(error)
            return blocked(domain, failure.reason, wanted=wanted, message=failure.message)
    except GorgiasError as error:
        failure = observation_failure(error)
        return blocked(domain, failure.reason, wanted=wanted, message=failure.message)
    return plan_account(domain, desired, observation, reconciler.kinds)


def make_plan(
    reconciler: Reconciler,
    domains: Iterable[str],
    *,
    concurrency: int = DEFAULT_PLAN_CONCURRENCY,
) -> Plan:
    """Observe `domains`, `concurrency` accounts at a time, and diff each one.

    The accounts are observed on one asyncio event loop (`h11_client.AsyncH11Client`), not a
    thread each: 128 threads taking turns at the GIL cost about 40 % more CPU per request, and
    CPU is what bounds a plan of many accounts (`benchmarks/plan_scale.py`)."""
    domains = list(domains)
    if not domains:
        return sorted_plan(())
    lanes = max(1, min(concurrency, len(domains)))
    return sorted_plan(asyncio.run(_plan_all(reconciler, domains, lanes)))


async def _plan_all(reconciler: Reconciler, domains: list[str], lanes: int) -> list[AccountPlan]:
    sender = (
        None
        if proxy_configured()
        else AsyncH11Client(headers=DEFAULT_HEADERS, timeouts=DEFAULT_TIMEOUT)
    )
    plans: dict[int, AccountPlan] = {}
    queue = iter(enumerate(domains))
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="observe") as pool:
        observer = _Observer(reconciler, sender, pool)

        async def lane() -> None:
            for index, domain in queue:  # one queue: each lane takes the next account
                plans[index] = await _plan_one(observer, domain)

        try:
            await asyncio.gather(*(lane() for _ in range(lanes)))
        finally:
            if sender is not None:
                await sender.aclose()
    return [plans[index] for index in range(len(domains))]


# -- Setup shared by `plan` and `apply` ------------------------------------------------------


def public_url_from_env(environ: Mapping[str, str]) -> str:
    value = (environ.get(PUBLIC_URL_ENV) or "").strip()
    if not value:
        raise SetupError(
            f"{PUBLIC_URL_ENV} is not set: set it to the public base URL of the event handler "
            "(e.g. https://together.example.com); the integration calls "
            f"{{{PUBLIC_URL_ENV}}}/gorgias/events"
        )
    try:
        return check_public_url(value)
    except ValueError as error:
        raise SetupError(f"{PUBLIC_URL_ENV} {error}") from None


@dataclass(frozen=True)
class Session:
    """An opened store and the reconciler built from it (close the store when done)."""

    store: Store
    reconciler: Reconciler


def open_session(
    accounts_dir: Path,
    state_url: str,
    *,
    environ: Mapping[str, str] | None = None,
    client_factory: ClientFactory = default_client_factory,
) -> Session:
    """Check settings first (nothing is written when one is missing), then open the store.

    Raises `SetupError`, `SecretKeysError`, `ConfigError` or `StoreError`.
    """
    env = os.environ if environ is None else environ
    public_url = public_url_from_env(env)
    keyring = Keyring.from_env(env.get(SECRET_KEYS_ENV))
    older = tuple(Keyring.from_env(key) for key in env[SECRET_KEYS_ENV].split(",")[1:])
    accounts = load_accounts(accounts_dir)
    store = Store.open(state_url, keyring)
    try:
        managed = store.list_managed()
        desired = DesiredState(
            accounts, public_url, keyring, env.get("GITHUB_SHA") or None, older_keyrings=older
        )
        domains = set(accounts) | set(managed)
        refresher = GorgiasTokenRefresher.from_env(store, env)
        auth = GorgiasAuthProvider.from_store(store, domains, refresher)
    except BaseException:
        store.close()
        raise
    last_applied = {
        domain: {INTEGRATION.name: record.integration_id}
        for domain, record in managed.items()
        if record.integration_id is not None
    }
    reconciler = Reconciler(
        desired, frozenset(managed), auth, client_factory, last_applied=last_applied
    )
    return Session(store, reconciler)
