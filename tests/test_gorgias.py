"""Unit tests of the Gorgias client on httpx.MockTransport (no sockets, no sleeping)."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from together_reconcile import __version__
from together_reconcile.gorgias.client import (
    AccountRateLimiter,
    BasicAuth,
    BearerAuth,
    CreateOutcomeUnknown,
    CredentialsRejected,
    GorgiasClient,
    GorgiasError,
    GorgiasUnavailable,
    NotFound,
    RateLimited,
    parse_call_limit,
    parse_retry_after,
    rate_limiter_for,
    slowdown_for,
)

TOKEN = "tok-SECRET-do-not-leak-4242"
BASE = "http://gorgias.test/{account}"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """An injected clock: sleep() records the wait and advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(
    handler: Handler,
    fake: FakeTime | None = None,
    *,
    rng: Callable[[], float] = lambda: 1.0,
    auth: BearerAuth | BasicAuth | None = None,
    **kwargs: Any,
) -> GorgiasClient:
    fake = fake or FakeTime()
    return GorgiasClient(
        "acme.gorgias.com",
        auth or BearerAuth(TOKEN),
        base_url_template=BASE,
        transport=httpx.MockTransport(handler),
        sleep=fake.sleep,
        clock=fake.clock,
        rng=rng,
        rate_limiter=AccountRateLimiter(),
        **kwargs,
    )


def error(status: int, msg: str, data: Any = None, **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"msg": msg}
    if data is not None:
        body["data"] = data
    return httpx.Response(status, json={"error": body}, headers=headers)


def sequence(*answers: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving the answers in order (an exception is raised); records requests."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def paged_server(total: int, page_size: int) -> tuple[Handler, list[httpx.Request]]:
    items = [{"id": i + 1, "name": f"integration {i + 1}"} for i in range(total)]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        start = int(request.url.params.get("cursor", "c0")[1:])
        page = items[start : start + page_size]
        end = start + page_size
        return httpx.Response(
            200,
            json={
                "object": "list",
                "uri": "/api/integrations",
                "data": page,
                "meta": {
                    "prev_cursor": None,
                    "next_cursor": f"c{end}" if end < total else None,
                },
            },
        )

    return handler, seen


# ----------------------------------------------------------------- paging


def test_lists_follow_next_cursor_until_null() -> None:
    handler, seen = paged_server(250, 7)
    with make_client(handler) as client:
        items = client.list_integrations()
    ids = [item["id"] for item in items]
    assert sorted(ids) == list(range(1, 251))
    assert len(ids) == len(set(ids)) == 250
    assert client.request_count == len(seen) == 36  # ceil(250 / 7)
    assert all(r.url.params["limit"] == "100" for r in seen)
    assert "cursor" not in seen[0].url.params
    assert seen[1].url.params["cursor"] == "c7"
    assert seen[0].url.path == "/acme/api/integrations"


def test_empty_list_costs_one_request() -> None:
    handler, _ = paged_server(0, 7)
    with make_client(handler) as client:
        assert client.list_integrations() == []
    assert client.request_count == 1


def test_list_widgets_filters_by_integration() -> None:
    handler, seen = sequence(
        httpx.Response(200, json={"data": [{"id": 3}], "meta": {"next_cursor": None}})
    )
    with make_client(handler) as client:
        assert client.list_widgets(integration_id=12) == [{"id": 3}]
    assert seen[0].url.path == "/acme/api/widgets"
    assert dict(seen[0].url.params) == {"integration_id": "12", "limit": "100"}


def test_same_cursor_twice_is_an_error_not_a_loop() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": 1}], "meta": {"next_cursor": "abc"}})

    with make_client(handler) as client, pytest.raises(GorgiasError) as caught:
        client.list_integrations()
    assert client.request_count == 2
    assert str(caught.value) == (
        "Gorgias answered 200 for GET /api/integrations on acme.gorgias.com: Gorgias sent the "
        "same next_cursor twice after 2 objects; stopped paging instead of looping"
    )


def test_list_answer_without_envelope_is_an_error() -> None:
    handler, _ = sequence(httpx.Response(200, json={"integrations": []}))
    with make_client(handler) as client, pytest.raises(GorgiasError) as caught:
        client.list_integrations()
    assert caught.value.message == "the list answer has no data list or meta"


# ----------------------------------------------------------------- errors


def test_json_error_body_gives_gorgias_message_and_fields() -> None:
    handler, _ = sequence(
        error(400, "Invalid data", {"http": {"url": ["Missing data for required field."]}})
    )
    with make_client(handler) as client, pytest.raises(GorgiasError) as caught:
        client.create_integration({"name": "x", "type": "http"})
    exc = caught.value
    assert type(exc) is GorgiasError
    assert (exc.status, exc.method, exc.path) == (400, "POST", "/api/integrations")
    assert exc.message == "Invalid data (fields: http)"
    assert exc.data == {"http": {"url": ["Missing data for required field."]}}
    assert str(exc) == (
        "Gorgias answered 400 for POST /api/integrations on acme.gorgias.com: "
        "Invalid data (fields: http)"
    )
    assert client.request_count == 1


def test_html_404_is_not_found_without_the_html() -> None:
    handler, _ = sequence(
        httpx.Response(
            404,
            text="<html><body><h1>Page not found</h1></body></html>",
            headers={"Content-Type": "text/html; charset=utf-8"},
        )
    )
    with make_client(handler) as client, pytest.raises(NotFound) as caught:
        client.get_integration(5)
    assert str(caught.value) == (
        "Gorgias answered 404 for GET /api/integrations/5 on acme.gorgias.com: "
        "Not Found (the answer is not JSON: text/html)"
    )


def test_json_404_uses_error_msg() -> None:
    handler, _ = sequence(error(404, "Not found"))
    with make_client(handler) as client, pytest.raises(NotFound) as caught:
        client.get_widget(5)
    assert str(caught.value) == (
        "Gorgias answered 404 for GET /api/widgets/5 on acme.gorgias.com: Not found"
    )
    assert client.request_count == 1


def test_non_json_500_is_retried_then_unavailable() -> None:
    answers = [httpx.Response(500, text="Internal Server Error") for _ in range(5)]
    handler, _ = sequence(*answers)
    fake = FakeTime()
    with make_client(handler, fake) as client, pytest.raises(GorgiasUnavailable) as caught:
        client.get_integration(1)
    assert caught.value.status == 500
    assert client.request_count == 5
    assert str(caught.value) == (
        "Gorgias answered 500 for GET /api/integrations/1 on acme.gorgias.com: no usable "
        "answer after 5 attempts in 7.5s (last: Internal Server Error (the answer is not JSON: "
        "text/plain))"
    )


def test_401_is_credentials_rejected() -> None:
    handler, _ = sequence(error(401, "Unauthorized."))
    with make_client(handler) as client, pytest.raises(CredentialsRejected) as caught:
        client.list_integrations()
    assert caught.value.status == 401
    assert str(caught.value) == (
        "Gorgias answered 401 for GET /api/integrations on acme.gorgias.com: "
        "credentials rejected for acme.gorgias.com"
    )
    assert client.request_count == 1


@pytest.mark.parametrize("status", [400, 403, 409, 413])
def test_other_4xx_are_not_retried(status: int) -> None:
    handler, _ = sequence(error(status, "Nope"))
    with make_client(handler) as client, pytest.raises(GorgiasError) as caught:
        client.update_integration(9, {"name": "x"})
    assert type(caught.value) is GorgiasError
    assert caught.value.status == status
    assert client.request_count == 1


def test_secret_never_in_messages_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        # A hostile server echoes the Authorization header in its error message.
        return error(400, f"bad header {request.headers['Authorization']}")

    caplog.set_level(logging.DEBUG, logger="together_reconcile.gorgias.client")
    auth = BearerAuth(TOKEN)
    client = make_client(echo, auth=auth)
    with client, pytest.raises(GorgiasError) as caught:
        client.get_integration(1)
    exc = caught.value
    for text in (str(exc), repr(exc), exc.message, repr(auth), repr(client), caplog.text):
        assert TOKEN not in text
        assert "Bearer" not in text or "sha256:" in text
    assert "sha256:" in exc.message
    assert "GET /api/integrations/1 attempt 1: 400" in caplog.text


def test_basic_auth_sends_basic_header_and_hides_key(caplog: pytest.LogCaptureFixture) -> None:
    handler, seen = sequence(error(401, "Unauthorized."))
    auth = BasicAuth("ops@together.test", "api-key-SECRET-99")
    caplog.set_level(logging.DEBUG, logger="together_reconcile.gorgias.client")
    with make_client(handler, auth=auth) as client, pytest.raises(CredentialsRejected) as caught:
        client.list_widgets()
    assert seen[0].headers["Authorization"].startswith("Basic ")
    for text in (str(caught.value), repr(caught.value), repr(auth), caplog.text):
        assert "api-key-SECRET-99" not in text
        assert "ops@together.test" not in text


def test_headers_user_agent_and_body() -> None:
    handler, seen = sequence(httpx.Response(201, json={"id": 7, "name": "x"}))
    with make_client(handler) as client:
        assert client.create_widget({"type": "http", "template": {}}) == {"id": 7, "name": "x"}
    request = seen[0]
    assert request.headers["User-Agent"] == f"together-reconcile/{__version__}"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {"type": "http", "template": {}}


# ----------------------------------------------------------------- retries


def test_backoff_doubles_to_the_cap_and_is_bounded_by_max_retries() -> None:
    handler, _ = sequence(*[httpx.Response(503) for _ in range(7)])
    fake = FakeTime()
    client = make_client(handler, fake, max_retries=6, max_retry_time=100)
    with client, pytest.raises(GorgiasUnavailable):
        client.list_integrations()
    assert fake.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]  # rng()=1: the ceiling, capped at 8
    assert client.request_count == 7


def test_backoff_jitter_stays_within_bounds() -> None:
    handler, _ = sequence(*[httpx.Response(502) for _ in range(7)])
    fake = FakeTime()
    rng = random.Random(7).random
    client = make_client(handler, fake, rng=rng, max_retries=6, max_retry_time=100)
    with client, pytest.raises(GorgiasUnavailable):
        client.get_integration(3)
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(fake.sleeps) == 6
    assert all(0 <= w <= c for w, c in zip(fake.sleeps, ceilings, strict=True))
    assert len(set(fake.sleeps)) == 6  # jittered, not fixed


def test_retries_bounded_by_total_time() -> None:
    handler, _ = sequence(*[httpx.Response(503) for _ in range(10)])
    fake = FakeTime()
    client = make_client(handler, fake, max_retries=10, max_retry_time=3.0)
    with client, pytest.raises(GorgiasUnavailable):
        client.get_integration(1)
    assert fake.sleeps == [0.5, 1.0]  # the next wait (2 s) would end after 3.5 s > 3 s
    assert client.request_count == 3


def test_get_retried_on_read_timeout_then_succeeds() -> None:
    handler, _ = sequence(httpx.ReadTimeout("timed out"), httpx.Response(200, json={"id": 1}))
    with make_client(handler) as client:
        assert client.get_integration(1) == {"id": 1}
    assert client.request_count == 2


def test_put_retried_on_dropped_connection() -> None:
    handler, _ = sequence(
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.Response(200, json={"id": 1, "name": "y"}),
    )
    with make_client(handler) as client:
        assert client.update_integration(1, {"name": "y"}) == {"id": 1, "name": "y"}
    assert client.request_count == 2


def test_connection_errors_exhausted_is_unavailable() -> None:
    handler, _ = sequence(*[httpx.ConnectError("Connection refused") for _ in range(5)])
    with make_client(handler) as client, pytest.raises(GorgiasUnavailable) as caught:
        client.list_integrations()
    assert caught.value.status is None
    assert str(caught.value) == (
        "Gorgias did not answer GET /api/integrations on acme.gorgias.com: no usable answer "
        "after 5 attempts in 7.5s (last: ConnectError)"
    )


def test_delete_404_on_a_retry_counts_as_done() -> None:
    handler, _ = sequence(httpx.Response(502), error(404, "Not found"))
    with make_client(handler) as client:
        assert client.delete_integration(4) is None
    assert client.request_count == 2


def test_delete_404_first_time_is_not_found() -> None:
    handler, _ = sequence(error(404, "Not found"))
    with make_client(handler) as client, pytest.raises(NotFound):
        client.delete_widget(4)


def test_delete_204() -> None:
    handler, seen = sequence(httpx.Response(204))
    with make_client(handler) as client:
        client.delete_widget(4)
    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/acme/api/widgets/4")


# ----------------------------------------------------------------- POST is never blindly retried


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_post_5xx_is_create_outcome_unknown_without_retry(status: int) -> None:
    handler, _ = sequence(httpx.Response(status), httpx.Response(201, json={"id": 1}))
    with make_client(handler) as client, pytest.raises(CreateOutcomeUnknown) as caught:
        client.create_integration({"name": "x"})
    assert client.request_count == 1
    assert caught.value.status == status
    assert "list and adopt" in str(caught.value)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.WriteTimeout("timed out"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
def test_post_lost_answer_is_create_outcome_unknown(exc: Exception) -> None:
    handler, _ = sequence(exc, httpx.Response(201, json={"id": 1}))
    with make_client(handler) as client, pytest.raises(CreateOutcomeUnknown) as caught:
        client.create_widget({"type": "http"})
    assert client.request_count == 1
    assert caught.value.status is None
    assert str(caught.value) == (
        f"Gorgias did not answer POST /api/widgets on acme.gorgias.com: {type(exc).__name__} "
        "after the create was sent; it may exist: list and adopt it"
    )


def test_post_retried_when_nothing_was_sent() -> None:
    handler, _ = sequence(
        httpx.ConnectError("Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.Response(201, json={"id": 9}),
    )
    with make_client(handler) as client:
        assert client.create_integration({"name": "x"}) == {"id": 9}
    assert client.request_count == 3


def test_post_created_with_unreadable_body_is_outcome_unknown() -> None:
    handler, _ = sequence(httpx.Response(201, text="<html>oops</html>"))
    with make_client(handler) as client, pytest.raises(CreateOutcomeUnknown) as caught:
        client.create_integration({"name": "x"})
    assert caught.value.status == 201


# ----------------------------------------------------------------- rate limits


def test_429_then_success_waits_retry_after() -> None:
    handler, _ = sequence(
        error(429, "Too many requests", **{"Retry-After": "3"}),
        httpx.Response(200, json={"id": 1}),
    )
    fake = FakeTime()
    with make_client(handler, fake) as client:
        assert client.get_integration(1) == {"id": 1}
    assert fake.sleeps == [3.0]
    assert fake.now == 1003.0
    assert client.request_count == 2


def test_429_without_retry_after_waits_one_second_and_post_is_retried() -> None:
    handler, _ = sequence(error(429, "Too many requests"), httpx.Response(201, json={"id": 2}))
    fake = FakeTime()
    with make_client(handler, fake) as client:
        assert client.create_integration({"name": "x"}) == {"id": 2}
    assert fake.sleeps == [1.0]


def test_429_beyond_the_time_budget_is_rate_limited() -> None:
    handler, _ = sequence(*[error(429, "Too many", **{"Retry-After": "20"}) for _ in range(3)])
    fake = FakeTime()
    client = make_client(handler, fake, max_retry_time=30)
    with client, pytest.raises(RateLimited) as caught:
        client.list_integrations()
    assert fake.sleeps == [20.0]
    assert caught.value.status == 429
    assert isinstance(caught.value, GorgiasUnavailable)
    assert client.request_count == 2


def test_call_limit_near_the_limit_slows_the_next_request() -> None:
    handler, _ = sequence(
        httpx.Response(200, json={"id": 1}, headers={"X-Gorgias-Account-Api-Call-Limit": "76/80"}),
        httpx.Response(200, json={"id": 2}, headers={"X-Gorgias-Account-Api-Call-Limit": "40/80"}),
        httpx.Response(200, json={"id": 3}),
    )
    fake = FakeTime()
    with make_client(handler, fake) as client:
        client.get_integration(1)
        assert fake.sleeps == []  # the pause applies before the *next* request
        client.get_integration(2)
        client.get_integration(3)
    assert fake.sleeps == [pytest.approx(0.8)]


def test_slowdown_curve() -> None:
    assert slowdown_for(63, 80) == 0.0
    assert slowdown_for(64, 80) == pytest.approx(0.2)
    assert slowdown_for(72, 80) == pytest.approx(0.6)
    assert slowdown_for(80, 80) == pytest.approx(1.0)
    assert slowdown_for(95, 80) == pytest.approx(1.0)
    assert slowdown_for(1, 0) == 0.0


def test_header_parsing() -> None:
    assert parse_call_limit("10/80") == (10, 80)
    assert parse_call_limit(" 10 / 80 ") == (10, 80)
    assert parse_call_limit("garbage") is None
    assert parse_call_limit("a/b") is None
    assert parse_call_limit(None) is None
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) == 1.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 1.0
    assert parse_retry_after("-3") == 1.0
    assert parse_retry_after("3600") == 60.0


def test_clients_of_one_account_share_the_limiter() -> None:
    assert rate_limiter_for("Acme.gorgias.com") is rate_limiter_for("acme.gorgias.com")
    assert rate_limiter_for("acme.gorgias.com") is not rate_limiter_for("other.gorgias.com")
    shared = AccountRateLimiter()
    fake = FakeTime()
    first, _ = sequence(error(429, "slow down", **{"Retry-After": "5"}))
    second, _ = sequence(httpx.Response(200, json={"id": 1}))

    def client(handler: Handler) -> GorgiasClient:
        return GorgiasClient(
            "acme.gorgias.com",
            BearerAuth(TOKEN),
            base_url_template=BASE,
            transport=httpx.MockTransport(handler),
            sleep=fake.sleep,
            clock=fake.clock,
            rate_limiter=shared,
            max_retry_time=4,  # too short to wait 5 s itself
        )

    with client(first) as a, pytest.raises(RateLimited):
        a.get_integration(1)
    with client(second) as b:
        b.get_integration(1)
    assert fake.sleeps == [5.0]


# ----------------------------------------------------------------- construction


def test_base_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_GORGIAS_URL", "http://127.0.0.1:9/gorgias/{account}/")
    client = GorgiasClient("ACME.gorgias.com", BearerAuth(TOKEN))
    assert client.base_url == "http://127.0.0.1:9/gorgias/acme"
    assert client.account == "acme.gorgias.com"
    client.close()
    monkeypatch.delenv("TOGETHER_GORGIAS_URL")
    with GorgiasClient("acme.gorgias.com", BearerAuth(TOKEN)) as client:
        assert client.base_url == "https://acme.gorgias.com"


def test_unsendable_request_is_not_retried() -> None:
    handler, _ = sequence(httpx.LocalProtocolError("Illegal header value"))
    with make_client(handler) as client, pytest.raises(GorgiasError) as caught:
        client.create_integration({"name": "x"})
    assert type(caught.value) is GorgiasError
    assert caught.value.message == (
        "the request could not be sent (LocalProtocolError); check the account's stored "
        "Gorgias token or API key: a header value holds a line break or another control "
        "character"
    )
    assert client.request_count == 1


def test_unreadable_answer_on_get_is_retried() -> None:
    handler, _ = sequence(httpx.DecodingError("bad gzip"), httpx.Response(200, json={"id": 1}))
    with make_client(handler) as client:
        assert client.get_integration(1) == {"id": 1}
    assert client.request_count == 2


def test_limiter_registry_is_thread_safe() -> None:
    found: list[AccountRateLimiter] = []
    threads = [
        threading.Thread(target=lambda: found.append(rate_limiter_for("threads.gorgias.com")))
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 16
    assert len({id(limiter) for limiter in found}) == 1


def test_bad_construction_arguments() -> None:
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        GorgiasClient("acme.gorgias.com", BearerAuth(TOKEN), base_url_template="ftp://{account}")
    with pytest.raises(ValueError, match=r"must contain \{account\}"):
        GorgiasClient("acme.gorgias.com", BearerAuth(TOKEN), base_url_template="http://x")
    with pytest.raises(ValueError, match="not a Gorgias account domain"):
        GorgiasClient("../evil", BearerAuth(TOKEN), base_url_template=BASE)
    with pytest.raises(ValueError, match="token is empty"):
        BearerAuth("")
    with pytest.raises(ValueError, match="email and the API key"):
        BasicAuth("ops@together.test", "")


def test_cookies_set_by_the_server_are_never_sent_back() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Cookie"))
        return httpx.Response(
            200,
            json={"data": [], "meta": {"next_cursor": None}},
            headers={"Set-Cookie": "session=abc; Path=/"},
        )

    with make_client(handler) as client:
        client.list_integrations()
        client.list_integrations()
    assert seen == [None, None]
