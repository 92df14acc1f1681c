"""The control API: `POST /_control/{call}` with a JSON object of arguments, on the server;
`SandboxController`, the Python wrapper tests and the demo use."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from together_reconcile.sandbox import fire as firing
from together_reconcile.sandbox import gorgias, oauth, shopify
from together_reconcile.sandbox.http import Request, Response, json_response
from together_reconcile.sandbox.state import ControlError, SandboxState

Call = Callable[..., Any]


def _calls(state: SandboxState) -> dict[str, Call]:
    def integration_ops(kind: str) -> dict[str, Call]:
        single = kind[:-1]
        return {
            f"insert_{single}": lambda account, obj: gorgias.insert_object(
                state, account, kind, obj
            ),
            f"edit_{single}": lambda account, id, patch: gorgias.edit_object(
                state, account, kind, id, patch
            ),
            f"remove_{single}": lambda account, id: gorgias.remove_object(state, account, kind, id),
            kind: lambda account: gorgias.list_objects(state, account, kind),
        }

    return {
        "reset": state.reset,
        "add_gorgias_account": state.add_gorgias_account,
        "add_shopify_store": state.add_shopify_store,
        "add_orders": lambda store, orders: shopify.add_orders(state, store, orders),
        **integration_ops("integrations"),
        **integration_ops("widgets"),
        "set_page_size": state.set_page_size,
        "set_latency": state.set_latency,
        "set_rate_limit": state.set_rate_limit,
        "add_fault": state.add_fault,
        "clear_faults": state.clear_faults,
        "requests": state.requests,
        "clear_requests": state.clear_requests,
        "fire": lambda account, integration_id, ticket: firing.fire(
            state, account, integration_id, ticket
        ),
        "customer_data": lambda account, email: firing.customer_data(state, account, email),
        "set_oauth_client": lambda client_id, client_secret: oauth.set_oauth_client(
            state, client_id, client_secret
        ),
        "set_token_lifetime": lambda seconds: oauth.set_token_lifetime(state, seconds),
        "expire_tokens": lambda account: oauth.expire_tokens(state, account),
        "revoke_refresh_tokens": lambda account: oauth.revoke_refresh_tokens(state, account),
        "oauth_status": lambda account: oauth.oauth_status(state, account),
    }


def handle(state: SandboxState, request: Request, call: str) -> Response:
    calls = _calls(state)
    if call not in calls:
        return json_response(404, {"error": f"unknown control call {call!r}; see the docs"})
    if request.method != "POST":
        return json_response(405, {"error": "control calls are POST with a JSON object"})
    try:
        args = json.loads(request.body.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return json_response(400, {"error": "the body must be a JSON object"})
    if not isinstance(args, dict):
        return json_response(400, {"error": "the body must be a JSON object"})
    try:
        result = calls[call](**args)
    except TypeError as exc:
        return json_response(400, {"error": f"bad arguments for {call}: {exc}"})
    except ControlError as exc:
        return json_response(400, {"error": str(exc)})
    return json_response(200, {"result": result})


class SandboxControlError(RuntimeError):
    """The sandbox refused a control call; the message says why."""


class SandboxController:
    """Drive a running sandbox over its control API (`base_url` = the sandbox's root URL)."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        # The sandbox is on loopback: no proxy from the environment.
        self._client = httpx.Client(
            base_url=self.base_url + "/_control/", timeout=timeout_s, trust_env=False
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SandboxController:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, name: str, **args: Any) -> Any:
        answer = self._client.post(name, json=args)
        payload = answer.json()
        if answer.status_code != 200:
            raise SandboxControlError(f"{name}: {payload.get('error', answer.text)}")
        return payload["result"]

    # -- world
    def reset(self) -> None:
        self._call("reset")

    def add_gorgias_account(
        self, account: str, token: str, *, api_email: str | None = None, api_key: str | None = None
    ) -> None:
        self._call(
            "add_gorgias_account",
            account=account,
            token=token,
            api_email=api_email,
            api_key=api_key,
        )

    def add_shopify_store(self, store: str, token: str) -> None:
        self._call("add_shopify_store", store=store, token=token)

    def add_orders(self, store: str, orders: list[dict[str, Any]]) -> None:
        self._call("add_orders", store=store, orders=orders)

    # -- Gorgias objects, as a human in the UI
    def insert_integration(self, account: str, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("insert_integration", account=account, obj=obj)
        return result

    def insert_widget(self, account: str, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("insert_widget", account=account, obj=obj)
        return result

    def edit_integration(self, account: str, id: int, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("edit_integration", account=account, id=id, patch=patch)
        return result

    def edit_widget(self, account: str, id: int, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("edit_widget", account=account, id=id, patch=patch)
        return result

    def remove_integration(self, account: str, id: int) -> None:
        self._call("remove_integration", account=account, id=id)

    def remove_widget(self, account: str, id: int) -> None:
        self._call("remove_widget", account=account, id=id)

    def integrations(self, account: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("integrations", account=account)
        return result

    def widgets(self, account: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("widgets", account=account)
        return result

    # -- knobs
    def set_page_size(self, n: int) -> None:
        self._call("set_page_size", n=n)

    def set_latency(
        self, *, gorgias_ms: float | None = None, shopify_ms: float | None = None
    ) -> None:
        self._call("set_latency", gorgias_ms=gorgias_ms, shopify_ms=shopify_ms)

    def set_rate_limit(self, limit: int, window_s: float) -> None:
        self._call("set_rate_limit", limit=limit, window_s=window_s)

    def add_fault(
        self,
        target: str = "gorgias",
        kind: str = "status",
        *,
        status: int = 502,
        method: str | None = None,
        path_contains: str | None = None,
        account: str | None = None,
        count: int | None = 1,
        rate: float | None = None,
        delay_s: float = 0.0,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "add_fault",
            target=target,
            kind=kind,
            status=status,
            method=method,
            path_contains=path_contains,
            account=account,
            count=count,
            rate=rate,
            delay_s=delay_s,
        )
        return result

    def clear_faults(self) -> None:
        self._call("clear_faults")

    # -- observation
    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("requests")
        return result

    def clear_requests(self) -> None:
        self._call("clear_requests")

    def fire(self, account: str, integration_id: int, ticket: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "fire", account=account, integration_id=integration_id, ticket=ticket
        )
        return result

    def customer_data(self, account: str, email: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("customer_data", account=account, email=email)
        return result

    # -- OAuth (the Gorgias app store side)
    def set_oauth_client(self, client_id: str, client_secret: str) -> None:
        """Register our OAuth app: `/oauth/authorize` and `/oauth/token` accept only it."""
        self._call("set_oauth_client", client_id=client_id, client_secret=client_secret)

    def set_token_lifetime(self, seconds: float) -> None:
        """Access tokens issued from now on expire after `seconds` (default 24 h)."""
        self._call("set_token_lifetime", seconds=seconds)

    def expire_tokens(self, account: str) -> int:
        """Every bearer token of `account` expires now (the API answers 401 to them)."""
        result: int = self._call("expire_tokens", account=account)
        return result

    def revoke_refresh_tokens(self, account: str) -> int:
        """Every refresh token of `account` is refused from now on (400 invalid_grant)."""
        result: int = self._call("revoke_refresh_tokens", account=account)
        return result

    def oauth_status(self, account: str) -> dict[str, Any]:
        """`{"refresh_grants", "active_refresh_tokens", "latest_refresh_token"}` (sandbox-only
        tokens)."""
        result: dict[str, Any] = self._call("oauth_status", account=account)
        return result
