"""Checking account files: every problem of each file, then the clashes between files.

One file: read and compose it (`yamlmarks`), check its shape against the JSON Schema
(`account_schema`, turned into messages that say what to fix), then its file name and the model.
Across files: the same Shopify store, or the same Gorgias account, in two files.
"""

from __future__ import annotations

import difflib
import gc
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from together_reconcile.config.fastcheck import surely_valid
from together_reconcile.config.problems import Position, Problem, ValidationReport, shown_path
from together_reconcile.config.rules import (
    ACCOUNT_FILE_SUFFIXES,
    DOMAINS,
    domain_problem,
    title_problem,
)
from together_reconcile.config.schema import packaged_schema, shape_checker
from together_reconcile.config.secretscan import quote_safely

if TYPE_CHECKING:
    from together_reconcile.config.account import Account
from together_reconcile.config.yamlmarks import (
    Document,
    build,
    compose,
    dotted,
    read_text,
    resolve_plain,
)

_TYPE_WORDS = {
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "object": "a mapping of keys",
    "array": "a list",
    "null": "nothing",
}


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _unquoted_fits(value: Any, expected: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    resolved = resolve_plain(value)
    types = expected if isinstance(expected, list) else [expected]
    import jsonschema

    checker = jsonschema.Draft202012Validator.TYPE_CHECKER
    return not isinstance(resolved, str) and any(checker.is_type(resolved, t) for t in types)


@dataclass
class FileResult:
    path: Path
    problems: list[Problem]
    account: Account | None = None
    store: tuple[str, Position] | None = None
    gorgias: tuple[str, Position] | None = None


def _schema_problems(doc: Document, data: dict[str, Any]) -> bool:
    """Shape problems: the JSON Schema, turned into messages that say what to fix.

    True when the document is surely valid (`fastcheck`): jsonschema was not needed.
    """
    if surely_valid(packaged_schema(), data):
        return True
    for path, error in shape_checker().errors(data):
        name = dotted(path)
        where = doc.value_at(path)
        keyword = error.validator
        schema = error.schema if isinstance(error.schema, dict) else {}
        value: Any = error.instance
        rule: Any = error.validator_value
        if keyword == "additionalProperties":
            known = list(schema.get("properties", {}))
            for key in value:
                if key in known:
                    continue
                position = doc.key_at((*path, key), where)
                inside = f" in {name}" if name else ""
                shown = f'"{key}"' if quote_safely(key) else "(not shown: looks like a secret)"
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                if close:
                    hint = f'did you mean "{close[0]}"?'
                else:
                    hint = "allowed keys are " + ", ".join(known)
                doc.add(position, f"unknown key {shown}{inside}: {hint}")
        elif keyword == "required":
            present = set(value) if isinstance(value, dict) else set()
            for key in rule:
                if key not in present:
                    inside = f" in {name}" if name else ""
                    doc.add(where if path else (1, 1), f'missing required key "{key}"{inside}')
        elif keyword == "type":
            expected = rule
            words = (
                " or ".join(_TYPE_WORDS[t] for t in expected if t != "null")
                if isinstance(expected, list)
                else _TYPE_WORDS[expected]
            )
            hint = (
                " (remove the quotes)"
                if path in doc.quoted and _unquoted_fits(value, expected)
                else ""
            )
            label = name or "the file"
            if not path:
                doc.add(
                    where,
                    f"expected a mapping with shopify_store and gorgias_account, "
                    f"got {_kind_of(value)}",
                )
            else:
                doc.add(where, f"{label}: expected {words}, got {_kind_of(value)}{hint}")
        elif keyword == "pattern" and path == ("widget", "title") and isinstance(value, str):
            if value:  # empty: minLength says so
                doc.add(where, title_problem(value) or f"{name}: use plain text")
        elif keyword == "pattern" and path and path[-1] in DOMAINS and len(path) == 1:
            doc.add(where, domain_problem(path[-1], value) or f"{name}: not a valid domain")  # type: ignore[arg-type]
        elif keyword in ("minimum", "maximum"):
            low, high = schema.get("minimum"), schema.get("maximum")
            allowed = (
                f"between {low} and {high}"
                if low is not None and high is not None
                else (f"{low} or more" if low is not None else f"{high} or less")
            )
            doc.add(where, f"{name}: must be {allowed}, got {value}")
        elif keyword == "maxLength":
            doc.add(
                where,
                f"{name}: too long ({len(value)} characters, at most {rule})",
            )
        elif keyword == "minLength":
            doc.add(where, f"{name}: must not be empty")
        elif keyword == "enum":
            options = " or ".join(f'"{o}"' for o in rule)
            shown = (
                f", got{quote_safely(value)}"
                if isinstance(value, str) and quote_safely(value)
                else ""
            )
            doc.add(where, f"{name}: must be {options}{shown}")
        else:
            doc.add(where, f"{name or 'the file'}: does not match the schema ({keyword})")
    return False


def check_text(path: Path, text: str, *, build_model: bool = True) -> FileResult:
    """Every problem of one file's text, and its account if there are none.

    `build_model=False` (what `validate` asks) skips building the `Account` when the file is
    surely valid (`fastcheck`): the schema and the file-name rules then decide every problem,
    and pydantic is not even imported. Otherwise the model still checks what a schema can
    let through (`1.0` as an integer).
    """
    composed = compose(path, text)
    if isinstance(composed, Problem):
        return FileResult(path, [composed])
    if isinstance(composed, list):
        return FileResult(path, composed)
    if composed is None or (
        isinstance(composed, yaml.ScalarNode) and not composed.style and composed.value == ""
    ):
        return FileResult(
            path, [Problem(path, 1, 1, "file is empty: write shopify_store and gorgias_account")]
        )
    doc = Document(path)
    doc.value_nodes[()] = composed
    data = build(composed, (), doc)
    surely = _schema_problems(doc, data)
    result = FileResult(path, doc.problems)
    if not isinstance(data, dict):
        return result
    store, gorgias = data.get("shopify_store"), data.get("gorgias_account")
    for key in DOMAINS:
        value = data.get(key)
        message = domain_problem(key, value) if isinstance(value, str) else None  # type: ignore[arg-type]
        where = doc.value_at((key,))
        if message is not None and all((p.line, p.col) != where for p in doc.problems):
            # The schema's pattern (a search, where `$` may match before a final newline in
            # Python) let it through: say what is wrong in the same words as for any bad domain.
            doc.add(where, message)
    widget = data.get("widget")
    title = widget.get("title") if isinstance(widget, dict) else None
    message = title_problem(title) if isinstance(title, str) else None
    where = doc.value_at(("widget", "title"))
    if message is not None and all((p.line, p.col) != where for p in doc.problems):
        doc.add(where, message)  # e.g. "Title\n" (a `|` block): the schema's `$` allowed it
    if isinstance(store, str) and domain_problem("shopify_store", store) is None:
        result.store = (store.lower(), doc.value_at(("shopify_store",)))
    if isinstance(gorgias, str) and domain_problem("gorgias_account", gorgias) is None:
        result.gorgias = (gorgias.lower(), doc.value_at(("gorgias_account",)))
        subdomain = result.gorgias[0].split(".", 1)[0]
        if path.stem != subdomain:
            doc.add(
                result.gorgias[1],
                f'file name "{shown_path(path.name)}" does not match gorgias_account '
                f'"{result.gorgias[0]}": '
                f"rename the file to {subdomain}.yaml or correct gorgias_account",
            )
    if not doc.problems and (build_model or not surely):
        from pydantic import ValidationError

        from together_reconcile.config.account import Account

        try:
            result.account = Account.model_validate(data)
        except ValidationError as exc:  # the schema and the model disagree: still say where
            for item in exc.errors():
                location = tuple(item["loc"])
                doc.add(doc.value_at(location), f"{dotted(location)}: {item['msg']}")
    return result


def check_file(path: Path, *, build_model: bool = True) -> FileResult:
    text = read_text(path)
    if isinstance(text, Problem):
        return FileResult(path, [text])
    return check_text(path, text, build_model=build_model)


def account_files(folder: Path) -> list[Path]:
    """The account files directly in `folder`, by name (hidden files are skipped). Links with
    an account file's name are listed too, so that reading them reports the link."""
    with os.scandir(folder) as entries:
        names = sorted(
            entry.name
            for entry in entries
            if entry.name.endswith(ACCOUNT_FILE_SUFFIXES)
            and not entry.name.startswith(".")
            and (entry.is_file() or entry.is_symlink())
        )
    return [folder / name for name in names]


class _Files:
    """Files to check, each once, identified by their normalised absolute path."""

    def __init__(self) -> None:
        self._cwd = os.getcwd()
        self.paths: dict[str, Path] = {}
        self.folders: set[str] = set()

    def key(self, path: Path) -> str:
        return os.path.normpath(os.path.join(self._cwd, path))

    def folder(self, folder: Path) -> dict[str, Path]:
        """The account files of `folder`, keyed (the folder is normalised once, not per file)."""
        folder_key = self.key(folder)
        self.folders.add(folder_key)
        prefix = os.path.join(folder_key, "")
        return {prefix + path.name: path for path in account_files(folder)}

    def add(self, path: Path) -> None:
        self.paths.setdefault(self.key(path), path)


def _cross_file_problems(
    checked: Iterable[FileResult], everything: Iterable[FileResult]
) -> Iterator[Problem]:
    """The same store, or the same Gorgias account, in two files of the whole accounts dir."""
    by_store: dict[str, list[FileResult]] = {}
    by_account: dict[str, list[FileResult]] = {}
    for result in everything:
        if result.store is not None:
            by_store.setdefault(result.store[0], []).append(result)
        if result.gorgias is not None:
            by_account.setdefault(result.gorgias[0], []).append(result)
    checked_ids = {id(result) for result in checked}
    for owners, field_name, clash in (
        (by_store, "shopify_store", "is also linked in {}: a store links to one Gorgias account"),
        (by_account, "gorgias_account", "is also configured in {}: keep one file per account"),
    ):
        for domain, results in owners.items():
            if len(results) < 2:
                continue
            for result in results:
                if id(result) not in checked_ids:
                    continue
                others = ", ".join(
                    shown_path(other.path) for other in results if other is not result
                )
                found = result.store if field_name == "shopify_store" else result.gorgias
                assert found is not None
                (line, col) = found[1]
                message = f'{field_name} "{domain}" ' + clash.format(others)
                yield Problem(result.path, line, col, message)


@dataclass
class CheckRun:
    report: ValidationReport
    results: list[FileResult]


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cycle collector while loading many files.

    Loading allocates many small objects and keeps the results alive, so the collector's
    generational passes (which walk every live object) would run over and over for nothing:
    nothing built here forms a reference cycle.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def check_paths(
    paths: Sequence[Path], accounts_dir: Path, *, build_models: bool = True
) -> CheckRun:
    """Every problem of `paths` (and the clashes with the whole `accounts_dir`); each result
    carries its `Account` unless `build_models=False`."""
    with _no_cyclic_gc():
        return _run_checks(paths, accounts_dir, build_models)


def _run_checks(paths: Sequence[Path], accounts_dir: Path, build_models: bool) -> CheckRun:
    files = _Files()
    problems: list[Problem] = []
    for path in paths or [accounts_dir]:
        if path.is_dir():
            for key, child in files.folder(path).items():
                files.paths.setdefault(key, child)
        elif path.is_file() or path.is_symlink():  # a link: reading it says so
            files.add(path)
        else:
            problems.append(Problem(path, 1, 1, "no such file or folder"))
    checked = {key: check_file(path, build_model=build_models) for key, path in files.paths.items()}
    everything = dict(checked)
    if files.key(accounts_dir) not in files.folders and accounts_dir.is_dir():
        for key, path in files.folder(accounts_dir).items():
            if key not in everything:
                everything[key] = check_file(path, build_model=False)
    for result in checked.values():
        problems.extend(result.problems)
    problems.extend(_cross_file_problems(checked.values(), everything.values()))
    problems.sort()
    return CheckRun(ValidationReport(len(checked), problems), list(checked.values()))
