"""The handler's body reading, event parsing and email check: edges found by mutation testing.

`read_body`, `parse_event` and `plausible_email` are driven directly (exact status, code,
message and connection flag), and the body timeout once more through the WSGI app.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.handler_helpers import call, write_accounts
from together_reconcile.events.app import (
    Event,
    HttpError,
    Settings,
    create_app,
    parse_event,
    plausible_email,
    read_body,
)
from together_reconcile.secrets import Keyring

MAX = 64 * 1024
TOO_LARGE = "the body is larger than 64 KiB"


class Trickle(io.BytesIO):
    """A socket-like body: each read returns at most `step` bytes; records what was asked."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        super().__init__(data)
        self.step = step
        self.asked: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.asked.append(-1 if size is None else size)
        return super().read(min(self.step, size) if size is not None and size >= 0 else self.step)


class Stalls(io.BytesIO):
    """A body whose socket times out after the first `good` bytes."""

    def __init__(self, data: bytes, good: int, error: type[OSError] = TimeoutError) -> None:
        super().__init__(data)
        self.good = good
        self.error = error

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.good:
            raise self.error("timed out")
        limit = self.good - self.tell()
        return super().read(limit if size is None or size < 0 else min(size, limit))


def environ(stream: Any, length: str | None = None, *, chunked: bool = False) -> dict[str, Any]:
    env: dict[str, Any] = {"wsgi.input": stream}
    if length is not None:
        env["CONTENT_LENGTH"] = length
    if chunked:
        env["wsgi.input_terminated"] = True
    return env


def refusal(env: dict[str, Any]) -> tuple[int, str, str, bool]:
    with pytest.raises(HttpError) as raised:
        read_body(env)
    error = raised.value
    assert str(error) == error.message
    return error.status, error.code, error.message, error.close


# -- read_body ---------------------------------------------------------------------------------


def test_short_reads_are_collected_up_to_content_length() -> None:
    data = b'{"ticket_id": 1, "padding": "' + b"x" * 200 + b'"}'
    stream = Trickle(data + b"trailing bytes of the next request")
    assert read_body(environ(stream, str(len(data)))) == data
    assert sum(min(size, 7) for size in stream.asked) >= len(data)


def test_short_reads_are_collected_for_a_chunked_body() -> None:
    data = b"y" * 1000
    assert read_body(environ(Trickle(data, step=3), chunked=True)) == data


def test_reads_are_at_most_64_kib_each() -> None:
    stream = Trickle(b"z" * (3 * MAX), step=MAX)
    with pytest.raises(HttpError):
        read_body(environ(stream, chunked=True))
    assert stream.asked == [MAX, 1]


def test_an_exactly_64_kib_chunked_body_is_read_whole() -> None:
    data = b"a" * MAX
    assert read_body(environ(io.BytesIO(data), chunked=True)) == data


def test_one_byte_over_64_kib_chunked_is_413_and_closes() -> None:
    assert refusal(environ(io.BytesIO(b"a" * (MAX + 1)), chunked=True)) == (
        413,
        "body_too_large",
        TOO_LARGE,
        True,
    )


def test_content_length_over_the_limit_is_413_and_closes_without_reading() -> None:
    stream = Trickle(b"a" * (MAX + 1))
    assert refusal(environ(stream, str(MAX + 1))) == (413, "body_too_large", TOO_LARGE, True)
    assert stream.asked == []


def test_content_length_at_the_limit_is_read() -> None:
    assert read_body(environ(io.BytesIO(b"b" * MAX), str(MAX))) == b"b" * MAX


@pytest.mark.parametrize("declared", ["12abc", "-1", "1e3", "0x10", "+5"])
def test_non_numeric_content_length_is_400_and_closes(declared: str) -> None:
    assert refusal(environ(io.BytesIO(b"{}"), declared)) == (
        400,
        "invalid_content_length",
        "Content-Length is not a number",
        True,
    )


def test_a_superscript_digit_content_length_is_400() -> None:
    assert refusal(environ(io.BytesIO(b"{}"), "²"))[:2] == (400, "invalid_content_length")


def test_content_length_with_spaces_or_empty() -> None:
    assert read_body(environ(io.BytesIO(b"{}xx"), " 2 ")) == b"{}"
    assert read_body(environ(io.BytesIO(b"{}"), "0")) == b""
    # empty or missing, not chunked: no body is read at all
    for env in (environ(Trickle(b"{}"), ""), environ(Trickle(b"{}"))):
        assert read_body(env) == b""
        assert env["wsgi.input"].asked == []


def test_a_body_shorter_than_its_content_length_is_400_and_closes() -> None:
    assert refusal(environ(io.BytesIO(b"{}"), "3")) == (
        400,
        "incomplete_body",
        "the body is shorter than its Content-Length",
        True,
    )


@pytest.mark.parametrize("error", [TimeoutError, ConnectionResetError, OSError])
@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_that_stops_arriving_is_400_and_closes(error: type[OSError], chunked: bool) -> None:
    stream = Stalls(b"x" * 100, good=10, error=error)
    env = environ(stream, chunked=True) if chunked else environ(stream, "100")
    assert refusal(env) == (400, "incomplete_body", "the body did not arrive in time", True)


def test_the_body_timeout_through_the_app_answers_400_and_closes(
    tmp_path: Path, keyring: Keyring
) -> None:
    settings = Settings(
        accounts_dir=write_accounts(tmp_path / "accounts"),
        state_url=f"sqlite:///{tmp_path}/state.db",
        keyring=keyring,
    )
    app = create_app(settings)
    answer = call(
        app,
        body=b"x" * 100,
        token=keyring.event_token("acme.gorgias.com"),
        extra={"wsgi.input": Stalls(b"x" * 100, good=10)},
    )
    assert answer.status == 400
    assert answer.json == {
        "error": {"code": "incomplete_body", "message": "the body did not arrive in time"}
    }
    assert answer.headers["_close"] == "True"
    assert answer.headers["Content-Type"] == "application/json"


def test_the_413_message_follows_the_limit() -> None:
    with pytest.raises(HttpError) as raised:
        read_body(environ(io.BytesIO(b"c" * 3000), chunked=True), max_bytes=2048)
    assert raised.value.message == "the body is larger than 2 KiB"
    assert read_body(environ(io.BytesIO(b"c" * 2048), chunked=True), max_bytes=2048) == (
        b"c" * 2048
    )


# -- parse_event ----------------------------------------------------------------------------


def parse_refusal(body: bytes) -> tuple[int, str, str, bool]:
    with pytest.raises(HttpError) as raised:
        parse_event(body)
    error = raised.value
    return error.status, error.code, error.message, error.close


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"\xff", "invalid_encoding", "the body is not valid UTF-8"),
        (b"nope", "invalid_json", "the body is not valid JSON"),
        (b"[" * 100_000, "invalid_json", "the body is nested too deeply"),
        (b"[1]", "not_an_object", "the body must be a JSON object"),
        (b"{}", "invalid_ticket_id", "ticket_id must be a string or an integer"),
        (b'{"ticket_id": false}', "invalid_ticket_id", "ticket_id must be a string or an integer"),
        (
            b'{"ticket_id": 1, "account_domain": "acme.gorgias.com\\n"}',
            "invalid_account_domain",
            "account_domain must be a Gorgias domain like acme.gorgias.com",
        ),
        (
            b'{"ticket_id": 1, "account_domain": "acme.gorgias.com"}',
            "invalid_customer_email",
            "customer_email is missing",
        ),
        (
            b'{"ticket_id": 1, "account_domain": "acme.gorgias.com", "customer_email": 1}',
            "invalid_customer_email",
            "customer_email must be a string or null",
        ),
    ],
)
def test_parse_refusals_are_400_with_their_exact_message(
    body: bytes, code: str, message: str
) -> None:
    assert parse_refusal(body) == (400, code, message, False)


def test_parse_keeps_the_ticket_id_type_and_lowercases_the_domain() -> None:
    body = {"ticket_id": 7, "account_domain": "ACME.Gorgias.com", "customer_email": None}
    assert parse_event(json.dumps(body).encode()) == Event(7, "acme.gorgias.com", None)
    body.update(ticket_id="7", customer_email=" Jane@Example.com ")
    assert parse_event(json.dumps(body).encode()) == Event(
        "7", "acme.gorgias.com", " Jane@Example.com "
    )


# -- plausible_email ---------------------------------------------------------------------------


def test_del_and_other_control_characters_make_an_email_implausible() -> None:
    assert plausible_email("jane\x7f@example.com") is None
    assert plausible_email("jane@example.com\x7f") is None
    assert plausible_email("jane\x1f@example.com") is None
    assert plausible_email("ja\tne@example.com") is None
    # the characters next to the excluded ranges are fine
    assert plausible_email("ja ne@example.com") == "ja ne@example.com"
    assert plausible_email("jane~@example.com") == "jane~@example.com"
    assert plausible_email("jané\x80@example.com") == "jané\x80@example.com"


def test_320_characters_is_the_longest_plausible_email() -> None:
    at_limit = "j" * (320 - len("@example.com")) + "@example.com"
    assert len(at_limit) == 320
    assert plausible_email(at_limit) == at_limit
    assert plausible_email("  " + at_limit + "\n") == at_limit  # spaces do not count
    assert plausible_email("j" + at_limit) is None


def test_the_last_at_sign_splits_local_part_and_domain() -> None:
    assert plausible_email("a@b@example.com") == "a@b@example.com"
    assert plausible_email("@@example.com") == "@@example.com"
    assert plausible_email("jane@example.com@") is None
    assert plausible_email("jane@@") is None
    assert plausible_email("@") is None


@pytest.mark.parametrize("value", [None, "", "   ", "\t\n", "jane.example.com"])
def test_nothing_to_look_up(value: str | None) -> None:
    assert plausible_email(value) is None


def test_a_plausible_email_is_returned_trimmed_and_unchanged_otherwise() -> None:
    assert plausible_email("  Jane.Doe+tag@Example.COM \n") == "Jane.Doe+tag@Example.COM"
