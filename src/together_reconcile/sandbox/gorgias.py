"""The Gorgias stand-in: `/gorgias/{account}/api/{integrations|widgets}[/{id}][/]`.

Behaviour follows shared/reference/gorgias-api.md: a list envelope with opaque cursors,
Bearer (or Basic) auth per account, `{"error": {"msg", "data"}}` bodies, 404 HTML for an unknown
account, a leaky-bucket rate limit with 429 + Retry-After and `X-Gorgias-Account-Api-Call-Limit`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import json
import math
from collections.abc import Callable
from typing import Any

from together_reconcile.sandbox import gorgias_schema as schema
from together_reconcile.sandbox import oauth
from together_reconcile.sandbox.http import (
    Request,
    Response,
    empty_response,
    html_response,
    json_response,
)
from together_reconcile.sandbox.state import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    ControlError,
    GorgiasAccount,
    SandboxState,
    utc_now_naive_iso,
)

CALL_LIMIT_HEADER = "X-Gorgias-Account-Api-Call-Limit"
UNKNOWN_ACCOUNT_HTML = (
    "<!DOCTYPE html><html><head><title>Page not found</title></head>"
    "<body><h1>Page not found</h1><p>There is no helpdesk at this address.</p></body></html>"
)
COLLECTIONS = ("integrations", "widgets")
LIST_PARAMS = {
    "integrations": {"limit", "cursor", "order_by", "type"},
    "widgets": {"limit", "cursor", "order_by", "integration_id", "app_id"},
}
ORDERINGS = {
    "integrations": ("created_datetime:asc", "created_datetime:desc"),
    "widgets": ("created_datetime:asc", "created_datetime:desc", "order:asc", "order:desc"),
}


def error(
    status: int, msg: str, data: Any = None, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {"msg": msg}
    if data is not None:
        body["data"] = data
    return json_response(status, {"error": body}, headers)


def unauthorized() -> Response:
    return error(401, "Unauthorized.")


def not_found() -> Response:
    return error(404, "Resource not found.")


# ------------------------------------------------------------------ objects (shared with control)
def collection(account: GorgiasAccount, kind: str) -> dict[int, dict[str, Any]]:
    return account.integrations if kind == "integrations" else account.widgets


def build_object(state: SandboxState, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A new stored object from a body: defaults, then the body, then server-set fields."""
    now = utc_now_naive_iso()
    obj_id = state.new_id()
    if kind == "integrations":
        obj: dict[str, Any] = {
            "description": None,
            "deactivated_datetime": None,
            "application_id": None,
            "managed": False,
            "meta": {},
            "user": {"id": 1},
        }
    else:
        obj = {
            "context": "ticket",
            "order": 0,
            "integration_id": None,
            "app_id": None,
            "deactivated_datetime": None,
        }
    obj.update(copy.deepcopy(body))
    if kind == "integrations" and isinstance(obj.get("http"), dict):
        http: dict[str, Any] = {
            "id": state.new_http_id(),
            "headers": {},
            "form": None,
            "triggers": dict(schema.DEFAULT_TRIGGERS),
            "execution_order": 0,
        }
        http.update({k: v for k, v in obj["http"].items() if k != "id"})
        obj["http"] = http
    server_set = {"id": obj_id, "uri": f"/api/{kind}/{obj_id}/"}
    stamps = {"created_datetime": now, "updated_datetime": now}
    rest = {k: v for k, v in obj.items() if k not in server_set and k not in stamps}
    return {**server_set, **rest, **stamps}


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def insert_object(
    state: SandboxState, account: str, kind: str, obj: dict[str, Any]
) -> dict[str, Any]:
    """Store a foreign object as-is (no validation); server-set fields are assigned."""
    if not isinstance(obj, dict):
        raise ControlError("obj must be a JSON object")
    with state.lock:
        record = state.account(account)
        stored = build_object(state, kind, obj)
        collection(record, kind)[stored["id"]] = stored
        return copy.deepcopy(stored)


def edit_object(
    state: SandboxState, account: str, kind: str, obj_id: int, patch: dict[str, Any]
) -> dict[str, Any]:
    """A human edit in the Gorgias UI: deep-merge `patch`, no validation."""
    if not isinstance(patch, dict):
        raise ControlError("patch must be a JSON object")
    with state.lock:
        items = collection(state.account(account), kind)
        if obj_id not in items:
            raise ControlError(f"no {kind[:-1]} {obj_id} in account {account!r}")
        merged = deep_merge(items[obj_id], patch)
        merged.update(id=obj_id, updated_datetime=utc_now_naive_iso())
        items[obj_id] = merged
        return copy.deepcopy(merged)


def remove_object(state: SandboxState, account: str, kind: str, obj_id: int) -> None:
    with state.lock:
        items = collection(state.account(account), kind)
        if items.pop(obj_id, None) is None:
            raise ControlError(f"no {kind[:-1]} {obj_id} in account {account!r}")


def list_objects(state: SandboxState, account: str, kind: str) -> list[dict[str, Any]]:
    with state.lock:
        return copy.deepcopy(list(collection(state.account(account), kind).values()))


# ------------------------------------------------------------------ auth and rate limit
def authenticate(state: SandboxState, account: GorgiasAccount, header: str) -> str | None:
    """The auth kind ("bearer" or "basic") if the Authorization header is valid here."""
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    now = state.clock()
    if scheme.lower() == "bearer" and credential:
        for token, record in account.tokens.items():
            if hmac.compare_digest(token.encode(), credential.encode()) and record.usable(now):
                return record.kind
        return None
    if scheme.lower() == "basic" and credential:
        try:
            decoded = base64.b64decode(credential, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        email, sep, key = decoded.partition(":")
        expected = account.basic_keys.get(email)
        if sep and expected is not None and hmac.compare_digest(expected.encode(), key.encode()):
            return "basic"
    return None


# ------------------------------------------------------------------ paging
def _encode_cursor(direction: str, order_by: str, key: tuple[Any, ...]) -> str:
    raw = json.dumps({"d": direction, "o": order_by, "k": list(key)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, order_by: str) -> tuple[str, tuple[Any, ...]] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        direction, key = data["d"], tuple(data["k"])
        if direction not in ("next", "prev") or data["o"] != order_by:
            return None
        return direction, key
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def _int_param(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def list_page(
    state: SandboxState, kind: str, request: Request, items: list[dict[str, Any]]
) -> Response:
    params = request.query()
    unknown = sorted(set(params) - LIST_PARAMS[kind])
    if unknown:
        return error(
            400,
            f"No such field: {', '.join(unknown)}",
            {name: ["Unknown field."] for name in unknown},
        )
    requested = DEFAULT_PAGE_SIZE
    if "limit" in params:
        parsed = _int_param(params["limit"][-1])
        if parsed is None:
            return error(400, "Not a valid integer.", {"limit": ["Not a valid integer."]})
        if parsed > MAX_PAGE_SIZE:
            return error(
                400,
                f"Must be at most {MAX_PAGE_SIZE}",
                {"limit": [f"Must be at most {MAX_PAGE_SIZE}."]},
            )
        if parsed < 1:
            return error(400, "Must be at least 1", {"limit": ["Must be at least 1."]})
        requested = parsed
    limit = min(requested, state.knobs.page_size)
    order_by = params.get("order_by", ["created_datetime:asc"])[-1]
    if order_by not in ORDERINGS[kind]:
        choices = ", ".join(ORDERINGS[kind])
        return error(
            400, f"Must be one of: {choices}.", {"order_by": [f"Must be one of: {choices}."]}
        )
    filtered = _filter(kind, params, items)
    if isinstance(filtered, Response):
        return filtered
    field_name, _, direction = order_by.partition(":")
    descending = direction == "desc"

    def key(obj: dict[str, Any]) -> tuple[Any, ...]:
        if field_name == "order":
            return (obj.get("order") or 0, obj["id"])
        return (obj["id"],)

    def after(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
        return a < b if descending else a > b

    ordered = sorted(filtered, key=key, reverse=descending)
    if "cursor" in params:
        decoded = _decode_cursor(params["cursor"][-1], order_by)
        if decoded is None:
            return error(400, "Invalid cursor.", {"cursor": ["Invalid cursor."]})
        cursor_direction, cursor_key = decoded
        if cursor_direction == "next":
            page = [o for o in ordered if after(key(o), cursor_key)][:limit]
        else:
            page = [o for o in ordered if after(cursor_key, key(o))][-limit:]
    else:
        page = ordered[:limit]
    has_next = bool(page) and any(after(key(o), key(page[-1])) for o in ordered)
    has_prev = bool(page) and any(after(key(page[0]), key(o)) for o in ordered)
    meta = {
        "prev_cursor": _encode_cursor("prev", order_by, key(page[0])) if has_prev else None,
        "next_cursor": _encode_cursor("next", order_by, key(page[-1])) if has_next else None,
    }
    body = {"object": "list", "uri": f"/api/{kind}", "data": page, "meta": meta}
    return json_response(200, body)


def _filter(
    kind: str, params: dict[str, list[str]], items: list[dict[str, Any]]
) -> list[dict[str, Any]] | Response:
    if kind == "integrations" and "type" in params:
        wanted = params["type"][-1]
        return [o for o in items if o.get("type") == wanted]
    if kind == "widgets":
        if "integration_id" in params:
            integration_id = _int_param(params["integration_id"][-1])
            if integration_id is None:
                return error(
                    400, "Not a valid integer.", {"integration_id": ["Not a valid integer."]}
                )
            items = [o for o in items if o.get("integration_id") == integration_id]
        if "app_id" in params:
            items = [o for o in items if o.get("app_id") == params["app_id"][-1]]
    return items


# ------------------------------------------------------------------ create / update
def _parse_body(request: Request) -> dict[str, Any] | Response:
    try:
        body = json.loads(request.body.decode("utf-8"))
    except UnicodeDecodeError:
        return error(400, "Malformed request body: not UTF-8.")
    except json.JSONDecodeError as exc:
        return error(
            400, f"Malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}."
        )
    if not isinstance(body, dict):
        return error(400, "Invalid input type: the body must be a JSON object.")
    return body


def _unknown_fields(kind: str, body: dict[str, Any]) -> Response | None:
    if kind == "integrations":
        errors = schema.unknown_integration_fields(body)
    else:
        errors = schema.unknown_widget_fields(body)
    if not errors:
        return None
    names = [k for k in errors if k != "http"]
    names += [f"http.{k}" for k in errors.get("http", {})]
    return error(400, f"No such field: {', '.join(names)}", errors)


def _check(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return schema.check_integration(obj) if kind == "integrations" else schema.check_widget(obj)


def _writable(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    read_only = schema.INTEGRATION_READ_ONLY if kind == "integrations" else schema.WIDGET_READ_ONLY
    cleaned = schema.strip_read_only(body, read_only)
    if isinstance(cleaned.get("http"), dict):
        cleaned["http"] = schema.strip_read_only(cleaned["http"], schema.HTTP_READ_ONLY)
    return cleaned


def _widget_integration_missing(
    account: GorgiasAccount, body: dict[str, Any], previous: dict[str, Any] | None
) -> Response | None:
    integration_id = body.get("integration_id")
    unchanged = previous is not None and previous.get("integration_id") == integration_id
    if integration_id is None or unchanged or integration_id in account.integrations:
        return None
    return error(
        400,
        "Validation error.",
        {"integration_id": [f"Integration {integration_id} does not exist."]},
    )


def create(state: SandboxState, account: GorgiasAccount, kind: str, request: Request) -> Response:
    body = _parse_body(request)
    if isinstance(body, Response):
        return body
    problem = _unknown_fields(kind, body)
    if problem:
        return problem
    body = _writable(kind, body)
    errors = _check(kind, body)
    if errors:
        return error(400, "Validation error.", errors)
    if kind == "widgets" and _widget_integration_missing(account, body, None):
        return _widget_integration_missing(account, body, None)  # type: ignore[return-value]
    obj = build_object(state, kind, body)
    collection(account, kind)[obj["id"]] = obj
    return json_response(201, obj)


def update(
    state: SandboxState, account: GorgiasAccount, kind: str, obj_id: int, request: Request
) -> Response:
    items = collection(account, kind)
    if obj_id not in items:
        return not_found()
    body = _parse_body(request)
    if isinstance(body, Response):
        return body
    problem = _unknown_fields(kind, body)
    if problem:
        return problem
    body = _writable(kind, body)
    current = items[obj_id]
    if "type" in body and body["type"] != current.get("type"):
        return error(400, "Validation error.", {"type": ["Cannot be changed after creation."]})
    merged = copy.deepcopy(current)
    for key, value in body.items():
        if key == "http" and isinstance(value, dict) and isinstance(merged.get("http"), dict):
            merged["http"] = {**merged["http"], **copy.deepcopy(value)}
        else:
            merged[key] = copy.deepcopy(value)
    errors = _check(kind, merged)
    if errors:
        return error(400, "Validation error.", errors)
    if kind == "widgets":
        missing = _widget_integration_missing(account, merged, current)
        if missing:
            return missing
    merged["updated_datetime"] = utc_now_naive_iso()
    items[obj_id] = merged
    return json_response(200, merged)


# ------------------------------------------------------------------ entry point
def handle(state: SandboxState, request: Request, account_name: str, rest: str) -> Response:
    """Answer one Gorgias API request (latency and faults are applied by the caller)."""
    with state.lock:
        account = state.accounts.get(account_name)
        if account is None:
            return html_response(404, UNKNOWN_ACCOUNT_HTML)
        if rest.startswith("oauth/"):  # the app's own auth: no bearer token, no rate limit
            return oauth.handle(state, request, account, rest)
        kind = authenticate(state, account, request.headers.get("authorization", ""))
        if kind is None:
            return unauthorized()
        allowed, used, wait = state.bucket(account, kind).take(state.clock())
        limit = state.bucket(account, kind).limit
        headers = {CALL_LIMIT_HEADER: f"{used}/{limit}"}
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return error(429, "Too Many Requests.", None, headers)
        response = _route(state, account, request, rest)
        response.headers.update(headers)
        return response


def _route(state: SandboxState, account: GorgiasAccount, request: Request, rest: str) -> Response:
    segments = [s for s in rest.split("/") if s]
    if len(segments) < 2 or segments[0] != "api" or segments[1] not in COLLECTIONS:
        return not_found()
    kind = segments[1]
    items = collection(account, kind)
    handlers: dict[str, Callable[[], Response]]
    if len(segments) == 2:
        handlers = {
            "GET": lambda: list_page(state, kind, request, list(items.values())),
            "POST": lambda: create(state, account, kind, request),
        }
    elif len(segments) == 3:
        obj_id = _int_param(segments[2])
        if obj_id is None or obj_id not in items:
            return not_found()

        def delete() -> Response:
            del items[obj_id]
            return empty_response(204)

        handlers = {
            "GET": lambda: json_response(200, items[obj_id]),
            "PUT": lambda: update(state, account, kind, obj_id, request),
            "DELETE": delete,
        }
    else:
        return not_found()
    handler = handlers.get(request.method)
    if handler is None:
        return error(405, "Method not allowed.", None, {"Allow": ", ".join(handlers)})
    return handler()
