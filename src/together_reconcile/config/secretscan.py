"""What looks like a secret: account files must never hold tokens or keys.

Keys named like a secret (`token`, `password`, `api_key`...) and values that look like one (a
Shopify token prefix, or 32+ characters of base64/base64url/hex) are problems; a value that
looks like a secret is never quoted back in a message.
"""

from __future__ import annotations

import re

SECRET_KEY_RE = re.compile(r"token|secret|passw(?:or)?d|api[_-]?key", re.IGNORECASE)
SECRET_VALUE_RE = re.compile(r"shp(?:at|ca|pa|ss)_[0-9A-Fa-f]|[A-Za-z0-9+/=_-]{32,}")
NO_SECRETS_HERE = (
    "secrets never go in account files: remove it "
    "(tokens are stored with `together-reconcile credentials put`)"
)


def looks_like_secret(value: str) -> bool:
    """True if `value` contains a Shopify token prefix or 32+ chars of base64/base64url/hex."""
    return len(value) >= 7 and SECRET_VALUE_RE.search(value) is not None


def quote_safely(value: str) -> str:
    """`"value"` if it is safe to show in a message, else nothing (a secret is never echoed)."""
    if len(value) <= 100 and value.isprintable() and not looks_like_secret(value):
        return f' "{value}"'
    return ""
