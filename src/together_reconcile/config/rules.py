"""The plain rules of an account file: domain patterns, limits, file names, and domain advice.

No pydantic here: `validate` checks a valid file with these rules and the committed schema
alone (see `fastcheck`); the model in `account` imports them from here.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

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
MAX_WIDGET_ORDER = 1000  # widget.order: 0 to this
# widget.title goes into the Gorgias widget template: printable text only, none of the
# characters that start markup or template syntax (HTML tags and entities, `{{ }}`, `[ ]`,
# quotes that close attributes, backticks, backslashes), no control, format, separator or
# bidirectional characters. Plain ECMA-262 (editors) that Python and pydantic read alike.
TITLE_MARKUP_CHARACTERS = '<>{}[]&"`\\'
WIDGET_TITLE_PATTERN = (
    r'^[^<>{}\[\]&"`\\\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f'
    r"\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]+$"
)
WIDGET_TITLE_RE = re.compile(WIDGET_TITLE_PATTERN.removesuffix("$") + r"\Z")  # no final "\n"


def title_problem(value: str, label: str = "widget.title") -> str | None:
    """Why `value` cannot be a widget title, or None if it can."""
    surrogate = any(0xD800 <= ord(char) <= 0xDFFF for char in value)  # never valid text
    if WIDGET_TITLE_RE.match(value) and not surrogate:
        return None
    shown = " ".join(TITLE_MARKUP_CHARACTERS)
    return (
        f"{label}: use plain text: no markup characters ({shown}) and no line breaks, tabs "
        "or other control characters"
    )


DEFAULT_WIDGET_TITLE = "Together"
MAX_FILE_BYTES = 64 * 1024
SCHEMA_ID = "urn:together-reconcile:schemas:account"
SCHEMA_COMMENT = "# yaml-language-server: $schema=../schemas/account.schema.json"
ACCOUNT_FILE_SUFFIXES = (".yaml", ".yml")


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
    stripped = value.strip()
    if stripped != value and len(stripped) <= 100 and pattern.match(stripped):
        # e.g. a `|` block scalar or a quoted "acme.gorgias.com\n": the line break is the problem
        return f'{label}: remove the spaces or line breaks around "{stripped.lower()}"'
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
