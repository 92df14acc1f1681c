"""The JSON Schema of an account file, generated from `Account`, and the shape check.

`render_json_schema()` is exactly what is committed in `schemas/account.schema.json` (what
editors use) and, as package data, in `config/account.schema.json` (what `validate` applies,
so that it needs neither pydantic to generate it nor, for a valid file, jsonschema to apply it:
see `fastcheck`). `schema --check` fails when either copy is stale. `shape_checker()` applies
the packaged schema with jsonschema to every file that is not surely valid.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from together_reconcile.config.problems import KeyPath
from together_reconcile.config.rules import SCHEMA_ID

if TYPE_CHECKING:
    import jsonschema

PACKAGED_SCHEMA_FILE = Path(__file__).with_name("account.schema.json")


def account_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an account file, generated from `Account`.

    The widget settings are inlined (no `$ref`) and `notes` is `string | null`, which reads
    better in an editor's hover and keeps the schema self-contained.
    """
    from together_reconcile.config.account import Account

    generated = Account.model_json_schema()
    definitions = generated.pop("$defs")
    properties = generated["properties"]
    widget = properties["widget"]
    reference = widget.pop("$ref")
    properties["widget"] = {**definitions[reference.rsplit("/", 1)[1]], **widget}
    notes = properties["notes"]
    notes.pop("anyOf")
    properties["notes"] = {"type": ["string", "null"], "maxLength": 2000, **notes}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **generated,
        "examples": [
            {"shopify_store": "acme.myshopify.com", "gorgias_account": "acme.gorgias.com"}
        ],
    }


def render_json_schema() -> str:
    """The schema exactly as committed in `schemas/account.schema.json`."""
    return json.dumps(account_json_schema(), indent=2, ensure_ascii=False) + "\n"


@cache
def packaged_schema() -> dict[str, Any]:
    """The schema as shipped in the package (kept equal to the generated one by `schema
    --check`); reading it costs neither pydantic nor jsonschema."""
    loaded: dict[str, Any] = json.loads(PACKAGED_SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


_SCALARS = (str, int, float, bool, type(None))
_MEMO_LIMIT = 4096


class ShapeChecker:
    """The account JSON Schema applied by jsonschema, with one validator built per object level.

    Each level's validator sees its `properties` as `true` (so `additionalProperties` and
    `required` still apply) and each property's subschema has its own pre-built validator:
    the same verdicts as validating the whole schema at once, without jsonschema building a
    sub-validator for every value of every file.

    Validation is a pure function of the instance, and account files repeat themselves
    (`enabled: true`, the same keys in every file), so verdicts are remembered: per object
    level by its keys (the only thing that level's validator looks at), per scalar by its
    type and value. A bounded memo; domains, which never repeat, simply miss.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        import jsonschema

        properties = schema.get("properties", {})
        own = {**schema, "properties": dict.fromkeys(properties, True)} if properties else schema
        self._validator = jsonschema.Draft202012Validator(own)
        self._children = {key: ShapeChecker(sub) for key, sub in properties.items()}
        self._memo: dict[object, list[tuple[KeyPath, jsonschema.ValidationError]]] = {}
        self._surely_valid = _plain_string_check(schema)

    def errors(self, instance: Any) -> list[tuple[KeyPath, jsonschema.ValidationError]]:
        """Every schema error in `instance`, each with its path relative to `instance`."""
        found = self._own_errors(instance)
        if self._children and isinstance(instance, dict):
            for key, value in instance.items():
                child = self._children.get(key)
                if child is not None:
                    nested = child.errors(value)
                    if nested:
                        found = found + [((key, *path), error) for path, error in nested]
        return found

    def _own_errors(self, instance: Any) -> list[tuple[KeyPath, jsonschema.ValidationError]]:
        if self._surely_valid is not None and self._surely_valid(instance):
            return []
        memo_key: object = None
        if isinstance(instance, dict):
            memo_key = (dict, *instance)
        elif isinstance(instance, _SCALARS):
            memo_key = (type(instance), instance)
        if memo_key is not None:
            cached = self._memo.get(memo_key)
            if cached is not None:
                return cached
        found = [(tuple(e.absolute_path), e) for e in self._validator.iter_errors(instance)]
        if memo_key is not None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[memo_key] = found
        return found


_ANNOTATIONS = frozenset({"title", "description", "examples", "default"})


def _plain_string_check(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """For a string-with-pattern schema (the two domains): a quick test that says only "valid".

    The domains never repeat, so the memo misses and jsonschema would run for every file.
    This test is stricter than the schema (the whole value must match the pattern, where
    the schema searches it), so a pass is certain; anything else still goes to jsonschema,
    which stays the authority for every value that fails, and for every message.
    """
    if schema.get("type") != "string" or "pattern" not in schema:
        return None
    if not set(schema) <= _ANNOTATIONS | {"type", "pattern", "minLength", "maxLength"}:
        return None
    pattern = re.compile(schema["pattern"])
    shortest = int(schema.get("minLength", 0))
    longest = int(schema.get("maxLength", sys.maxsize))

    def surely_valid(value: Any) -> bool:
        return (
            type(value) is str
            and shortest <= len(value) <= longest
            and pattern.fullmatch(value) is not None
        )

    return surely_valid


@cache
def shape_checker() -> ShapeChecker:
    import jsonschema

    schema = packaged_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return ShapeChecker(schema)
