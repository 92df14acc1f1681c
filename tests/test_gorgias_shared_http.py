"""Account clients sharing one httpx client: each request carries its own account's auth."""

from __future__ import annotations

import httpx
import pytest

from together_reconcile import __version__
from together_reconcile.gorgias.client import (
    BasicAuth,
    BearerAuth,
    GorgiasClient,
    new_http_client,
)

BASE = "https://{account}.gorgias.test"
BASIC = "Basic bWVAZXhhbXBsZS5jb206a2V5LWI="  # me@example.com:key-b


def test_each_account_sends_its_own_auth_through_a_shared_client() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [], "meta": {"next_cursor": None}})

    http = new_http_client(httpx.MockTransport(handler))
    acme = GorgiasClient("acme.gorgias.com", BearerAuth("tok-a"), base_url_template=BASE, http=http)
    other = GorgiasClient(
        "other.gorgias.com", BasicAuth("me@example.com", "key-b"), base_url_template=BASE, http=http
    )
    with acme, other:
        acme.list_integrations()
        other.list_widgets(7)
        acme.list_widgets()
    assert [(str(r.url), r.headers["Authorization"]) for r in seen] == [
        ("https://acme.gorgias.test/api/integrations?limit=100", "Bearer tok-a"),
        ("https://other.gorgias.test/api/widgets?integration_id=7&limit=100", BASIC),
        ("https://acme.gorgias.test/api/widgets?limit=100", "Bearer tok-a"),
    ]
    assert {r.headers["User-Agent"] for r in seen} == {f"together-reconcile/{__version__}"}
    assert {r.headers["Accept"] for r in seen} == {"application/json"}
    assert not http.is_closed  # closing an account client leaves the shared one open
    http.close()


def test_an_account_client_closes_the_http_client_it_made() -> None:
    client = GorgiasClient(
        "acme.gorgias.com",
        BearerAuth("tok-a"),
        base_url_template=BASE,
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json={})),
    )
    client.close()
    assert client._http.is_closed


def test_an_http_client_and_a_transport_are_not_both_taken() -> None:
    http = new_http_client()
    with pytest.raises(ValueError, match="either an http client or a transport"):
        GorgiasClient(
            "acme.gorgias.com",
            BearerAuth("tok-a"),
            base_url_template=BASE,
            http=http,
            transport=httpx.MockTransport(lambda request: httpx.Response(200)),
        )
    http.close()


@pytest.mark.parametrize("cursor", ["abc", "a+b/c==", "a b&c=d", "é☃%41", "[]@:?#~!*'();"])
def test_list_queries_are_encoded_as_httpx_params_would_be(cursor: str) -> None:
    pages = iter(
        [
            {"data": [{"id": 1}], "meta": {"next_cursor": cursor}},
            {"data": [{"id": 2}], "meta": {"next_cursor": None}},
        ]
    )
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json=next(pages))

    with GorgiasClient(
        "acme.gorgias.com",
        BearerAuth("tok-a"),
        base_url_template=BASE,
        transport=httpx.MockTransport(handler),
    ) as client:
        assert client.list_widgets(5) == [{"id": 1}, {"id": 2}]
    query = {"integration_id": "5", "limit": "100", "cursor": cursor}
    url = "https://acme.gorgias.test/api/widgets"
    assert seen[1] == httpx.Client().build_request("GET", url, params=query).url
    assert seen[1].params["cursor"] == cursor
