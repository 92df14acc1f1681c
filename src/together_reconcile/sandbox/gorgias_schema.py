"""Gorgias-like validation of integration and widget bodies (create and partial update).

Errors come back as marshmallow-style nested data: `{"field": ["message"]}`,
`{"http": {"url": ["message"]}}`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

MISSING = "Missing data for required field."
UNKNOWN = "Unknown field."
NOT_STRING = "Not a valid string."
NOT_OBJECT = "Not a valid mapping type."
NOT_INTEGER = "Not a valid integer."
NOT_BOOLEAN = "Not a valid boolean."
NOT_DATETIME = "Not a valid datetime."

INTEGRATION_FIELDS = {
    "type",
    "name",
    "description",
    "deactivated_datetime",
    "application_id",
    "meta",
    "http",
}
INTEGRATION_READ_ONLY = {"id", "uri", "created_datetime", "updated_datetime", "user", "managed"}
HTTP_FIELDS = {
    "url",
    "method",
    "headers",
    "request_content_type",
    "response_content_type",
    "form",
    "triggers",
    "execution_order",
}
HTTP_READ_ONLY = {"id"}
HTTP_REQUIRED = ("url", "method", "request_content_type", "response_content_type")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
REQUEST_CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded")
RESPONSE_CONTENT_TYPES = ("application/json",)
TRIGGERS = (
    "ticket-created",
    "ticket-updated",
    "ticket-message-created",
    "ticket-self-unsnoozed",
    "ticket-message-failed",
    "ticket-assignment-updated",
    "ticket-status-updated",
)
DEFAULT_TRIGGERS = {"ticket-created": True, "ticket-updated": True, "ticket-message-created": True}

WIDGET_FIELDS = {
    "type",
    "template",
    "context",
    "order",
    "integration_id",
    "app_id",
    "deactivated_datetime",
}
WIDGET_READ_ONLY = {"id", "uri", "created_datetime", "updated_datetime"}
WIDGET_TYPES = (
    "http",
    "shopify",
    "recharge",
    "smile",
    "magento2",
    "bigcommerce",
    "yotpo",
    "klaviyo",
    "woocommerce",
    "custom",
    "customer_external_data",
    "standalone",
)
WIDGET_CONTEXTS = ("ticket", "customer", "user")

Errors = dict[str, Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _one_of(value: Any, choices: tuple[str, ...]) -> str | None:
    if not isinstance(value, str):
        return NOT_STRING
    if value not in choices:
        return f"Must be one of: {', '.join(choices)}."
    return None


def _datetime_or_null(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return NOT_DATETIME
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return NOT_DATETIME
    return None


def _check_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return NOT_STRING
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Not a valid URL."
    host = parts.hostname.lower()
    if host.endswith((".invalid", ".test", ".example")) or host in ("invalid", "example"):
        return "The URL's host does not resolve."
    return None


def _unknown(body: dict[str, Any], allowed: set[str], read_only: set[str]) -> Errors:
    return {key: [UNKNOWN] for key in body if key not in allowed and key not in read_only}


def strip_read_only(body: dict[str, Any], read_only: set[str]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in read_only}


def unknown_integration_fields(body: dict[str, Any]) -> Errors:
    errors = _unknown(body, INTEGRATION_FIELDS, INTEGRATION_READ_ONLY)
    http = body.get("http")
    if isinstance(http, dict):
        nested = _unknown(http, HTTP_FIELDS, HTTP_READ_ONLY)
        if nested:
            errors["http"] = nested
    return errors


def unknown_widget_fields(body: dict[str, Any]) -> Errors:
    return _unknown(body, WIDGET_FIELDS, WIDGET_READ_ONLY)


def check_http(http: Any) -> Errors | list[str]:
    """Check a complete `http` block (after merging); returns errors or {}."""
    if not isinstance(http, dict):
        return [NOT_OBJECT]
    errors: Errors = {}
    for key in HTTP_REQUIRED:
        if http.get(key) is None:
            errors[key] = [MISSING]
    checks: dict[str, Callable[[Any], str | None]] = {
        "url": _check_url,
        "method": lambda v: _one_of(v, HTTP_METHODS),
        "request_content_type": lambda v: _one_of(v, REQUEST_CONTENT_TYPES),
        "response_content_type": lambda v: _one_of(v, RESPONSE_CONTENT_TYPES),
    }
    for key, check in checks.items():
        if http.get(key) is not None and key not in errors:
            problem = check(http[key])
            if problem:
                errors[key] = [problem]
    headers = http.get("headers")
    if headers is not None and (
        not isinstance(headers, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        errors["headers"] = ["Must be a mapping of strings to strings."]
    form = http.get("form")
    if form is not None and not isinstance(form, dict | str):
        errors["form"] = ["Must be an object, a string or null."]
    triggers = http.get("triggers")
    if triggers is not None:
        if not isinstance(triggers, dict):
            errors["triggers"] = [NOT_OBJECT]
        else:
            bad = {k: [f"Unknown trigger. Use one of: {', '.join(TRIGGERS)}."] for k in triggers}
            bad = {k: v for k, v in bad.items() if k not in TRIGGERS}
            bad.update({k: [NOT_BOOLEAN] for k, v in triggers.items() if not isinstance(v, bool)})
            if bad:
                errors["triggers"] = bad
    order = http.get("execution_order")
    if order is not None and not _is_int(order):
        errors["execution_order"] = [NOT_INTEGER]
    return errors


def check_integration(obj: dict[str, Any]) -> Errors:
    """Check a complete integration (a create body, or the merged result of an update)."""
    errors: Errors = {}
    for key in ("name", "type"):
        value = obj.get(key)
        if value is None:
            errors[key] = [MISSING]
        elif not isinstance(value, str):
            errors[key] = [NOT_STRING]
        elif not value.strip():
            errors[key] = ["Field may not be blank."]
    description = obj.get("description")
    if description is not None and not isinstance(description, str):
        errors["description"] = [NOT_STRING]
    problem = _datetime_or_null(obj.get("deactivated_datetime"))
    if problem:
        errors["deactivated_datetime"] = [problem]
    application_id = obj.get("application_id")
    if application_id is not None and not isinstance(application_id, str):
        errors["application_id"] = [NOT_STRING]
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        errors["meta"] = [NOT_OBJECT]
    if obj.get("type") == "http":
        if obj.get("http") is None:
            errors["http"] = [MISSING]
        else:
            http_errors = check_http(obj["http"])
            if http_errors:
                errors["http"] = http_errors
    return errors


def check_widget(obj: dict[str, Any]) -> Errors:
    """Check a complete widget (create body, or merged update)."""
    errors: Errors = {}
    if obj.get("type") is None:
        errors["type"] = [MISSING]
    else:
        problem = _one_of(obj["type"], WIDGET_TYPES)
        if problem:
            errors["type"] = [problem]
    template = obj.get("template")
    if template is None:
        errors["template"] = [MISSING]
    elif not isinstance(template, dict):
        errors["template"] = [NOT_OBJECT]
    elif not isinstance(template.get("type"), str):
        errors["template"] = {"type": [MISSING]}
    if obj.get("context") is not None:
        problem = _one_of(obj["context"], WIDGET_CONTEXTS)
        if problem:
            errors["context"] = [problem]
    for key in ("order", "integration_id"):
        if obj.get(key) is not None and not _is_int(obj[key]):
            errors[key] = [NOT_INTEGER]
    app_id = obj.get("app_id")
    if app_id is not None and not isinstance(app_id, str):
        errors["app_id"] = [NOT_STRING]
    problem = _datetime_or_null(obj.get("deactivated_datetime"))
    if problem:
        errors["deactivated_datetime"] = [problem]
    return errors
