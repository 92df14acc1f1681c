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
from collections.abc import Callable
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


# The Python types each JSON Schema type admits (`type(value) is ...`: a bool is no integer).
# "array" and unknown names admit nothing here: jsonschema decides.
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
}

Check = Callable[[Any], bool]
_compiled: dict[int, tuple[Any, Check]] = {}  # id(schema) -> (schema, its check)


def surely_valid(schema: Any, value: Any) -> bool:
    """True only if `value` certainly satisfies `schema`; False means "ask jsonschema".

    The schema is compiled into a check on first use (and kept: the account schema is one
    object for the process), so each file costs only the checks its schema asks for."""
    entry = _compiled.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = _compiled[id(schema)] = (schema, compile_check(schema))
    return entry[1](value)


def _never(_value: Any) -> bool:
    return False


def _always(_value: Any) -> bool:
    return True


def compile_check(schema: Any) -> Check:
    """The check `surely_valid` applies for `schema`: each keyword turned into a test once."""
    if schema is True:
        return _always
    if not isinstance(schema, dict) or not set(schema) <= _UNDERSTOOD:
        return _never
    tests: list[Check] = []
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        admitted = frozenset(kind for name in names for kind in _TYPES.get(name, ()))
        tests.append(lambda value: type(value) in admitted)
    if "enum" in schema:
        options = tuple(schema["enum"])
        tests.append(
            lambda value: any(type(value) is type(option) and value == option for option in options)
        )
    tests.append(_string_check(schema))
    tests.append(_number_check(schema))
    tests.append(_object_check(schema))
    return lambda value: all(test(value) for test in tests)


def _string_check(schema: dict[str, Any]) -> Check:
    shortest = schema.get("minLength", 0)
    longest = schema.get("maxLength")
    # The whole value must match, which is stricter than the schema's search: a pass is certain.
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None

    def fits(value: Any) -> bool:
        if type(value) is not str:
            return True
        if len(value) < shortest or (longest is not None and len(value) > longest):
            return False
        return pattern is None or pattern.fullmatch(value) is not None

    return fits


def _number_check(schema: dict[str, Any]) -> Check:
    has_minimum, minimum = "minimum" in schema, schema.get("minimum")
    has_maximum, maximum = "maximum" in schema, schema.get("maximum")

    def fits(value: Any) -> bool:
        if type(value) not in (int, float):
            return True
        if has_minimum and not value >= minimum:
            return False
        return not has_maximum or value <= maximum

    return fits


def _object_check(schema: dict[str, Any]) -> Check:
    properties = {key: compile_check(sub) for key, sub in schema.get("properties", {}).items()}
    required = tuple(schema.get("required", ()))
    closed = schema.get("additionalProperties", True) is not True

    def fits(value: Any) -> bool:
        if type(value) is not dict:
            return True
        if not all(type(key) is str for key in value):
            return False
        if any(key not in value for key in required):
            return False
        for key, item in value.items():
            check = properties.get(key)
            if check is not None:
                if not check(item):
                    return False
            elif closed:
                return False
        return True

    return fits
