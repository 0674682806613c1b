"""free_port: the port tests give their servers never collides with a client connection's local port."""

from __future__ import annotations

import socket

from managed_agents.testing.loopback import _ephemeral_ports, free_port


def test_free_ports_lie_outside_the_range_client_sockets_take_ports_from() -> None:
    # Given the kernel's ephemeral range, where every outgoing connection's local port comes from
    low, high = _ephemeral_ports()
    # When ports are picked for servers
    ports = [free_port() for _ in range(50)]
    # Then none is one a client socket (boto3 to moto, the SDK, httpx) could be holding when the server binds it
    assert all(not low <= p <= high for p in ports), [p for p in ports if low <= p <= high]
    # And each can be bound at once, and they are spread rather than one port handed out again and again
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    assert len(set(ports)) > 40
