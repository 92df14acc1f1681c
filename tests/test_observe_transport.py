"""The account clients' shared transport: a keep-alive pool per thread, over real sockets."""

from __future__ import annotations

import threading

import httpx
import pytest

from together_reconcile.gorgias.client import BearerAuth
from together_reconcile.reconcile.observe import SharedTransportClientFactory
from together_reconcile.sandbox import RunningSandbox

TOKEN = "sandbox-token-acme"


@pytest.fixture(autouse=True)
def gorgias_url(sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_GORGIAS_URL", sandbox.gorgias_url_template)


def client_port(factory: SharedTransportClientFactory) -> int:
    """List integrations through a fresh account client; the local port it used."""
    with factory("acme.gorgias.com", BearerAuth(TOKEN)) as client:
        response = client._send("GET", "/api/integrations")
        port: int = response.extensions["network_stream"].get_extra_info("client_addr")[1]
        return port


def test_clients_on_one_thread_reuse_one_connection(sandbox: RunningSandbox) -> None:
    sandbox.control.add_gorgias_account("acme", TOKEN)
    factory = SharedTransportClientFactory()
    ports = {client_port(factory) for _ in range(4)}
    assert len(ports) == 1


def test_each_thread_has_its_own_pool_and_dead_threads_pools_are_closed(
    sandbox: RunningSandbox,
) -> None:
    sandbox.control.add_gorgias_account("acme", TOKEN)
    factory = SharedTransportClientFactory()
    ports: list[int] = []
    thread = threading.Thread(target=lambda: ports.append(client_port(factory)))
    thread.start()
    thread.join()
    main_port = client_port(factory)  # a new pool: the dead thread's one is closed
    assert ports[0] != main_port
    transport = factory._transport
    assert transport is not None
    assert list(transport._pools) == [threading.current_thread()]

    transport.close_pools()
    assert transport._pools == {}


def test_a_closed_client_leaves_the_pool_open(sandbox: RunningSandbox) -> None:
    sandbox.control.add_gorgias_account("acme", TOKEN)
    factory = SharedTransportClientFactory()
    first = client_port(factory)  # the client is closed on leaving its `with`
    assert client_port(factory) == first
    assert isinstance(factory._transport, httpx.BaseTransport)
