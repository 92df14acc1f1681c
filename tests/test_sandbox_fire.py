"""The sandbox fires an HTTP integration as Gorgias does and keeps the JSON answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from together_reconcile.sandbox import RunningSandbox, SandboxControlError


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@dataclass
class Receiver:
    """A loopback endpoint standing in for the event handler: records and answers."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    status: str = "200 OK"
    content_type: str = "application/json"
    answer: bytes = b'{"final_sale_order_count": 2}'

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.seen.append(
            {
                "method": environ["REQUEST_METHOD"],
                "path": environ["PATH_INFO"],
                "query": parse_qs(environ["QUERY_STRING"]),
                "content_type": environ.get("CONTENT_TYPE", ""),
                "token": environ.get("HTTP_X_TOGETHER_TOKEN"),
                "body": environ["wsgi.input"].read(length).decode(),
            }
        )
        start_response(self.status, [("Content-Type", self.content_type)])
        return [self.answer]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    app = Receiver()
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    app.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield app
    server.shutdown()
    server.server_close()
    thread.join()


def integration(url: str, **http: Any) -> dict[str, Any]:
    return {
        "name": "Together",
        "type": "http",
        "http": {
            "url": url,
            "method": "POST",
            "headers": {"X-Together-Token": "tok-1"},
            "request_content_type": "application/json",
            "response_content_type": "application/json",
            "form": {
                "ticket_id": "{{ticket.id}}",
                "customer_email": "{{ ticket.customer.email }}",
                "account_domain": "{{ticket.account.domain}}",
                "missing": "{{ticket.assignee_user.email}}",
            },
            **http,
        },
    }


TICKET = {"id": 42, "customer": {"email": "Jane@Example.com"}}


@pytest.fixture
def acme(sandbox: RunningSandbox) -> RunningSandbox:
    sandbox.control.add_gorgias_account("acme", "t")
    return sandbox


def test_fire_renders_sends_and_stores(acme: RunningSandbox, receiver: Receiver) -> None:
    url = receiver.url + "/gorgias/events?email={{ticket.customer.email}}&t={{ticket.id}}"
    stored = acme.control.insert_integration("acme", integration(url))
    result = acme.control.fire("acme", stored["id"], TICKET)
    assert result == {"status": 200, "body": {"final_sale_order_count": 2}}
    [seen] = receiver.seen
    assert seen["method"] == "POST"
    assert seen["path"] == "/gorgias/events"
    assert seen["query"] == {"email": ["Jane@Example.com"], "t": ["42"]}
    assert seen["token"] == "tok-1"
    assert seen["content_type"] == "application/json"
    assert json.loads(seen["body"]) == {
        "ticket_id": "42",
        "customer_email": "Jane@Example.com",
        "account_domain": "acme.gorgias.com",
        "missing": "",
    }
    expected = {str(stored["id"]): {"final_sale_order_count": 2}}
    assert acme.control.customer_data("acme", "jane@example.com") == expected
    assert acme.control.customer_data("acme", "john@example.com") == {}


def test_fire_form_urlencoded_and_explicit_domain(acme: RunningSandbox, receiver: Receiver) -> None:
    body = integration(
        receiver.url + "/e", request_content_type="application/x-www-form-urlencoded"
    )
    stored = acme.control.insert_integration("acme", body)
    ticket = {**TICKET, "account": {"domain": "custom.gorgias.com"}}
    assert acme.control.fire("acme", stored["id"], ticket)["status"] == 200
    [seen] = receiver.seen
    assert seen["content_type"] == "application/x-www-form-urlencoded"
    assert parse_qs(seen["body"])["account_domain"] == ["custom.gorgias.com"]


def test_fire_whole_context(acme: RunningSandbox, receiver: Receiver) -> None:
    stored = acme.control.insert_integration("acme", integration(receiver.url, form="{{context}}"))
    acme.control.fire("acme", stored["id"], TICKET)
    sent = json.loads(receiver.seen[0]["body"])
    assert sent["ticket"]["id"] == 42
    assert sent["ticket"]["account"] == {"domain": "acme.gorgias.com"}


def test_fire_keeps_only_2xx_json(acme: RunningSandbox, receiver: Receiver) -> None:
    stored = acme.control.insert_integration("acme", integration(receiver.url))
    receiver.status = "401 Unauthorized"
    receiver.answer = b'{"error": {"code": "unauthorized"}}'
    result = acme.control.fire("acme", stored["id"], TICKET)
    assert result == {"status": 401, "body": {"error": {"code": "unauthorized"}}}
    receiver.status, receiver.content_type, receiver.answer = "200 OK", "text/plain", b"hello"
    assert acme.control.fire("acme", stored["id"], TICKET) == {"status": 200, "body": "hello"}
    assert acme.control.customer_data("acme", "jane@example.com") == {}


def test_fire_latest_answer_replaces_the_previous(acme: RunningSandbox, receiver: Receiver) -> None:
    stored = acme.control.insert_integration("acme", integration(receiver.url))
    acme.control.fire("acme", stored["id"], TICKET)
    receiver.answer = b'{"final_sale_order_count": 0}'
    acme.control.fire("acme", stored["id"], TICKET)
    data = acme.control.customer_data("acme", "jane@example.com")
    assert data == {str(stored["id"]): {"final_sale_order_count": 0}}


def test_fire_refuses_non_loopback_and_unknown(acme: RunningSandbox) -> None:
    stored = acme.control.insert_integration("acme", integration("https://together.example.com/e"))
    with pytest.raises(SandboxControlError, match="only fires integrations at loopback URLs"):
        acme.control.fire("acme", stored["id"], TICKET)
    with pytest.raises(SandboxControlError, match="no integration 999999"):
        acme.control.fire("acme", 999999, TICKET)
    widget_like = acme.control.insert_integration("acme", {"name": "shopify", "type": "shopify"})
    with pytest.raises(SandboxControlError, match="is not an HTTP integration"):
        acme.control.fire("acme", widget_like["id"], TICKET)


def test_fire_at_a_closed_port_reports_status_0(acme: RunningSandbox) -> None:
    stored = acme.control.insert_integration("acme", integration("http://127.0.0.1:9/closed"))
    result = acme.control.fire("acme", stored["id"], TICKET)
    assert result["status"] == 0
    assert result["body"] is None
