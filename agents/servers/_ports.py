"""Choosing TCP ports on 127.0.0.1 for managed servers."""

from __future__ import annotations

import contextlib
import socket

from aloesim.core.errors import ConfigError, ServerError

__all__ = ["HOST", "check_ports_free", "free_ports"]

HOST = "127.0.0.1"


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports the kernel reports free right now.

    All sockets stay bound until every port is chosen, so the ports differ;
    they are released before returning, so a server can bind them (a small race
    with other programs remains; the launcher retries when it loses it)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def check_ports_free(first: int, n: int, key: str = "backend.port") -> list[int]:
    """The ports ``first, first+1, ... first+n-1``, after checking each is a
    valid port nobody listens on. Raises ``ConfigError`` for an invalid port and
    ``ServerError`` for one in use."""
    if isinstance(first, bool) or not isinstance(first, int) or not 1 <= first <= 65535 - (n - 1):
        raise ConfigError(key, first, f"an integer port in 1..{65535 - (n - 1)} (or null for a free port)")
    ports = list(range(first, first + n))
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError as err:
                raise ServerError(f"{HOST}:{port}", f"port is not available ({err.strerror})") from None
    return ports
