"""Resource kinds: what together-reconcile owns in a Gorgias account, one description each.

The observer (`observe.observe`), the planner (`plan.plan_account`) and the applier
(`apply.Applier`) name no kind: they loop over a tuple of `Kind`s (`KINDS` by default, or
`Reconciler.kinds`). Adding a kind is one `Kind` value here, its client methods, its desired
body (a field of `DesiredResources` or a function of it) and its fake in `tests/builders.py`.

The contract of a `Kind`.

A kind MUST provide
- `name`: singular (`"widget"`): the `kind` of its `ResourcePlan`s, audit rows and JSON;
- `listed_as`: its plural (`"widgets"`): where an `Observation` holds its listed objects and
  the key of its objects in the observed fingerprint;
- `fields`: the `FieldSpec`s that are ours. `diff` compares only these; anything else on a live
  object (ids, dates, fields Gorgias adds) is left alone and never causes a write;
- `desired(resources, parent_id)`: the body it should have (`parent_id` is None until the
  parent exists);
- `fetch(client, parent_id)` (list), `create(client, body)`, `update(client, id, body)`,
  `delete(client, id)`: the Gorgias calls (`create` answers the created object with its `id`).

A kind MAY provide
- `parent`: the name of the kind it is bound to, listed before it in the kinds tuple. Its
  objects carry the parent's id in `<parent>_id` (the contract: the field is named so); they
  are fetched per parent of ours, created after their parent, deleted before it, and a delete
  that goes with its deleted parent is not counted by the delete cap. Without a parent a
  kind is a root: listed once per account;
- `is_ours(obj)`: how to recognise our object among those listed (to plan it, and to adopt
  what a create whose answer was lost made). Default: every object listed (a child is ours
  when bound to our parent: `fetch` asks for those);
- `deactivated_field` and `reactivate_action`: what "deactivated" means: a non-null value in
  that field. The plan clears it (a `FieldDiff(field, value, None)`) with that action
  (`"reactivate"`, or `"update"` when the kind has no separate word for it);
- `update_body(body, diff, reactivating)`: the body of the PUT. Default: the desired body with
  the deactivated field cleared;
- `notes(listed)`: lines for objects that look like ours but are not (left alone);
- `listing(parent_id)`: what `fetch` lists, as the (path, query) of a Gorgias list: `plan`
  then lists it on its event loop (`GorgiasClient.list_async`) instead of a worker thread.

In an account the planner keeps the lowest-id object of ours of each kind per parent, updates
it in place, and deletes the others (with their children). `diff(desired, None)` is a create.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from together_reconcile.gorgias.client import INTEGRATIONS_PATH, WIDGETS_PATH, widgets_query
from together_reconcile.reconcile.desired import INTEGRATION_NAME, description_identity, is_ours
from together_reconcile.secrets import fingerprint

if TYPE_CHECKING:
    from together_reconcile.gorgias.client import GorgiasClient
    from together_reconcile.reconcile.plan import DesiredResources

JSON = dict[str, Any]


@dataclass(frozen=True)
class FieldDiff:
    """One changed field: a dotted path and its value before and after (secrets fingerprinted)."""

    field: str
    before: Any
    after: Any


# -- Field specs: how one field of ours is compared ------------------------------------------


def secret(value: Any) -> Any:
    """A header value as plans show it: `sha256:` + 8 hex digits, never the value."""
    if value is None:
        return None
    return fingerprint(value if isinstance(value, str) else json.dumps(value, sort_keys=True))


def as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def union(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    return [*first, *(key for key in second if key not in first)]


class _Diffs:
    """Collects the diffs of one object; on a create every field is new (before None)."""

    def __init__(self, creating: bool) -> None:
        self.creating = creating
        self.found: list[FieldDiff] = []

    def add(self, path: str, before: Any, after: Any, same: bool) -> None:
        if self.creating or not same:
            self.found.append(FieldDiff(path, None if self.creating else before, after))


class FieldSpec:
    """One field of ours (or a group of them) and how it is compared: `compare` adds to `out`
    the diffs under `prefix` between the desired (`want`) and the live (`have`) object."""

    def compare(
        self, prefix: str, want: Mapping[str, Any], have: Mapping[str, Any], out: _Diffs
    ) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Value(FieldSpec):
    """A plain value, equal or not (or through `identity`: what counts as the same)."""

    name: str
    identity: Callable[[Any], Any] | None = None

    def compare(
        self, prefix: str, want: Mapping[str, Any], have: Mapping[str, Any], out: _Diffs
    ) -> None:
        before, after = have.get(self.name), want.get(self.name)
        same = (
            before == after
            if self.identity is None
            else self.identity(before) == self.identity(after)
        )
        out.add(prefix + self.name, before, after, same)


@dataclass(frozen=True)
class Nested(FieldSpec):
    """An object of fields, compared field by field (`http.url`, `http.method`...)."""

    name: str
    fields: tuple[FieldSpec, ...]

    def compare(
        self, prefix: str, want: Mapping[str, Any], have: Mapping[str, Any], out: _Diffs
    ) -> None:
        inner_want, inner_have = as_dict(want.get(self.name)), as_dict(have.get(self.name))
        for spec in self.fields:
            spec.compare(f"{prefix}{self.name}.", inner_want, inner_have, out)


@dataclass(frozen=True)
class Secrets(FieldSpec):
    """A mapping of secret values (headers): each key compared as a fingerprint."""

    name: str

    def compare(
        self, prefix: str, want: Mapping[str, Any], have: Mapping[str, Any], out: _Diffs
    ) -> None:
        wanted, had = as_dict(want.get(self.name)), as_dict(have.get(self.name))
        for key in union(wanted, had):
            before, after = secret(had.get(key)), secret(wanted.get(key))
            out.add(f"{prefix}{self.name}.{key}", before, after, before == after)


@dataclass(frozen=True)
class Keyed(FieldSpec):
    """A mapping compared key by key while both sides are mappings, else as a whole."""

    name: str

    def compare(
        self, prefix: str, want: Mapping[str, Any], have: Mapping[str, Any], out: _Diffs
    ) -> None:
        wanted, had = want.get(self.name), have.get(self.name)
        path = prefix + self.name
        if isinstance(wanted, Mapping) and (out.creating or isinstance(had, Mapping)):
            had = as_dict(had)
            for key in union(wanted, had):
                before, after = had.get(key), wanted.get(key)
                out.add(f"{path}.{key}", before, after, before == after)
        else:
            out.add(path, had, wanted, had == wanted)


@dataclass(frozen=True)
class Flags(FieldSpec):
    """A mapping of on/off switches (triggers): a key left out counts as off."""

    name: str

    def compare(
        self, prefix: str, want: Mapping[str, Any], have: Mapping[str, Any], out: _Diffs
    ) -> None:
        wanted, had = as_dict(want.get(self.name)), as_dict(have.get(self.name))
        for key in union(wanted, had):
            before, after = bool(had.get(key)), bool(wanted.get(key))
            if out.creating and not after:
                continue
            out.add(f"{prefix}{self.name}.{key}", before, after, before == after)


# -- The kind ----------------------------------------------------------------------------------


def _no_notes(_listed: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Kind:
    """One kind of resource of ours (see the module docstring for the contract)."""

    name: str
    listed_as: str
    fields: tuple[FieldSpec, ...]
    desired: Callable[[DesiredResources, int | None], Mapping[str, Any]]
    fetch: Callable[[GorgiasClient, int | None], list[JSON]]
    create: Callable[[GorgiasClient, Mapping[str, Any]], JSON]
    update: Callable[[GorgiasClient, int, Mapping[str, Any]], JSON]
    delete: Callable[[GorgiasClient, int], None]
    parent: str | None = None
    is_ours: Callable[[Mapping[str, Any]], bool] = lambda _obj: True
    deactivated_field: str | None = "deactivated_datetime"
    reactivate_action: Literal["reactivate", "update"] = "update"
    update_body: Callable[[Mapping[str, Any], Sequence[FieldDiff], bool], JSON] | None = None
    notes: Callable[[Sequence[Mapping[str, Any]]], tuple[str, ...]] = _no_notes
    listing: Callable[[int | None], tuple[str, dict[str, str]]] | None = None

    @property
    def parent_field(self) -> str | None:
        """The field of its objects naming the parent: `<parent>_id`."""
        return None if self.parent is None else f"{self.parent}_id"

    def diff(
        self, desired: Mapping[str, Any], observed: Mapping[str, Any] | None
    ) -> tuple[FieldDiff, ...]:
        """Field-level diff of the fields that are ours; `observed=None` means a create."""
        out = _Diffs(creating=observed is None)
        for spec in self.fields:
            spec.compare("", desired, observed or {}, out)
        return tuple(out.found)

    def changes(
        self, desired: Mapping[str, Any], observed: Mapping[str, Any] | None
    ) -> tuple[FieldDiff, ...]:
        """`diff`, plus the reactivation (`deactivated_field` cleared) of a deactivated object."""
        diffs = self.diff(desired, observed)
        mark = None if observed is None else self.deactivated(observed)
        if mark is None or self.deactivated_field is None:
            return diffs
        return (*diffs, FieldDiff(self.deactivated_field, mark, None))

    def deactivated(self, observed: Mapping[str, Any]) -> Any:
        """The live deactivation mark (None when active)."""
        return None if self.deactivated_field is None else observed.get(self.deactivated_field)

    def owns(self, obj: Mapping[str, Any], parent_id: int | None) -> bool:
        """Ours, and (for a child) bound to that parent."""
        if not self.is_ours(obj):
            return False
        return self.parent_field is None or obj.get(self.parent_field) == parent_id

    def body_for_update(
        self, desired: Mapping[str, Any], diff: Sequence[FieldDiff], reactivating: bool
    ) -> JSON:
        if self.update_body is not None:
            return self.update_body(desired, diff, reactivating)
        body = copy.deepcopy(dict(desired))
        if self.deactivated_field is not None:
            body[self.deactivated_field] = None
        return body


def by_name(kinds: Iterable[Kind]) -> dict[str, Kind]:
    return {kind.name: kind for kind in kinds}


# -- The two kinds of ours ---------------------------------------------------------------------


def integration_update_body(
    desired: Mapping[str, Any], diff: Sequence[FieldDiff], reactivating: bool
) -> JSON:
    """The desired integration, with triggers the UI turned on set off, and reactivation."""
    body = copy.deepcopy(dict(desired))
    triggers = body.setdefault("http", {}).setdefault("triggers", {})
    for change in diff:
        if change.field.startswith("http.triggers.") and change.after is False:
            triggers[change.field.removeprefix("http.triggers.")] = False
    if reactivating:
        body["deactivated_datetime"] = None
    return body


def foreign_integration_notes(listed: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """An integration named like ours without our marker is someone else's: say so."""
    return tuple(
        f'integration {i.get("id")} is named "{INTEGRATION_NAME}" but was not created by '
        "together-reconcile (no ownership marker): left alone"
        for i in listed
        if not is_ours(dict(i))
        and str(i.get("name", "")).strip().casefold() == INTEGRATION_NAME.casefold()
    )


INTEGRATION = Kind(
    name="integration",
    listed_as="integrations",
    fields=(
        Value("name"),
        Value("type"),
        Value("description", identity=description_identity),
        Nested(
            "http",
            (
                Value("url"),
                Value("method"),
                Value("request_content_type"),
                Value("response_content_type"),
                Secrets("headers"),
                Keyed("form"),
                Flags("triggers"),
            ),
        ),
    ),
    desired=lambda resources, _parent: resources.integration,
    fetch=lambda client, _parent: client.list_integrations(),
    listing=lambda _parent: (INTEGRATIONS_PATH, {}),
    create=lambda client, body: client.create_integration(body),
    update=lambda client, id_, body: client.update_integration(id_, body),
    delete=lambda client, id_: client.delete_integration(id_),
    is_ours=lambda obj: is_ours(dict(obj)),
    reactivate_action="reactivate",
    update_body=integration_update_body,
    notes=foreign_integration_notes,
)

WIDGET = Kind(
    name="widget",
    listed_as="widgets",
    fields=tuple(
        Value(name) for name in ("type", "context", "order", "integration_id", "template")
    ),
    desired=lambda resources, integration_id: resources.widget(integration_id),
    fetch=lambda client, integration_id: client.list_widgets(integration_id=integration_id),
    listing=lambda integration_id: (WIDGETS_PATH, widgets_query(integration_id)),
    create=lambda client, body: client.create_widget(body),
    update=lambda client, id_, body: client.update_widget(id_, body),
    delete=lambda client, id_: client.delete_widget(id_),
    parent="integration",
)

KINDS: tuple[Kind, ...] = (INTEGRATION, WIDGET)

__all__ = [
    "INTEGRATION",
    "KINDS",
    "WIDGET",
    "FieldDiff",
    "FieldSpec",
    "Flags",
    "Keyed",
    "Kind",
    "Nested",
    "Secrets",
    "Value",
    "by_name",
]
