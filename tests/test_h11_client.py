"""h11_client over real loopback sockets: keep-alive per thread, stale connections, timeouts,
TLS, and each failure named and classed (sent or not) as the Gorgias client relies on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.serve_helpers import free_port
from together_reconcile.gorgias.client import (
    BearerAuth,
    CreateOutcomeUnknown,
    GorgiasClient,
    GorgiasError,
    ThroughHttpx,
    new_sender,
)
from together_reconcile.h11_client import (
    Answer,
    AsyncH11Client,
    H11Client,
    Timeouts,
    TransportError,
)
from together_reconcile.reconcile.observe import SharedTransportClientFactory

OK_BODY = b'{"data": [], "meta": {"next_cursor": null}}'


def answer(body: bytes = OK_BODY, status: str = "200 OK", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


@dataclass
class Seen:
    port: int
    head: str
    body: bytes


# What the server does with a request: bytes to send (then keep reading), or ("close", bytes)
# to send and then close, or ("trickle", bytes) to send a byte every TRICKLE_PAUSE_S, or "hang"
# (read, never answer), or "drop" (close without a word).
Action = bytes | tuple[str, bytes] | str
TRICKLE_PAUSE_S = 0.01


@dataclass
class ScriptedServer:
    """A raw HTTP/1.1 server on a loopback port, answering as `respond` says."""

    respond: Callable[[Seen], Action]
    seen: list[Seen] = field(default_factory=list)
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, address = self.listener.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    conn.close()
                    continue
            self._sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn, address[1]), daemon=True).start()

    def _serve(self, conn: socket.socket, port: int) -> None:
        with contextlib.suppress(OSError):  # the test closed the server
            self._exchange(conn, port)

    def _exchange(self, conn: socket.socket, port: int) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                request = Seen(port, head.decode("latin-1"), body)
                self.seen.append(request)
                action = self.respond(request)
                if action == "hang":
                    self._stop.wait(30)
                    return
                if action == "drop":
                    return
                if isinstance(action, tuple) and action[0] == "trickle":
                    for piece in action[1]:  # a byte at a time, a pause between
                        conn.sendall(bytes([piece]))
                        self._stop.wait(TRICKLE_PAUSE_S)
                    continue
                if isinstance(action, tuple):
                    conn.sendall(action[1])
                    return
                assert isinstance(action, bytes)
                conn.sendall(action)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for conn in self._sockets:
            with contextlib.suppress(OSError):
                conn.close()


Serve = Callable[..., ScriptedServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[ScriptedServer] = []

    def start(
        respond: Callable[[Seen], Action], tls: ssl.SSLContext | None = None
    ) -> ScriptedServer:
        server = ScriptedServer(respond, tls=tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_an_answer_is_read_whole_and_its_headers_ignore_case(serve: Serve) -> None:
    server = serve(
        lambda _r: answer(
            b'{"a": 1}', extra="X-Gorgias-Account-Api-Call-Limit: 1/80\r\nVary: a\r\nVary: b\r\n"
        )
    )
    client = H11Client(headers={"User-Agent": "ua/1"})
    got = client.request("GET", server.url + "/api/x?limit=100", headers=[("Authorization", "t")])
    assert (got.status_code, got.reason_phrase, got.is_success) == (200, "OK", True)
    assert got.json() == {"a": 1}
    assert got.headers.get("x-gorgias-account-api-call-limit") == "1/80"
    assert got.headers["VARY"] == "a, b"
    assert got.headers.get("missing") is None
    head = server.seen[0].head
    assert head.startswith("GET /api/x?limit=100 HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}" in head.lower()
    assert "User-Agent: ua/1" in head and "Authorization: t" in head
    client.close()


def test_a_chunked_answer_and_a_body_with_its_length(serve: Serve) -> None:
    chunked = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"id\r\n5\r\n": 7}\r\n0\r\n\r\n'
    )
    server = serve(lambda _r: chunked)
    client = H11Client()
    body = json.dumps({"name": "Together"}).encode()
    got = client.request("POST", server.url + "/api/integrations", content=body)
    assert got.status_code == 201 and got.json() == {"id": 7}
    assert server.seen[0].body == body
    assert f"Content-Length: {len(body)}" in server.seen[0].head
    client.close()


def test_one_thread_reuses_its_connection_and_each_thread_has_its_own(serve: Serve) -> None:
    server = serve(lambda _r: answer())
    client = H11Client()
    for _ in range(3):
        client.request("GET", server.url + "/a")
    assert client.idle_connections() == 1
    for path in ("/b", "/c"):  # one after the other: the first is gone when the second starts
        other = threading.Thread(target=lambda path=path: client.request("GET", server.url + path))
        other.start()
        other.join()
    client.request("GET", server.url + "/d")
    ports = [seen.port for seen in server.seen]
    assert ports[0] == ports[1] == ports[2] == ports[5]
    assert len({ports[0], ports[3], ports[4]}) == 3
    # The dead threads' pools were closed when another thread started its own.
    assert len(client._pools) == 2 and threading.current_thread() in client._pools
    client.close()
    assert client._pools == {}


def test_a_connection_the_server_closed_is_not_reused(serve: Serve) -> None:
    """The server hangs up after each answer without saying so: the next request, a POST,
    goes on a new connection instead of failing with an unknown outcome."""
    server = serve(lambda _r: ("close", answer()))
    client = H11Client()
    client.request("GET", server.url + "/a")
    time.sleep(0.1)  # the close reaches us
    got = client.request("POST", server.url + "/b", content=b"{}")
    assert got.status_code == 200
    assert len({seen.port for seen in server.seen}) == 2


def test_connection_close_is_honoured_and_idle_connections_expire(serve: Serve) -> None:
    server = serve(lambda _r: answer(extra="Connection: close\r\n"))
    client = H11Client()
    client.request("GET", server.url + "/a")
    assert client.idle_connections() == 0
    keeping = serve(lambda _r: answer())
    expiring = H11Client(keepalive_expiry=0.05)
    expiring.request("GET", keeping.url + "/a")
    time.sleep(0.1)
    expiring.request("GET", keeping.url + "/b")
    assert keeping.seen[0].port != keeping.seen[1].port


def failure(call: Callable[[], object]) -> TransportError:
    with pytest.raises(TransportError) as caught:
        call()
    return caught.value


CLIENTS = pytest.mark.parametrize("which", ["sync", "async"])


def request_with(
    which: str,
    url: str,
    *,
    method: str = "GET",
    content: bytes | None = None,
    timeouts: Timeouts | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Answer:
    """One request through a new sync or asyncio client."""
    timeouts = timeouts or Timeouts()
    if which == "sync":
        return H11Client(timeouts=timeouts, ssl_context=ssl_context).request(
            method, url, content=content
        )

    async def run() -> Answer:
        client = AsyncH11Client(timeouts=timeouts, ssl_context=ssl_context)
        try:
            return await client.request(method, url, content=content)
        finally:
            await client.aclose()

    return asyncio.run(run())


def failure_of(which: str, url: str, **options: Any) -> TransportError:
    """The `TransportError` one request raises (`request_with`'s options)."""
    return failure(lambda: request_with(which, url, **options))


@CLIENTS
def test_a_refused_connection_was_not_sent(which: str) -> None:
    error = failure_of(which, f"http://127.0.0.1:{free_port()}/")
    assert (error.name, error.sent, error.unsendable) == ("ConnectError", False, False)


@CLIENTS
def test_no_answer_in_time_is_a_read_timeout_that_may_have_been_sent(
    serve: Serve, which: str
) -> None:
    server = serve(lambda _r: "hang")
    started = time.monotonic()
    error = failure_of(which, server.url + "/", timeouts=Timeouts(connect=1, read=0.3, write=1))
    assert (error.name, error.sent, error.unsendable) == ("ReadTimeout", True, False)
    assert time.monotonic() - started < 2


@CLIENTS
@pytest.mark.parametrize(
    "action",
    ["drop", ("close", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{"), b"NOT HTTP\r\n\r\n"],
    ids=["closed-without-answer", "closed-mid-body", "garbage"],
)
def test_a_broken_answer_may_have_been_sent(serve: Serve, action: Action, which: str) -> None:
    server = serve(lambda _r: action)
    error = failure_of(which, server.url + "/", method="POST", content=b"{}")
    assert (error.name, error.sent, error.unsendable) == ("RemoteProtocolError", True, False)


@CLIENTS
@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http:///nohost", "http://127.0.0.1:99999/"])
def test_a_url_that_cannot_be_sent(url: str, which: str) -> None:
    error = failure_of(which, url)
    assert (error.name, error.sent, error.unsendable) == ("UnsupportedProtocol", False, True)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("/api/integrations?limit=100", "/api/integrations?limit=100"),
        ("?limit=1", "/?limit=1"),
        ("", "/"),
        ("/p?q=1#fragment", "/p?q=1"),
    ],
    ids=["path-and-query", "query-only", "nothing", "fragment-dropped"],
)
def test_the_request_line_and_host_as_sent(serve: Serve, url: str, target: str) -> None:
    server = serve(lambda _r: answer())
    H11Client().request("GET", server.url + url)
    H11Client().request("GET", "HTTP" + server.url.removeprefix("http") + url)  # any case
    sent = [seen.head.split("\r\n") for seen in server.seen]
    assert [(lines[0], lines[1]) for lines in sent] == [
        (f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{server.port}")
    ] * 2


@pytest.mark.parametrize(
    "value", ["Bearer tok-secret\r\nX: b", "Bearer tok-secret\n", "tok-secret\x00"]
)
def test_a_header_with_a_line_break_is_never_sent_nor_shown(serve: Serve, value: str) -> None:
    """h11 refuses it before anything is sent, and its message (which quotes the value: a
    token) is not passed on."""
    server = serve(lambda _r: answer())
    error = failure(
        lambda: H11Client().request("GET", server.url + "/", headers=[("Authorization", value)])
    )
    assert (error.name, error.sent, error.unsendable) == ("LocalProtocolError", False, True)
    assert server.seen == []
    assert "tok-secret" not in str(error) and "tok-secret" not in repr(error)
    assert str(error) == (
        "LocalProtocolError: a header value h11 refuses (a line break or another control character)"
    )


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    from tests.ops.helpers import make_certificate

    return make_certificate(tmp_path / "tls")


@pytest.fixture
def tls_server(serve: Serve, certificate: tuple[Path, Path]) -> tuple[ScriptedServer, Path]:
    """A server answering over TLS with a certificate certifi does not know, and that
    certificate's file."""
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    return serve(lambda _r: answer(), tls=server_tls), cert


@CLIENTS
def test_tls_verified_with_the_given_context_and_refused_otherwise(
    tls_server: tuple[ScriptedServer, Path], which: str
) -> None:
    server, cert = tls_server
    trusting = ssl.create_default_context(cafile=str(cert))
    url = f"https://localhost:{server.port}/api/x"
    assert request_with(which, url, ssl_context=trusting).status_code == 200
    error = failure_of(which, url)  # certifi does not know it
    assert (error.name, error.sent, error.unsendable) == ("ConnectError", False, False)


@CLIENTS
def test_ssl_cert_file_is_read_as_httpx_reads_it(
    tls_server: tuple[ScriptedServer, Path], monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    server, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert request_with(which, f"https://localhost:{server.port}/").status_code == 200


def test_a_plain_http_server_behind_https_fails_the_handshake() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_in_plain_text() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            time.sleep(0.2)

    threading.Thread(target=answer_in_plain_text, daemon=True).start()
    port = listener.getsockname()[1]
    with listener:
        error = failure(lambda: H11Client().request("GET", f"https://127.0.0.1:{port}/"))
    assert (error.name, error.sent) == ("ConnectError", False)


# -- the Gorgias client on it -----------------------------------------------------------------


def gorgias(server: ScriptedServer, **kwargs: object) -> GorgiasClient:
    return GorgiasClient(
        "acme.gorgias.com",
        BearerAuth("tok-a"),
        base_url_template=server.url + "/{account}",
        sleep=lambda _s: None,
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_gorgias_client_sends_auth_and_json_through_it(serve: Serve) -> None:
    server = serve(lambda _r: answer(b'{"id": 3, "name": "Together \xc3\xa9"}', "201 Created"))
    with gorgias(server) as client:
        assert isinstance(client._http, H11Client)
        made = client.create_integration({"name": "Together é", "type": "http"})
    assert made == {"id": 3, "name": "Together é"}
    seen = server.seen[0]
    assert seen.head.startswith("POST /acme/api/integrations HTTP/1.1")
    assert "Authorization: Bearer tok-a" in seen.head
    assert "Content-Type: application/json" in seen.head
    assert "Accept: application/json" in seen.head
    assert json.loads(seen.body) == {"name": "Together é", "type": "http"}


def test_a_token_with_a_line_break_is_a_clear_error_without_the_token(serve: Serve) -> None:
    server = serve(lambda _r: answer())
    client = GorgiasClient(
        "acme.gorgias.com",
        BearerAuth("tok-secret\n"),
        base_url_template=server.url + "/{account}",
        sleep=lambda _s: None,
    )
    with client, pytest.raises(GorgiasError) as caught:
        client.list_integrations()
    assert str(caught.value) == (
        "Gorgias did not answer GET /api/integrations on acme.gorgias.com: the request could "
        "not be sent (LocalProtocolError); check the account's stored Gorgias token or API "
        "key: a header value holds a line break or another control character"
    )
    assert server.seen == []


def test_a_base_url_that_cannot_be_sent_names_the_setting() -> None:
    client = GorgiasClient(
        "acme.gorgias.com",
        BearerAuth("tok-a"),
        base_url_template="http://127.0.0.1:99999/{account}",
        sleep=lambda _s: None,
    )
    with client, pytest.raises(GorgiasError) as caught:
        client.list_integrations()
    assert caught.value.message == (
        "the request could not be sent (UnsupportedProtocol); check TOGETHER_GORGIAS_URL"
    )
    assert client.request_count == 1  # not retried


def test_a_create_whose_answer_is_lost_is_never_sent_twice(serve: Serve) -> None:
    server = serve(lambda _r: "drop")
    with gorgias(server) as client, pytest.raises(CreateOutcomeUnknown) as caught:
        client.create_integration({"name": "Together"})
    assert len(server.seen) == 1
    assert "RemoteProtocolError" in caught.value.message


@pytest.mark.usefixtures("without_proxy")
def test_the_factory_shares_one_sender_and_behind_a_proxy_the_sender_is_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(A plan through that proxy: tests/test_observe_loop.py.)"""
    factory = SharedTransportClientFactory()
    first = factory("acme.gorgias.com", BearerAuth("tok-a"))
    second = factory("other.gorgias.com", BearerAuth("tok-b"))
    assert first._http is second._http
    assert isinstance(first._http, H11Client)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    behind_proxy = new_sender()
    assert isinstance(behind_proxy, ThroughHttpx)
    behind_proxy.close()


# -- the asyncio client (plan's observation) ---------------------------------------------------


def test_async_requests_share_idle_connections_and_run_at_once(serve: Serve) -> None:
    server = serve(lambda _r: answer(b'{"n": 1}'))

    async def run() -> tuple[list[int], int]:
        client = AsyncH11Client(headers={"Accept": "application/json"})
        first = await asyncio.gather(*(client.request("GET", server.url + "/a") for _ in range(4)))
        idle = client.idle_connections()
        again = await client.request("GET", server.url + "/b", headers=[("Authorization", "t")])
        await client.aclose()
        return [got.json()["n"] for got in [*first, again]], idle

    values, idle = asyncio.run(run())
    assert values == [1] * 5
    assert idle == 4  # four in flight at once: four connections, all kept
    ports = [seen.port for seen in server.seen]
    assert len(set(ports[:4])) == 4 and ports[4] in ports[:4]
    assert (
        "Authorization: t" in server.seen[4].head
        and "Accept: application/json" in server.seen[4].head
    )


def test_async_a_connection_the_server_closed_is_not_reused(serve: Serve) -> None:
    server = serve(lambda _r: ("close", answer()))

    async def run() -> int:
        client = AsyncH11Client()
        await client.request("GET", server.url + "/a")
        await asyncio.sleep(0.1)  # the close reaches the loop
        got = await client.request("GET", server.url + "/b")
        await client.aclose()
        return got.status_code

    assert asyncio.run(run()) == 200
    assert len({seen.port for seen in server.seen}) == 2


def test_an_answer_whose_bytes_keep_coming_is_not_a_read_timeout(serve: Serve) -> None:
    """The read timeout is the longest wait for the next bytes, not for the whole answer
    (as httpx's): the answer comes a byte every 10 ms, taking longer than the 0.2 s timeout."""
    slow = answer(b'{"n": 1}')
    server = serve(lambda _r: ("trickle", slow))
    timeouts = Timeouts(read=0.2)
    assert len(slow) * TRICKLE_PAUSE_S > 2 * timeouts.read  # the premise, not the check
    assert H11Client(timeouts=timeouts).request("GET", server.url + "/").json() == {"n": 1}

    async def run() -> object:
        client = AsyncH11Client(timeouts=timeouts)
        try:
            return (await client.request("GET", server.url + "/")).json()
        finally:
            await client.aclose()

    assert asyncio.run(run()) == {"n": 1}


def test_a_connection_with_bytes_nobody_asked_for_is_not_reused(serve: Serve) -> None:
    server = serve(lambda _r: answer() + b"HTTP/1.1 200 OK\r\n")  # a stray extra answer

    async def run() -> None:
        client = AsyncH11Client()
        await client.request("GET", server.url + "/a")
        await asyncio.sleep(0.1)  # the stray bytes reach the loop
        await client.request("GET", server.url + "/b")
        await client.aclose()

    asyncio.run(run())
    sync = H11Client()
    sync.request("GET", server.url + "/c")
    time.sleep(0.1)
    sync.request("GET", server.url + "/d")
    ports = [seen.port for seen in server.seen]
    assert len(set(ports)) == 4, ports


def test_async_listing_pages_and_paces_as_the_sync_one(serve: Serve) -> None:
    """Two pages, the first answered 429 once (Retry-After: 0): the async list waits, retries
    and follows the cursor, as the sync list does."""
    answers = iter(
        [
            answer(b'{"error": "slow down"}', "429 Too Many Requests", "Retry-After: 0\r\n"),
            answer(b'{"data": [{"id": 1}], "meta": {"next_cursor": "c2"}}'),
            answer(b'{"data": [{"id": 2}], "meta": {"next_cursor": null}}'),
        ]
    )
    server = serve(lambda _r: next(answers))

    async def run() -> list[dict[str, object]]:
        sender = AsyncH11Client()
        with gorgias(server) as client:
            listed = await client.list_async(sender, "/api/widgets", {"integration_id": "7"})
        await sender.aclose()
        return listed

    assert asyncio.run(run()) == [{"id": 1}, {"id": 2}]
    targets = [seen.head.split(" ")[1] for seen in server.seen]
    assert targets == [
        "/acme/api/widgets?integration_id=7&limit=100",
        "/acme/api/widgets?integration_id=7&limit=100",
        "/acme/api/widgets?integration_id=7&limit=100&cursor=c2",
    ]
