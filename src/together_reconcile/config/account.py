"""The account model: what one `accounts/<subdomain>.yaml` holds, and the rules for its domains.

`Account` is the single source of truth: the JSON Schema in `schemas/` is generated from it
(`account_schema`), and `domain_problem` says in words why a domain is not valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from together_reconcile.config.secretscan import quote_safely


def _any_case(literal: str) -> str:
    """An ECMA-262 (and Python) pattern matching `literal` in any letter case."""
    parts = []
    for char in literal:
        if char.isalpha():
            parts.append(f"[{char.upper()}{char.lower()}]")
        else:
            parts.append(re.escape(char))
    return "".join(parts)


# Patterns are plain ECMA-262 (no inline flags) so editors understand the generated schema.
SUBDOMAIN_PATTERN = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}"
SHOPIFY_STORE_PATTERN = rf"^{SUBDOMAIN_PATTERN}\.{_any_case('myshopify.com')}$"
GORGIAS_ACCOUNT_PATTERN = rf"^{SUBDOMAIN_PATTERN}\.{_any_case('gorgias.com')}$"


def _whole_value(ecma_pattern: str) -> re.Pattern[str]:
    """Compile for Python with `$` as end of text: Python's `$` also matches before a final
    newline, so `acme.gorgias.com\n` would pass `.match` (ECMA's `$` does not allow that)."""
    return re.compile(ecma_pattern.removesuffix("$") + r"\Z")


SHOPIFY_STORE_RE = _whole_value(SHOPIFY_STORE_PATTERN)
GORGIAS_ACCOUNT_RE = _whole_value(GORGIAS_ACCOUNT_PATTERN)
SUBDOMAIN_RE = _whole_value(rf"^{SUBDOMAIN_PATTERN}$")
MAX_LOOKBACK_DAYS = 60
DEFAULT_WIDGET_TITLE = "Together"
MAX_FILE_BYTES = 64 * 1024
SCHEMA_ID = "urn:together-reconcile:schemas:account"
SCHEMA_COMMENT = "# yaml-language-server: $schema=../schemas/account.schema.json"
ACCOUNT_FILE_SUFFIXES = (".yaml", ".yml")


class WidgetSettings(BaseModel):
    """Where and how the Together widget shows in the Gorgias sidebar."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="Widget")

    context: Literal["ticket", "customer"] = Field(
        "ticket",
        title="Context",
        description="Sidebar the widget shows in: `ticket` (default) or `customer`.",
    )
    order: Annotated[int, Field(ge=0)] = Field(
        0,
        title="Order",
        description="Position among the sidebar widgets; lower numbers show first. Default 0.",
    )
    title: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        DEFAULT_WIDGET_TITLE,
        title="Title",
        description="Card title agents see above the final-sale orders (at most 100 characters).",
        examples=["Final-sale orders"],
    )


class Account(BaseModel):
    """One link between a Shopify store and a Gorgias account."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        title="Together account",
        json_schema_extra={
            "description": (
                "Links one Shopify store to one Gorgias account. The file name must be "
                "`<gorgias subdomain>.yaml`. Never put tokens or other secrets here."
            )
        },
    )

    shopify_store: str = Field(
        title="Shopify store",
        description=(
            "The store's permanent domain, `<store>.myshopify.com` — only the domain, not a "
            "URL. Each store may appear in only one account file."
        ),
        pattern=SHOPIFY_STORE_PATTERN,
        max_length=100,
        examples=["acme.myshopify.com"],
    )
    gorgias_account: str = Field(
        title="Gorgias account",
        description=(
            "The Gorgias helpdesk domain, `<account>.gorgias.com`. Its subdomain must equal "
            "the file name (`acme.gorgias.com` lives in `accounts/acme.yaml`)."
        ),
        pattern=GORGIAS_ACCOUNT_PATTERN,
        max_length=100,
        examples=["acme.gorgias.com"],
    )
    enabled: bool = Field(
        True,
        title="Enabled",
        description=(
            "`false` removes the Together integration and widget from this Gorgias account "
            "on the next apply. Default `true`. Write `true` or `false` without quotes."
        ),
    )
    lookback_days: Annotated[int, Field(ge=1, le=MAX_LOOKBACK_DAYS)] = Field(
        MAX_LOOKBACK_DAYS,
        title="Lookback days",
        description="Show final-sale orders created within this many days (1 to 60, default 60).",
        examples=[30],
    )
    widget: WidgetSettings = Field(
        default_factory=WidgetSettings,
        title="Widget",
        description="Sidebar widget settings (all optional).",
    )
    notes: str | None = Field(
        None,
        title="Notes",
        description="Free text for support staff; never shown to merchants. No secrets.",
        max_length=2000,
    )

    @field_validator("shopify_store", "gorgias_account")
    @classmethod
    def _lower_case(cls, value: str) -> str:
        return value.lower()

    @property
    def gorgias_subdomain(self) -> str:
        return self.gorgias_account.split(".", 1)[0]

    @property
    def shopify_subdomain(self) -> str:
        return self.shopify_store.split(".", 1)[0]


@dataclass(frozen=True)
class AccountFile:
    """A validated account together with the file it came from (for provenance)."""

    account: Account
    path: Path


# --------------------------------------------------------------------------- domains

DomainField = Literal["shopify_store", "gorgias_account"]
DOMAINS: dict[str, tuple[str, str, re.Pattern[str]]] = {
    "shopify_store": (".myshopify.com", "a Shopify store", SHOPIFY_STORE_RE),
    "gorgias_account": (".gorgias.com", "a Gorgias account", GORGIAS_ACCOUNT_RE),
}


def domain_problem(field_name: DomainField, value: str, label: str | None = None) -> str | None:
    """Why `value` is not a valid `field_name` domain, or None if it is valid."""
    suffix, what, pattern = DOMAINS[field_name]
    if len(value) <= 100 and pattern.match(value):
        return None
    label = label or field_name
    example = "acme" + suffix
    if "://" in value or "/" in value:
        host = urlsplit(value if "://" in value else "//" + value).hostname or ""
        if pattern.match(host):
            return f'{label}: write only the domain "{host.lower()}", not a URL'
        return f'{label}: write only the domain, e.g. "{example}", not a URL'
    if not value.lower().endswith(suffix):
        return (
            f"{label}:{quote_safely(value)} is not {what} domain: "
            f'write <name>{suffix}, e.g. "{example}"'
        )
    return (
        f"{label}:{quote_safely(value)} has an invalid name before {suffix}: use 1 to 63 "
        "letters, digits or hyphens, starting with a letter or digit"
    )
