"""Free TCP ports on the loopback interface."""

import random
import socket
from pathlib import Path

# The kernel gives the ports of this range to outgoing connections (and to a bind to port 0), so a port picked there
# can be taken by any client's connection between being picked and the server binding it: seen in CI as Kafka's
# controller failing with "Address already in use" on a port picked a moment before. Ports are picked below it.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000
_ATTEMPTS = 1000


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default when it cannot be read)."""
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free a moment ago (all held open together so none repeats), outside the range
    outgoing connections take theirs from, so only another server's explicit bind can take one before it is used."""
    low, _ = ephemeral_range()
    rng = random.SystemRandom()
    sockets: list[socket.socket] = []
    try:
        for _ in range(_ATTEMPTS if low - _LOWEST >= 1000 else 0):
            if len(sockets) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", rng.randrange(_LOWEST, low)))
            except OSError:  # in use (or lingering): another
                sock.close()
                continue
            sockets.append(sock)
        while len(sockets) < count:  # no room below the range: whatever the kernel gives
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
