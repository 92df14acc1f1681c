"""Local stand-ins for Gorgias and Shopify, in memory, as one plain WSGI app.

Start one with `start_sandbox(host="127.0.0.1", port=0) -> RunningSandbox` (a real threaded
server in a background thread) or `together-reconcile sandbox --port P`. A `RunningSandbox`
has `.url`, `.gorgias_url_template` (`url + "/gorgias/{account}"`), `.shopify_url_template`
(`url + "/shopify/{store}"`), `.control` (a `SandboxController`), `.stop()`; it is a context
manager.

Gorgias stand-in
    `/gorgias/{account}/api/integrations[/{id}]` and `/gorgias/{account}/api/widgets[/{id}]`
    (trailing slash accepted). `{account}` is the subdomain (`acme`). Auth: `Authorization:
    Bearer <token>` or Basic `api_email:api_key` as registered for that account; anything
    else → 401 `{"error": {"msg": "Unauthorized."}}`. Unknown account → 404 HTML page.
    Lists: `{"object": "list", "uri", "data", "meta": {"prev_cursor", "next_cursor"}}`,
    query `limit` (1..100, default 30, then min'ed with the page-size knob), `cursor`,
    `order_by` (`created_datetime:asc|desc`; widgets also `order:asc|desc`), filters `type`
    (integrations), `integration_id` and `app_id` (widgets); any other parameter → 400.
    Create needs `name`, `type` and, for `type: http`, `http.url` (http/https; hosts under
    the reserved `.invalid`, `.test`, `.example` are refused as unresolvable), `http.method`,
    `http.request_content_type`, `http.response_content_type`; widgets need `type` and
    `template` (and an existing `integration_id` if given). Bodies over 1 MiB → 413.
    Create → 201 full object; PUT is partial (top-level keys replace, `http` keys merge one
    level), read-only fields ignored, changing `type` → 400; DELETE → 204. Errors are
    `{"error": {"msg", "data"}}` with marshmallow-style per-field `data`. Rate limit: a leaky
    bucket per account and auth kind (Bearer 80/20 s, Basic 40/20 s), 429 with `Retry-After`
    (whole seconds); every authenticated answer has `X-Gorgias-Account-Api-Call-Limit: used/limit`.

    OAuth (see `oauth.py`): `GET /gorgias/{account}/oauth/authorize` auto-approves (302 to
    `redirect_uri` with `code` and the same `state`; checks `response_type=code`, the registered
    `client_id`, an http(s) `redirect_uri`; else a 400 page). `POST .../oauth/token`
    (form-encoded; client auth by Basic or body) serves `authorization_code` (a code works
    once, 10 min, same `redirect_uri`) and `refresh_token` (rotates: the old refresh token is
    spent); refresh tokens only with the `offline` scope. Errors: 400 `{"error":
    "invalid_grant"}`, 401 `invalid_client`. Issued access tokens expire after the token
    lifetime (default 24 h); the API answers 401 to an expired one.

Shopify stand-in
    `POST /shopify/{store}/admin/api/{YYYY-MM}/graphql.json` with `X-Shopify-Access-Token`.
    Serves `orders(first, after, query, sortKey, reverse)` (literal or `$variable` arguments)
    with a complete node shape under `nodes` and `edges`, `pageInfo`, and `extensions.cost`
    (bucket 2000 points, restore 100/s per store). The `query` uses the search syntax of
    `searchsyntax.py` (strict: bare words match nothing, unknown fields are errors).

Control API: `POST /_control/{call}` with a JSON object of keyword arguments; answers
`{"result": ...}` or 400 `{"error": "what to fix"}`. `SandboxController(base_url)` wraps it:

    reset()                                          forget everything, knobs to defaults
    add_gorgias_account(account, token, *, api_email=None, api_key=None)   again = one more
                                     token; tokens live in a per-account registry
                                     (`TokenRecord`: revoked / expires_at, for OAuth hooks)
    add_shopify_store(store, token)
    add_orders(store, orders)        orders: {id, name, email, created_at, tags, total,
                                     currency, financial_status, fulfillment_status,
                                     line_items: [{name, quantity}]}
    insert_integration(account, obj) -> dict        store a foreign object, no validation
    insert_widget(account, obj) -> dict
    edit_integration(account, id, patch) -> dict    a human edit: deep merge, no validation
    edit_widget(account, id, patch) -> dict
    remove_integration(account, id) / remove_widget(account, id)
    integrations(account) -> list / widgets(account) -> list    current state
    set_page_size(n)                                 server-side max page size, 1..100
    set_latency(*, gorgias_ms=None, shopify_ms=None) added before every answer
    set_rate_limit(limit, window_s)                  replaces the per-kind defaults
    add_fault(target="gorgias"|"shopify", kind="status"|"drop"|"slow"|"write_then_fail"|
              "throttled", *, status=502, method=None, path_contains=None, account=None,
              count=1 (None = forever), rate=None (seeded probability), delay_s=0.0)
        status: answer `status` (HTML page for 502/503/504, JSON otherwise) without
        processing; drop: reset the connection, no answer; slow: sleep delay_s then answer;
        write_then_fail: perform a non-GET request, then answer `status` (default 502);
        throttled (shopify): the GraphQL THROTTLED body with HTTP 200. Faults are checked
        before the account and auth; the first matching fault fires.
    clear_faults()
    requests() -> list of {target, method, path, query, account, status} (status 0 = dropped;
                 never tokens or bodies)
    clear_requests()
    fire(account, integration_id, ticket) -> {"status", "body"}   act as Gorgias: render
        `{{ticket.a.b}}` in http.url and http.form (`"{{context}}"` sends the whole context),
        send method/headers/content type to the (loopback only) URL, keep a 2xx JSON answer
        on the customer (by email) under str(integration_id). `ticket.account.domain`
        defaults to "{account}.gorgias.com". A connection error gives status 0.
    customer_data(account, email) -> {"<integration_id>": answer, ...}
    set_oauth_client(client_id, client_secret)       register our OAuth app
    set_token_lifetime(seconds)                      for access tokens issued from now on
    expire_tokens(account) -> n                      every bearer token of the account expires
    revoke_refresh_tokens(account) -> n              every refresh token is refused from now on
    oauth_status(account) -> {"refresh_grants", "active_refresh_tokens", "latest_refresh_token"}
    (a token-endpoint fault: add_fault(path_contains="/oauth/token", ...))

`seed_demo(controller)` (in `demo.py`) seeds the demo accounts, stores and orders.
"""

from together_reconcile.sandbox.control import SandboxControlError, SandboxController
from together_reconcile.sandbox.demo import seed_demo
from together_reconcile.sandbox.server import RunningSandbox, start_sandbox

__all__ = [
    "RunningSandbox",
    "SandboxControlError",
    "SandboxController",
    "seed_demo",
    "start_sandbox",
]
