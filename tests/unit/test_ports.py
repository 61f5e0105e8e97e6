"""Ports for the local stacks are picked outside the range the kernel gives outgoing connections, so no client's
connection can take one between its being picked and its server binding it."""

import socket

from devstack.ports import ephemeral_range, free_ports


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    low, high = ephemeral_range()
    assert 1024 < low < high
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(10000 <= port < low for port in ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
