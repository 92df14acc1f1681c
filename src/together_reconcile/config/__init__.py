"""Account files: the public API of `accounts/<subdomain>.yaml` — model, loading, validation.

An account file links one Shopify store to one Gorgias account. The pieces live in:

- `rules`: domain patterns, limits and file names (no pydantic);
- `account`: the model (`Account`, `WidgetSettings`), loaded on first use;
- `schema`: the JSON Schema generated from the model, and the shape check;
- `fastcheck`: a quick, dependency-free "surely valid" for that schema;
- `yamlmarks`: reading a file and composing its YAML with the position of every node;
- `secretscan`: what looks like a secret;
- `check`: every problem of each file, and the clashes between files;
- `problems`: `Problem`, `ValidationReport`, `ConfigError`.

This module is what the rest of the program uses: `load_accounts`, `validate_paths`,
`new_account_file`, and the names above re-exported.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from together_reconcile.config.check import account_files, check_file, check_paths, check_text
from together_reconcile.config.problems import (
    AccountInputError,
    ConfigError,
    Problem,
    ValidationReport,
)
from together_reconcile.config.rules import (
    ACCOUNT_FILE_SUFFIXES,
    DEFAULT_WIDGET_TITLE,
    GORGIAS_ACCOUNT_PATTERN,
    GORGIAS_ACCOUNT_RE,
    MAX_FILE_BYTES,
    MAX_LOOKBACK_DAYS,
    SCHEMA_COMMENT,
    SCHEMA_ID,
    SHOPIFY_STORE_PATTERN,
    SHOPIFY_STORE_RE,
    SUBDOMAIN_PATTERN,
    SUBDOMAIN_RE,
    domain_problem,
)
from together_reconcile.config.secretscan import looks_like_secret

if TYPE_CHECKING:
    from together_reconcile.config.account import Account, AccountFile, WidgetSettings
    from together_reconcile.config.schema import account_json_schema, render_json_schema

# The model (pydantic) loads on first use: `validate` on valid files never needs it.
_LAZY = {
    "Account": "together_reconcile.config.account",
    "AccountFile": "together_reconcile.config.account",
    "WidgetSettings": "together_reconcile.config.account",
    "account_json_schema": "together_reconcile.config.schema",
    "render_json_schema": "together_reconcile.config.schema",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ACCOUNT_FILE_SUFFIXES",
    "DEFAULT_WIDGET_TITLE",
    "GORGIAS_ACCOUNT_PATTERN",
    "GORGIAS_ACCOUNT_RE",
    "MAX_FILE_BYTES",
    "MAX_LOOKBACK_DAYS",
    "SCHEMA_COMMENT",
    "SCHEMA_ID",
    "SHOPIFY_STORE_PATTERN",
    "SHOPIFY_STORE_RE",
    "SUBDOMAIN_PATTERN",
    "SUBDOMAIN_RE",
    "Account",
    "AccountFile",
    "AccountInputError",
    "ConfigError",
    "Problem",
    "ValidationReport",
    "WidgetSettings",
    "account_file_text",
    "account_json_schema",
    "domain_problem",
    "load_accounts",
    "looks_like_secret",
    "new_account_file",
    "render_json_schema",
    "validate_paths",
]


def validate_paths(paths: Sequence[Path], accounts_dir: Path) -> ValidationReport:
    """Check account files (files or folders; none = `accounts_dir`) and report every problem.

    Cross-file checks (the same store or Gorgias account twice) always cover the whole
    `accounts_dir`, so checking only the changed files still catches a clash with another.
    """
    return check_paths(paths, accounts_dir, build_models=False).report


def load_accounts(accounts_dir: Path) -> dict[str, AccountFile]:
    """Every account in `accounts_dir`, keyed by Gorgias domain; ConfigError if any is invalid."""
    if not accounts_dir.is_dir():
        raise ConfigError(
            [Problem(accounts_dir, 1, 1, "accounts folder not found: check --accounts-dir")]
        )
    from together_reconcile.config.account import AccountFile

    run = check_paths([accounts_dir], accounts_dir)
    if run.report.problems:
        raise ConfigError(run.report.problems)
    accounts: dict[str, AccountFile] = {}
    for result in run.results:
        assert result.account is not None
        accounts[result.account.gorgias_account] = AccountFile(result.account, result.path)
    return accounts


# --------------------------------------------------------------------------- new account file


def account_file_text(account: Account) -> str:
    """The text `new` writes: the schema comment and the two required keys."""
    return (
        f"{SCHEMA_COMMENT}\n"
        f"shopify_store: {account.shopify_store}\n"
        f"gorgias_account: {account.gorgias_account}\n"
    )


def new_account_file(accounts_dir: Path, subdomain: str, store: str) -> Path:
    """Write `accounts_dir/<subdomain>.yaml` linking `store`; AccountInputError if not valid.

    `subdomain` may be `acme` or `acme.gorgias.com`, any case. Nothing is written unless the
    new file is valid, does not exist yet, and its store is not linked in another file.
    """
    gorgias = subdomain.strip().lower()
    if "." not in gorgias and "/" not in gorgias:
        gorgias += ".gorgias.com"
    store = store.strip()
    for field_name, value, label in (
        ("gorgias_account", gorgias, "SUBDOMAIN"),
        ("shopify_store", store, "--store"),
    ):
        message = domain_problem(field_name, value, label)  # type: ignore[arg-type]
        if message is not None:
            raise AccountInputError(message)
    from together_reconcile.config.account import Account

    account = Account(shopify_store=store, gorgias_account=gorgias)
    path = accounts_dir / f"{account.gorgias_subdomain}.yaml"
    for suffix in ACCOUNT_FILE_SUFFIXES:
        existing = path.with_suffix(suffix)
        if existing.exists():
            raise AccountInputError(f"{existing} already exists: edit it instead")
    text = account_file_text(account)
    problems = check_text(path, text).problems
    if problems:  # cannot happen for valid inputs; never write a file `validate` rejects
        raise AccountInputError("; ".join(problem.message for problem in problems))
    if accounts_dir.is_dir():
        for other in account_files(accounts_dir):
            linked = check_file(other).store
            if linked is not None and linked[0] == account.shopify_store:
                raise AccountInputError(
                    f"--store: {account.shopify_store} is already linked in {other}: "
                    "a store links to one Gorgias account"
                )
    accounts_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise AccountInputError(f"{path} already exists: edit it instead") from None
    return path
