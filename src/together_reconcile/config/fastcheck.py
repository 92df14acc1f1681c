"""A quick, dependency-free yes to "does this document satisfy the account schema?".

`surely_valid(schema, document)` answers True only when it is certain that jsonschema would
find no error: it understands the few keywords the account schema uses (types, properties,
required, additionalProperties: false, patterns matched whole, lengths, bounds, enums) and
says False for anything else — a keyword it does not know, a float where an integer is
expected, a non-string key. False is not a verdict: the caller then runs jsonschema, which
stays the authority for every document that is not surely valid, and for every message.

This keeps `validate` on a valid file free of jsonschema and pydantic, whose imports alone
cost more than the rest of the command.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

# Keywords that never change a verdict.
_ANNOTATIONS = frozenset(
    {"title", "description", "examples", "default", "$schema", "$id", "$comment"}
)
_UNDERSTOOD = _ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "enum",
}


@cache
def _whole(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _has_type(value: Any, name: str) -> bool:
    if name == "string":
        return type(value) is str
    if name == "integer":
        return type(value) is int
    if name == "number":
        return type(value) in (int, float)
    if name == "boolean":
        return type(value) is bool
    if name == "null":
        return value is None
    if name == "object":
        return type(value) is dict
    return False  # "array" and anything unknown: let jsonschema decide


def surely_valid(schema: Any, value: Any) -> bool:
    """True only if `value` certainly satisfies `schema`; False means "ask jsonschema"."""
    if schema is True:
        return True
    if not isinstance(schema, dict) or not set(schema) <= _UNDERSTOOD:
        return False
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_has_type(value, name) for name in names):
            return False
    if "enum" in schema and not any(
        type(value) is type(option) and value == option for option in schema["enum"]
    ):
        return False
    if type(value) is str and not _string_fits(schema, value):
        return False
    if type(value) in (int, float) and not _number_fits(schema, value):
        return False
    if type(value) is dict:
        return _object_fits(schema, value)
    return True


def _string_fits(schema: dict[str, Any], value: str) -> bool:
    if len(value) < schema.get("minLength", 0):
        return False
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return False
    # The whole value must match, which is stricter than the schema's search: a pass is certain.
    return "pattern" not in schema or _whole(schema["pattern"]).fullmatch(value) is not None


def _number_fits(schema: dict[str, Any], value: float) -> bool:
    if "minimum" in schema and not value >= schema["minimum"]:
        return False
    return "maximum" not in schema or value <= schema["maximum"]


def _object_fits(schema: dict[str, Any], value: dict[Any, Any]) -> bool:
    properties = schema.get("properties", {})
    if not all(type(key) is str for key in value):
        return False
    if any(key not in value for key in schema.get("required", ())):
        return False
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            if not surely_valid(properties[key], item):
                return False
        elif extra is not True:
            return False
    return True
