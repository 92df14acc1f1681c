"""The WSGI app driven directly: every bad input, the order of checks, config reload, logs."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.handler_helpers import SHOPIFY_TOKEN, Answer, call, write_accounts
from together_reconcile.events.answer import sample_answer
from together_reconcile.events.app import HandlerApp, Settings, create_app
from together_reconcile.events.shopify import (
    ShopifyBadResponse,
    ShopifyError,
    ShopifyThrottled,
    ShopifyTimeout,
    ShopifyUnauthorized,
    ShopifyUnavailable,
)
from together_reconcile.secrets import Keyring
from together_reconcile.store import Credential, Store

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
EMAIL = "Jane.Doe@example.com"


class FakeLookup:
    """Stands in for the Shopify client (this file tests the handler only)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error: ShopifyError | None = None

    def final_sale_orders(
        self,
        store_domain: str,
        access_token: str,
        email: str,
        cutoff: datetime,
        *,
        deadline: float,
    ) -> list[Any]:
        self.calls.append(
            {"store": store_domain, "token": access_token, "email": email, "cutoff": cutoff}
        )
        if self.error is not None:
            raise self.error
        return list(sample_answer().final_sale_orders)


@pytest.fixture
def lookup() -> FakeLookup:
    return FakeLookup()


@pytest.fixture
def settings(tmp_path: Path, keyring: Keyring) -> Settings:
    return Settings(
        accounts_dir=write_accounts(tmp_path / "accounts"),
        state_url=f"sqlite:///{tmp_path}/state.db",
        keyring=keyring,
        config_check_interval_s=0.0,
    )


@pytest.fixture
def app(settings: Settings, keyring: Keyring, lookup: FakeLookup) -> Iterator[HandlerApp]:
    with Store.open(settings.state_url, keyring) as store:
        store.put_credential(Credential("shopify", "acme.myshopify.com", SHOPIFY_TOKEN))
    yield create_app(settings, shopify=lookup, now=lambda: NOW)


def event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ticket_id": "123",
        "account_domain": "acme.gorgias.com",
        "customer_email": EMAIL,
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


def post(app: HandlerApp, keyring: Keyring, body: Any = None, **kwargs: Any) -> Answer:
    kwargs.setdefault("token", keyring.event_token("acme.gorgias.com"))
    return call(app, body=event() if body is None else body, **kwargs)


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert (answer.status, answer.code) == (status, code), answer.body
    assert set(answer.json["error"]) == {"code", "message"}
    assert answer.json["error"]["message"]


# -- the happy path ---------------------------------------------------------------------------


def test_valid_event_answers_the_orders(app: HandlerApp, keyring: Keyring, lookup: FakeLookup):
    answer = post(app, keyring)
    assert answer.status == 200
    assert answer.json == sample_answer().model_dump() | {
        "shopify_store": "acme.myshopify.com",
        "lookback_days": 60,
    }
    (made,) = lookup.calls
    assert made["store"] == "acme.myshopify.com"
    assert made["token"] == SHOPIFY_TOKEN
    assert made["email"] == EMAIL
    assert made["cutoff"] == datetime(2026, 9, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("ticket_id", [123, "123", 0, "", 10**30])
def test_ticket_id_int_or_string(app: HandlerApp, keyring: Keyring, ticket_id: Any) -> None:
    assert post(app, keyring, event(ticket_id=ticket_id)).status == 200


def test_content_type_parameters_and_case(app: HandlerApp, keyring: Keyring) -> None:
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        assert post(app, keyring, content_type=content_type).status == 200


def test_account_domain_is_case_insensitive(app: HandlerApp, keyring: Keyring) -> None:
    answer = post(app, keyring, event(account_domain="ACME.Gorgias.com"))
    assert answer.status == 200


def test_chunked_body_within_the_limit(app: HandlerApp, keyring: Keyring) -> None:
    assert post(app, keyring, chunked=True).status == 200


@pytest.mark.parametrize(
    "email",
    [
        None,
        "",
        "   ",
        "no-at-sign",
        "@",
        "a@",
        "x" * 320 + "@example.com",
        "a\n@example.com",
        "a\x00b@example.com",
    ],
)
def test_no_usable_email_answers_an_empty_object_without_shopify(
    app: HandlerApp, keyring: Keyring, lookup: FakeLookup, email: str | None
) -> None:
    answer = post(app, keyring, event(customer_email=email))
    assert answer.status == 200
    assert answer.json == {}
    assert lookup.calls == []


def test_lookback_days_comes_from_the_account(
    tmp_path: Path, settings: Settings, keyring: Keyring, lookup: FakeLookup
) -> None:
    with Store.open(settings.state_url, keyring) as store:
        store.put_credential(Credential("shopify", "beta.myshopify.com", SHOPIFY_TOKEN))
    app = create_app(settings, shopify=lookup, now=lambda: NOW)
    answer = post(
        app,
        keyring,
        event(account_domain="beta.gorgias.com"),
        token=keyring.event_token("beta.gorgias.com"),
    )
    assert answer.json["lookback_days"] == 30
    assert lookup.calls[0]["cutoff"] == datetime(2026, 10, 2, 12, 0, tzinfo=UTC)


# -- bad input, in the SPEC's order of checks ---------------------------------------------------


def test_get_on_the_event_route_is_405(app: HandlerApp, keyring: Keyring) -> None:
    answer = call(app, "GET", content_type=None)
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["Allow"] == "POST"


def test_method_is_checked_before_content_type_and_size(app: HandlerApp) -> None:
    answer = call(app, "PUT", content_type="text/plain", content_length=str(10 * 2**20))
    assert_error(answer, 405, "method_not_allowed")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/jsonx", "application/x-www-form-urlencoded", "json"],
)
def test_wrong_content_type_is_415(
    app: HandlerApp, keyring: Keyring, content_type: str | None
) -> None:
    answer = post(app, keyring, content_type=content_type)
    assert_error(answer, 415, "unsupported_media_type")


def test_content_type_is_checked_before_size(app: HandlerApp) -> None:
    answer = call(app, content_type="text/plain", content_length=str(10 * 2**20))
    assert_error(answer, 415, "unsupported_media_type")


def test_ten_megabytes_is_413_without_reading(app: HandlerApp) -> None:
    answer = call(app, body=b"x" * (10 * 2**20))
    assert_error(answer, 413, "body_too_large")
    assert answer.headers["_bytes_read"] == "0"
    assert answer.headers["_close"] == "True"


def test_chunked_body_over_the_limit_reads_at_most_64k_plus_one(app: HandlerApp) -> None:
    answer = call(app, body=b"x" * (10 * 2**20), chunked=True)
    assert_error(answer, 413, "body_too_large")
    assert int(answer.headers["_bytes_read"]) == 64 * 1024 + 1


def test_exactly_64k_is_read(app: HandlerApp, keyring: Keyring) -> None:
    body = json.dumps(event()).encode()
    body = body[:-1] + b" " * (64 * 1024 - len(body)) + b"}"
    assert post(app, keyring, body).status == 200


def test_size_is_checked_before_the_token(app: HandlerApp) -> None:
    assert_error(call(app, body=b"{" * (65 * 1024)), 413, "body_too_large")


def test_content_length_lying_is_400(app: HandlerApp, keyring: Keyring) -> None:
    answer = post(app, keyring, content_length="5000")
    assert_error(answer, 400, "incomplete_body")
    assert answer.headers["_close"] == "True"


def test_content_length_not_a_number_is_400(app: HandlerApp, keyring: Keyring) -> None:
    assert_error(post(app, keyring, content_length="12abc"), 400, "invalid_content_length")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_json"),
        (b"not json", "invalid_json"),
        (b'{"ticket_id": 1,', "invalid_json"),
        (b"\xff\xfe{}", "invalid_encoding"),
        (b'{"customer_email": "\xc3\x28"}', "invalid_encoding"),
        pytest.param(b"[" * 30000 + b"]" * 30000, "invalid_json", id="deep-arrays"),
        pytest.param(b'{"a":' * 10000 + b"1" + b"}" * 10000, "invalid_json", id="deep-objects"),
        (b"[]", "not_an_object"),
        (b'[{"ticket_id": 1}]', "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"42", "not_an_object"),
    ],
)
def test_malformed_bodies_are_400(
    app: HandlerApp, keyring: Keyring, body: bytes, code: str
) -> None:
    assert_error(post(app, keyring, body), 400, code)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (event(ticket_id=...), "invalid_ticket_id"),
        (event(ticket_id=None), "invalid_ticket_id"),
        (event(ticket_id=True), "invalid_ticket_id"),
        (event(ticket_id=1.5), "invalid_ticket_id"),
        (event(ticket_id=[1]), "invalid_ticket_id"),
        (event(account_domain=...), "invalid_account_domain"),
        (event(account_domain="acme"), "invalid_account_domain"),
        (event(account_domain="acme.gorgias.com.evil.example"), "invalid_account_domain"),
        (event(account_domain="acme.myshopify.com"), "invalid_account_domain"),
        (event(account_domain=7), "invalid_account_domain"),
        (event(customer_email=...), "invalid_customer_email"),
        (event(customer_email=42), "invalid_customer_email"),
        (event(customer_email=["a@example.com"]), "invalid_customer_email"),
        (event(customer_email={"email": "a@example.com"}), "invalid_customer_email"),
    ],
)
def test_wrong_fields_are_400(
    app: HandlerApp, keyring: Keyring, body: dict[str, Any], code: str
) -> None:
    assert_error(post(app, keyring, body), 400, code)


def test_shape_is_checked_before_the_token(app: HandlerApp) -> None:
    assert_error(call(app, body=b"[]", token=None), 400, "not_an_object")


def test_no_token_is_401(app: HandlerApp, keyring: Keyring, lookup: FakeLookup) -> None:
    assert_error(call(app, body=event()), 401, "missing_token")
    assert_error(post(app, keyring, token=""), 401, "missing_token")
    assert lookup.calls == []


@pytest.mark.parametrize("token", ["wrong", "v1.AAAA", "ünïcode", "x" * 5000, "v1." + "A" * 43])
def test_wrong_token_is_401(app: HandlerApp, keyring: Keyring, token: str) -> None:
    assert_error(post(app, keyring, token=token), 401, "invalid_token")


def test_a_token_for_one_account_never_opens_another(
    app: HandlerApp, keyring: Keyring, lookup: FakeLookup
) -> None:
    answer = post(app, keyring, token=keyring.event_token("beta.gorgias.com"))
    assert_error(answer, 401, "invalid_token")
    assert lookup.calls == []


def test_token_from_an_older_key_still_works(
    app: HandlerApp, keyring: Keyring, secret_keys_env: str
) -> None:
    older_only = Keyring.from_env(secret_keys_env.split(",")[1])
    answer = post(app, keyring, token=older_only.event_token("acme.gorgias.com"))
    assert answer.status == 200


def test_token_is_checked_before_the_account(app: HandlerApp) -> None:
    answer = call(app, body=event(account_domain="nobody.gorgias.com"), token="wrong")
    assert_error(answer, 401, "invalid_token")


def test_unknown_account_is_404(app: HandlerApp, keyring: Keyring) -> None:
    answer = post(
        app,
        keyring,
        event(account_domain="nobody.gorgias.com"),
        token=keyring.event_token("nobody.gorgias.com"),
    )
    assert_error(answer, 404, "unknown_account")


def test_disabled_account_is_404(app: HandlerApp, keyring: Keyring) -> None:
    answer = post(
        app,
        keyring,
        event(account_domain="gone.gorgias.com"),
        token=keyring.event_token("gone.gorgias.com"),
    )
    assert_error(answer, 404, "account_disabled")


def test_store_without_shopify_credential_is_502(app: HandlerApp, keyring: Keyring) -> None:
    answer = post(
        app,
        keyring,
        event(account_domain="beta.gorgias.com"),
        token=keyring.event_token("beta.gorgias.com"),
    )
    assert_error(answer, 502, "shopify_not_connected")


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ShopifyTimeout("slow"), 504, "shopify_timeout"),
        (ShopifyUnavailable("down"), 502, "shopify_unavailable"),
        (ShopifyUnauthorized("401"), 502, "shopify_unauthorized"),
        (ShopifyThrottled("throttled"), 502, "shopify_throttled"),
        (ShopifyBadResponse("junk"), 502, "shopify_bad_response"),
        (ShopifyError("graphql"), 502, "shopify_error"),
    ],
)
def test_shopify_failures_map_to_their_status(
    app: HandlerApp,
    keyring: Keyring,
    lookup: FakeLookup,
    error: ShopifyError,
    status: int,
    code: str,
) -> None:
    lookup.error = error
    assert_error(post(app, keyring), status, code)


def test_an_unexpected_bug_is_500_and_logged_without_data(
    app: HandlerApp, keyring: Keyring, lookup: FakeLookup, caplog: pytest.LogCaptureFixture
) -> None:
    lookup.error = RuntimeError(f"boom {EMAIL}")  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, logger="together_reconcile"):
        assert_error(post(app, keyring), 500, "internal_error")
    assert EMAIL.lower() not in caplog.text.lower()


# -- other routes -----------------------------------------------------------------------------


def test_healthz_and_readyz(app: HandlerApp) -> None:
    assert call(app, "GET", "/healthz").json == {"status": "ok"}
    ready = call(app, "GET", "/readyz")
    assert (ready.status, ready.json["status"]) == (200, "ready")
    head = call(app, "HEAD", "/healthz")
    assert (head.status, head.body) == (200, b"")
    answer = call(app, "POST", "/healthz")
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["Allow"] == "GET, HEAD"


def test_readyz_is_503_when_the_store_does_not_answer(
    settings: Settings, lookup: FakeLookup, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where a folder should be")
    broken = Settings(
        accounts_dir=settings.accounts_dir,
        state_url=f"sqlite:///{blocked}/state.db",
        keyring=settings.keyring,
    )
    app = create_app(broken, shopify=lookup)
    assert_error(call(app, "GET", "/readyz"), 503, "store_unavailable")
    assert call(app, "GET", "/healthz").status == 200


def test_unknown_path_is_404(app: HandlerApp) -> None:
    assert_error(call(app, "GET", "/admin"), 404, "not_found")
    assert_error(call(app, "POST", "/gorgias/events/"), 404, "not_found")


# -- config reload ------------------------------------------------------------------------------


def test_config_changes_apply_without_restart(
    app: HandlerApp, keyring: Keyring, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    new_token = keyring.event_token("newco.gorgias.com")
    new_event = event(account_domain="newco.gorgias.com")
    assert post(app, keyring, new_event, token=new_token).code == "unknown_account"
    (settings.accounts_dir / "newco.yaml").write_text(
        "shopify_store: newco.myshopify.com\ngorgias_account: newco.gorgias.com\n"
    )
    assert post(app, keyring, new_event, token=new_token).code == "shopify_not_connected"

    acme = settings.accounts_dir / "acme.yaml"
    acme.write_text("shopify_store: [broken\n")
    stamp = time.time() + 5
    os.utime(acme, (stamp, stamp))
    with caplog.at_level(logging.ERROR, logger="together_reconcile"):
        assert post(app, keyring).status == 200  # last good config kept
    failures = [json.loads(r.getMessage()) for r in caplog.records]
    assert [f["event"] for f in failures] == ["config_reload_failed"]
    assert "acme.yaml" in failures[0]["problems"][0]


def test_reload_is_requested_by_signal(
    app: HandlerApp, keyring: Keyring, settings: Settings
) -> None:
    app.registry._interval = 3600.0  # only a request (SIGHUP) reloads now
    app.registry._next_check = time.monotonic() + 3600
    (settings.accounts_dir / "gone.yaml").write_text(
        "shopify_store: gone.myshopify.com\ngorgias_account: gone.gorgias.com\n"
    )
    token = keyring.event_token("gone.gorgias.com")
    gone = event(account_domain="gone.gorgias.com")
    assert post(app, keyring, gone, token=token).code == "account_disabled"
    app.registry.request_reload()
    assert post(app, keyring, gone, token=token).code == "shopify_not_connected"


# -- logs -----------------------------------------------------------------------------------------


def test_one_json_line_per_request_without_email_or_token(
    app: HandlerApp, keyring: Keyring, caplog: pytest.LogCaptureFixture
) -> None:
    token = keyring.event_token("acme.gorgias.com")
    with caplog.at_level(logging.DEBUG, logger="together_reconcile"):
        post(app, keyring, extra={"HTTP_X_REQUEST_ID": "req-1"})
        post(app, keyring, token="wrong-" + token)
        post(app, keyring, event(customer_email="Other@Example.com"))
    lines = [json.loads(record.getMessage()) for record in caplog.records]
    assert [line["status"] for line in lines] == [200, 401, 200]
    first = lines[0]
    assert first["request_id"] == "req-1"
    assert first["account"] == "acme.gorgias.com"
    assert first["route"] == "/gorgias/events"
    assert first["email_hash"].startswith("hmac:")
    assert isinstance(first["duration_ms"], float)
    assert isinstance(first["shopify_ms"], float)
    assert lines[2]["email_hash"] != first["email_hash"]
    assert lines[1]["error"] == "invalid_token"
    text = caplog.text.lower()
    assert EMAIL.lower() not in text
    assert "other@example.com" not in text
    assert token.lower() not in text
    assert SHOPIFY_TOKEN.lower() not in text
