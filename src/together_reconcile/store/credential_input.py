"""Credential input: what `credentials put` (one JSON object) and `credentials import` read.

Every key and value is checked; no message ever quotes a value that could be a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from together_reconcile.config import GORGIAS_ACCOUNT_RE, SHOPIFY_STORE_RE
from together_reconcile.errors import TogetherError
from together_reconcile.store.values import Credential, utcnow

INPUT_KEYS: dict[str, tuple[str, ...]] = {
    "gorgias": ("access_token", "refresh_token", "expires_in", "username"),
    "shopify": ("access_token",),
}
_PRINTABLE_KEY = re.compile(r"^[a-z_]{1,32}$")  # a field name, not something secret-like
_PRINTABLE_DOMAIN = re.compile(r"^[A-Za-z0-9.-]{1,100}$")


def _shown_domain(domain: str) -> str:
    """The domain quoted for a message, unless it could be a secret pasted in the wrong place."""
    if _PRINTABLE_DOMAIN.match(domain) and "." in domain:  # a token has no dots
        return repr(domain)
    return "the domain given"


class CredentialInputError(TogetherError, ValueError):
    """Input for a credential is unusable; the message never contains a value from it."""


def normalize_domain(kind: str, domain: str) -> str:
    """The lower-case domain, if it is a full domain of that kind; else `CredentialInputError`."""
    if kind == "gorgias":
        pattern, example = GORGIAS_ACCOUNT_RE, "acme.gorgias.com"
    elif kind == "shopify":
        pattern, example = SHOPIFY_STORE_RE, "acme.myshopify.com"
    else:
        shown = f" {kind!r}" if _PRINTABLE_KEY.match(kind) else ""
        raise CredentialInputError(f"unknown credential kind{shown}: use gorgias or shopify")
    if not pattern.match(domain.strip()):
        raise CredentialInputError(
            f"{_shown_domain(domain)} is not a {kind} domain: give the full domain, like {example}"
        )
    return domain.strip().lower()


def credential_from_mapping(
    kind: str, domain: str, data: object, *, now: datetime | None = None
) -> Credential:
    """Build a credential from decoded JSON (`{"access_token", ...}`), checking every key."""
    domain = normalize_domain(kind, domain)
    allowed = INPUT_KEYS[kind]
    if not isinstance(data, dict):
        raise CredentialInputError('expected a JSON object like {"access_token": "..."}')
    for key in data:
        if key not in allowed:
            shown = repr(key) if _PRINTABLE_KEY.match(str(key)) else "(not shown)"
            raise CredentialInputError(
                f"unknown key {shown} for a {kind} credential: allowed keys are "
                + ", ".join(allowed)
            )
    access = data.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise CredentialInputError('"access_token" is missing or not a non-empty string')
    refresh = data.get("refresh_token")
    if refresh is not None and (not isinstance(refresh, str) or not refresh.strip()):
        raise CredentialInputError('"refresh_token" must be a non-empty string or null')
    expires_in = data.get("expires_in")
    expires_at = None
    if expires_in is not None:
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
            raise CredentialInputError('"expires_in" must be a positive whole number of seconds')
        expires_at = (now or utcnow()) + timedelta(seconds=expires_in)
    username = data.get("username")
    if username is not None and (not isinstance(username, str) or not username.strip()):
        raise CredentialInputError('"username" must be a non-empty string or null')
    return Credential(
        kind="gorgias" if kind == "gorgias" else "shopify",
        domain=domain,
        access_token=access.strip(),
        refresh_token=refresh.strip() if refresh else None,
        expires_at=expires_at,
        username=username.strip() if username else None,
    )


def credential_from_json(
    kind: str, domain: str, document: str, *, now: datetime | None = None
) -> Credential:
    """Parse the JSON object `credentials put` reads on stdin."""
    if not document.strip():
        raise CredentialInputError(
            'nothing on stdin: pipe a JSON object like {"access_token": "..."}'
        )
    try:
        data = json.loads(document)
    except json.JSONDecodeError as error:
        # error.msg never quotes the document; the position is enough to find the problem
        raise CredentialInputError(
            f"stdin is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    return credential_from_mapping(kind, domain, data, now=now)


def credentials_from_json_lines(
    lines: Iterable[str], *, now: datetime | None = None
) -> list[Credential]:
    """Parse `credentials import` input: one `{"kind", "domain", "access_token", ...}` a line.

    Blank lines are skipped. The first bad line raises `CredentialInputError` naming its number.
    """
    parsed: list[Credential] = []
    seen: set[tuple[str, str]] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            credential = _credential_from_line(line, now=now)
            if (credential.kind, credential.domain) in seen:
                raise CredentialInputError(
                    f"{credential.kind} credential for {credential.domain} appears twice"
                )
        except CredentialInputError as error:
            raise CredentialInputError(f"line {number}: {error}") from None
        seen.add((credential.kind, credential.domain))
        parsed.append(credential)
    if not parsed:
        raise CredentialInputError(
            'no credentials in the input: expected one JSON object a line, like {"kind": '
            '"gorgias", "domain": "acme.gorgias.com", "access_token": "..."}'
        )
    return parsed


def _credential_from_line(line: str, *, now: datetime | None) -> Credential:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise CredentialInputError(f"not valid JSON (column {error.colno}: {error.msg})") from None
    if not isinstance(data, dict):
        raise CredentialInputError(
            'expected a JSON object like {"kind": "gorgias", "domain": ..., "access_token": ...}'
        )
    kind, domain = data.get("kind"), data.get("domain")
    if not isinstance(kind, str):
        raise CredentialInputError('"kind" is missing: use "gorgias" or "shopify"')
    if not isinstance(domain, str):
        raise CredentialInputError('"domain" is missing or not a string')
    rest = {key: value for key, value in data.items() if key not in ("kind", "domain")}
    return credential_from_mapping(kind, domain, rest, now=now)
