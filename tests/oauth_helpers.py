"""Getting real tokens from the sandbox's OAuth endpoints, as a merchant's connect would."""

from __future__ import annotations

from typing import Any

import httpx

from together_reconcile.gorgias.oauth import SCOPES
from together_reconcile.sandbox import RunningSandbox


def sandbox_tokens(
    sandbox: RunningSandbox,
    http: httpx.Client,
    *,
    account: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
) -> dict[str, Any]:
    """The token answer of an authorize (auto-approved) + authorization-code exchange."""
    base = sandbox.gorgias_url_template.format(account=account)
    authorize = http.get(
        base + "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPES,
        },
    )
    code = httpx.URL(authorize.headers["location"]).params["code"]
    answer: dict[str, Any] = http.post(
        base + "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        auth=(client_id, client_secret),
    ).json()
    return answer
