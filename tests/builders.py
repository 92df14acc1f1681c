"""Shared builders and fakes for the reconcile tests (plan, render, apply, kinds).

Values as Gorgias returns them (`live_integration`, `live_widget`), the desired state of one
account (`desired`), an in-memory Gorgias (`FakeGorgias`) and a reconciler over fakes and a real
store (`make_reconciler`). Test modules import from here, never from each other.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from together_reconcile.config import Account, AccountFile
from together_reconcile.gorgias.client import NotFound
from together_reconcile.reconcile.desired import desired_integration, desired_widget
from together_reconcile.reconcile.kinds import KINDS, Kind
from together_reconcile.reconcile.observe import DesiredState, GorgiasAuthProvider, Reconciler
from together_reconcile.reconcile.plan import DesiredResources
from together_reconcile.secrets import Keyring
from together_reconcile.store import Store

DOMAIN = "acme.gorgias.com"
TOKEN = "event-token-for-acme"
ACCOUNT = Account(shopify_store="acme.myshopify.com", gorgias_account=DOMAIN)
FILE = AccountFile(ACCOUNT, Path("accounts/acme.yaml"))


def desired(commit: str = "c1", token: str = TOKEN) -> DesiredResources:
    body = desired_integration(
        FILE, public_url="https://t.example.com", event_token=token, commit=commit
    )
    return DesiredResources(body, lambda iid: desired_widget(ACCOUNT, iid))


def live_integration(iid: int = 10, **changes: Any) -> dict[str, Any]:
    """Our integration as Gorgias returns it: read-only and extra fields included."""
    body = copy.deepcopy(dict(desired().integration))
    body.update(
        id=iid,
        uri=f"/api/integrations/{iid}/",
        created_datetime="2026-01-01T00:00:00",
        updated_datetime="2026-01-02T00:00:00",
        deactivated_datetime=None,
        managed=False,
        meta={},
    )
    body["http"].update(id=900 + iid, execution_order=0)
    body.update(changes)
    return body


def live_widget(wid: int = 20, iid: int = 10, **changes: Any) -> dict[str, Any]:
    body = desired_widget(ACCOUNT, iid)
    body.update(id=wid, uri=f"/api/widgets/{wid}/", app_id=None, deactivated_datetime=None)
    body.update(changes)
    return body


class FakeGorgias:
    """In-memory Gorgias for one account; counts writes."""

    def __init__(self) -> None:
        self.integrations: dict[int, dict[str, Any]] = {}
        self.widgets: dict[int, dict[str, Any]] = {}
        self.writes: list[str] = []
        self.next_id = 100

    def __enter__(self) -> FakeGorgias:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def _new(self, table: dict[int, dict[str, Any]], body: Any) -> dict[str, Any]:
        self.next_id += 1
        obj = {**json.loads(json.dumps(body)), "id": self.next_id, "deactivated_datetime": None}
        table[self.next_id] = obj
        return obj

    def list_integrations(self) -> list[dict[str, Any]]:
        return list(self.integrations.values())

    def list_widgets(self, integration_id: int | None = None) -> list[dict[str, Any]]:
        return [
            w
            for w in self.widgets.values()
            if integration_id is None or w["integration_id"] == integration_id
        ]

    def create_integration(self, body: Any) -> dict[str, Any]:
        self.writes.append("POST integration")
        return self._new(self.integrations, body)

    def create_widget(self, body: Any) -> dict[str, Any]:
        self.writes.append("POST widget")
        return self._new(self.widgets, body)

    def update_integration(self, iid: int, body: Any) -> dict[str, Any]:
        self.writes.append("PUT integration")
        self.integrations[iid].update(json.loads(json.dumps(body)))
        return self.integrations[iid]

    def update_widget(self, wid: int, body: Any) -> dict[str, Any]:
        self.writes.append("PUT widget")
        self.widgets[wid].update(json.loads(json.dumps(body)))
        return self.widgets[wid]

    def delete_integration(self, iid: int) -> None:
        self.writes.append("DELETE integration")
        if self.integrations.pop(iid, None) is None:
            raise NotFound(404, "gone", "DELETE", "/api/integrations")

    def delete_widget(self, wid: int) -> None:
        self.writes.append("DELETE widget")
        if self.widgets.pop(wid, None) is None:
            raise NotFound(404, "gone", "DELETE", "/api/widgets")


def make_reconciler(
    keyring: Keyring,
    fakes: dict[str, Any],
    accounts: dict[str, bool],
    store: Store,
    kinds: tuple[Kind, ...] = KINDS,
) -> Reconciler:
    files = {
        f"{sub}.gorgias.com": AccountFile(
            Account(
                shopify_store=f"{sub}.myshopify.com",
                gorgias_account=f"{sub}.gorgias.com",
                enabled=enabled,
            ),
            Path(f"accounts/{sub}.yaml"),
        )
        for sub, enabled in accounts.items()
    }
    desired_state = DesiredState(files, "https://t.example.com", keyring, "sha1")
    managed = store.list_managed()
    domains = set(files) | set(managed)
    return Reconciler(
        desired_state,
        frozenset(managed),
        GorgiasAuthProvider.from_store(store, domains),
        lambda domain, _auth: fakes[domain],
        kinds,
    )
