"""kubi.dropout on a real SSH connection (the unit tier's own sshd on 127.0.0.1): a dead
host is noticed by keepalives and a bound on unacknowledged data, and an error on a dead
connection says the host is lost instead of escaping as a traceback."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from pyinfra.api.state import StateStage

from kubi import dropout

from .test_ssh import connect, home, sshd  # noqa: F401  (fixtures)


@pytest.fixture
def host(sshd, home):  # noqa: F811
    with connect(sshd, "accept-new", home / "known_hosts") as ssh:
        yield SimpleNamespace(
            name="test-host", connector=SimpleNamespace(client=ssh.connection.client)
        )


def test_watch_bounds_unacknowledged_data_and_sends_keepalives(host):
    dropout.watch(host)
    transport = host.connector.client.get_transport()
    timeout = transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
    assert timeout == dropout.DEAD_AFTER * 1000
    assert transport.packetizer._Packetizer__keepalive_interval == dropout.KEEPALIVE
    dropout.watch(host)  # once per connection
    assert dropout.alive(host.connector)


def test_an_error_on_a_dead_connection_names_the_lost_host(host, monkeypatch):
    monkeypatch.setattr(dropout, "dropped", {})
    host.connector.client.get_transport().close()  # the connection ends under us
    assert not dropout.alive(host.connector)
    state = SimpleNamespace(current_stage=StateStage.Prepare)
    raised = dropout.lost(host, state, EOFError())
    assert isinstance(raised, dropout.LostWhilePlanning)
    assert dropout.dropped == {"test-host": "while planning"}
    executing = SimpleNamespace(current_stage=StateStage.Execute)
    assert isinstance(dropout.lost(host, executing, None), ConnectionError)  # pyinfra's kind
    assert dropout.dropped == {"test-host": "while planning"}  # said once


def test_an_eof_is_an_end_at_once_while_a_live_connection_is_not_dead(host):
    # paramiko's writer meets the closed socket before its reader marks the transport.
    assert dropout.dead(host.connector, EOFError())
    assert not dropout.dead(host.connector, OSError("a command's own failure"))
    host.connector.client.get_transport().close()
    assert dropout.dead(host.connector, OSError())
