"""The sandbox speaks HTTP/1.1 keep-alive: connections are reused, every answer (errors too)
has an exact Content-Length, a "drop" fault still drops, and stopping ends kept connections."""

from __future__ import annotations

import socket

import httpx
import pytest

from together_reconcile.sandbox import RunningSandbox, start_sandbox

TOKEN = "sandbox-token-acme"


def read_answer(sock: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """One HTTP answer from `sock`: status line, headers, and exactly Content-Length bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a full head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the whole body"
        rest += chunk
    assert len(rest) == length, "more bytes than Content-Length said"
    return status_line, headers, rest


def get(path: str, auth: str = f"Bearer {TOKEN}") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: sandbox\r\nAuthorization: {auth}\r\n\r\n").encode()


@pytest.fixture
def acme(sandbox: RunningSandbox) -> RunningSandbox:
    sandbox.control.add_gorgias_account("acme", TOKEN)
    return sandbox


def test_one_connection_serves_many_answers_errors_included(acme: RunningSandbox) -> None:
    with socket.create_connection(("127.0.0.1", acme.port), timeout=5) as sock:
        sock.sendall(get("/gorgias/acme/api/integrations"))
        status, headers, body = read_answer(sock)
        assert status == b"HTTP/1.1 200 OK"
        assert b'"data"' in body
        assert headers.get("connection") != "close"

        sock.sendall(get("/gorgias/acme/api/integrations", auth="Bearer wrong"))
        status, _, body = read_answer(sock)
        assert status == b"HTTP/1.1 401 Unauthorized"
        assert body == b'{"error": {"msg": "Unauthorized."}}'

        sock.sendall(get("/gorgias/acme/api/widgets/999"))
        assert read_answer(sock)[0] == b"HTTP/1.1 404 Not Found"

        sock.sendall(get("/nowhere"))
        assert read_answer(sock)[0] == b"HTTP/1.1 404 Not Found"

        acme.control.add_fault("gorgias", "status", status=503)
        sock.sendall(get("/gorgias/acme/api/integrations"))
        status, headers, body = read_answer(sock)
        assert status == b"HTTP/1.1 503 Service Unavailable"
        assert headers["content-type"].startswith("text/html")
        assert len(body) == int(headers["content-length"]) > 0

        sock.sendall(get("/gorgias/acme/api/integrations"))
        assert read_answer(sock)[0] == b"HTTP/1.1 200 OK"


def test_httpx_reuses_one_connection(acme: RunningSandbox) -> None:
    base = acme.gorgias_url_template.format(account="acme")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        ports = set()
        for _ in range(5):
            answer = client.get("/api/integrations", extensions={"trace": None})
            assert answer.status_code == 200
            stream = answer.extensions["network_stream"]
            ports.add(stream.get_extra_info("client_addr")[1])
        assert len(ports) == 1


def test_drop_fault_resets_a_kept_alive_connection(acme: RunningSandbox) -> None:
    with socket.create_connection(("127.0.0.1", acme.port), timeout=5) as sock:
        sock.sendall(get("/gorgias/acme/api/integrations"))
        assert read_answer(sock)[0] == b"HTTP/1.1 200 OK"
        acme.control.add_fault("gorgias", "drop", method="GET")
        sock.sendall(get("/gorgias/acme/api/integrations"))
        try:
            rest = sock.recv(65536)
        except ConnectionResetError:
            rest = b""
        assert rest == b"", "a dropped request gets no answer at all"
    assert acme.control.requests()[-1]["status"] == 0


def test_connection_close_is_honoured(acme: RunningSandbox) -> None:
    request = get("/gorgias/acme/api/integrations").replace(
        b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", acme.port), timeout=5) as sock:
        sock.sendall(request)
        _, headers, _ = read_answer(sock)
        assert headers["connection"] == "close"
        assert sock.recv(1) == b""


def test_a_body_too_large_closes_the_connection_after_the_413(acme: RunningSandbox) -> None:
    request = (
        b"POST /gorgias/acme/api/integrations HTTP/1.1\r\nHost: sandbox\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{"
    )
    with socket.create_connection(("127.0.0.1", acme.port), timeout=5) as sock:
        sock.sendall(request)
        status, headers, _ = read_answer(sock)
        assert status == b"HTTP/1.1 413 Request Entity Too Large"
        assert headers["connection"] == "close"


def test_stopping_ends_kept_alive_connections() -> None:
    running = start_sandbox()
    running.control.add_gorgias_account("acme", TOKEN)
    base = running.gorgias_url_template.format(account="acme")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert client.get("/api/integrations").status_code == 200
        running.stop()
        with pytest.raises(httpx.TransportError):
            client.get("/api/integrations")
