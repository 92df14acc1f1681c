"""Fire a stored HTTP integration the way Gorgias does, and keep its JSON answer."""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from together_reconcile.sandbox.state import ControlError, SandboxState

FIRE_TIMEOUT_S = 10.0
VARIABLE_RE = re.compile(r"\{\{\s*([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)\s*\}\}")
WHOLE_CONTEXT = "{{context}}"


def lookup(context: dict[str, Any], dotted: str) -> str:
    """`ticket.customer.email` in the context; missing or null → ""."""
    value: Any = context
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return ""
        value = value[part]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def render(template: str, context: dict[str, Any]) -> str:
    return VARIABLE_RE.sub(lambda match: lookup(context, match.group(1)), template)


def render_form(form: Any, context: dict[str, Any]) -> Any:
    if isinstance(form, str):
        return render(form, context)
    if isinstance(form, dict):
        return {key: render_form(value, context) for key, value in form.items()}
    if isinstance(form, list):
        return [render_form(value, context) for value in form]
    return form


def _loopback_host(host: str) -> bool:
    host = host.lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(url: str) -> bool:
    """True when both the standard library and httpx (which sends the request) read a loopback
    host in `url`: a URL the two parsers read differently is refused."""
    try:
        sent_to = httpx.URL(url).host
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    try:
        parsed = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return _loopback_host(sent_to) and _loopback_host(parsed)


def fire(state: SandboxState, account: str, integration_id: int, ticket: Any) -> dict[str, Any]:
    if not isinstance(ticket, dict):
        raise ControlError("ticket must be a JSON object")
    with state.lock:
        record = state.account(account)
        integration = copy.deepcopy(record.integrations.get(integration_id))
    if integration is None:
        raise ControlError(f"no integration {integration_id} in account {account!r}")
    http = integration.get("http")
    if not isinstance(http, dict) or not isinstance(http.get("url"), str):
        raise ControlError(f"integration {integration_id} is not an HTTP integration")
    ticket = copy.deepcopy(ticket)
    ticket_account = ticket.setdefault("account", {})
    if isinstance(ticket_account, dict):
        ticket_account.setdefault("domain", f"{account}.gorgias.com")
    context = {"ticket": ticket}
    url = render(http["url"], context)
    if not is_loopback(url):
        raise ControlError("the sandbox only fires integrations at loopback URLs")
    method = str(http.get("method") or "POST").upper()
    headers = {str(k): str(v) for k, v in (http.get("headers") or {}).items()}
    form = http.get("form")
    payload = context if form == WHOLE_CONTEXT else render_form(form, context)
    content_type = http.get("request_content_type") or "application/json"
    request_kwargs: dict[str, Any] = {}
    if method != "GET" and payload is not None:
        if content_type == "application/x-www-form-urlencoded" and isinstance(payload, dict):
            request_kwargs["data"] = {k: str(v) for k, v in payload.items()}
        else:
            request_kwargs["content"] = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
    try:
        # No proxy from the environment (it would carry the request off loopback), no redirect.
        with httpx.Client(
            timeout=FIRE_TIMEOUT_S, trust_env=False, follow_redirects=False
        ) as client:
            answer = client.request(method, url, headers=headers, **request_kwargs)
    except httpx.HTTPError as exc:
        return {"status": 0, "body": None, "error": type(exc).__name__}
    try:
        body: Any = answer.json()
    except ValueError:
        body = answer.text
    is_json = "json" in answer.headers.get("content-type", "")
    email = (
        ticket.get("customer", {}).get("email")
        if isinstance(ticket.get("customer"), dict)
        else None
    )
    if 200 <= answer.status_code < 300 and is_json and isinstance(email, str) and email:
        with state.lock:
            customers = state.account(account).customers
            customers.setdefault(email.lower(), {})[str(integration_id)] = body
    return {"status": answer.status_code, "body": body}


def customer_data(state: SandboxState, account: str, email: str) -> dict[str, Any]:
    with state.lock:
        return copy.deepcopy(state.account(account).customers.get(email.lower(), {}))
