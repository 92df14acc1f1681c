"""The account model: what one `accounts/<subdomain>.yaml` holds, and the rules for its domains.

`Account` is the single source of truth: the JSON Schema in `schemas/` is generated from it
(`config.schema`). The plain rules it uses (domain patterns, limits, `domain_problem`) live in
`config.rules`, which the fast `validate` path uses without importing pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from together_reconcile.config.rules import (
    DEFAULT_WIDGET_TITLE,
    GORGIAS_ACCOUNT_PATTERN,
    MAX_LOOKBACK_DAYS,
    MAX_WIDGET_ORDER,
    SHOPIFY_STORE_PATTERN,
    TITLE_MARKUP_CHARACTERS,
    WIDGET_TITLE_PATTERN,
    title_problem,
)


class WidgetSettings(BaseModel):
    """Where and how the Together widget shows in the Gorgias sidebar."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="Widget")

    context: Literal["ticket", "customer"] = Field(
        "ticket",
        title="Context",
        description="Sidebar the widget shows in: `ticket` (default) or `customer`.",
    )
    order: Annotated[int, Field(ge=0, le=MAX_WIDGET_ORDER)] = Field(
        0,
        title="Order",
        description=(
            f"Position among the sidebar widgets, 0 to {MAX_WIDGET_ORDER}; lower numbers show "
            "first. Default 0."
        ),
    )
    title: Annotated[str, Field(min_length=1, max_length=100, pattern=WIDGET_TITLE_PATTERN)] = (
        Field(
            DEFAULT_WIDGET_TITLE,
            title="Title",
            description=(
                "Card title agents see above the final-sale orders: plain text of at most 100 "
                "characters, without markup characters ("
                + " ".join(TITLE_MARKUP_CHARACTERS)
                + "), line breaks, tabs or other control characters."
            ),
            examples=["Final-sale orders"],
        )
    )

    @field_validator("title")
    @classmethod
    def _plain_title(cls, value: str) -> str:
        problem = title_problem(value, "title")
        if problem is not None:
            raise ValueError(problem.removeprefix("title: "))
        return value


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
