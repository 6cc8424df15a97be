"""Test helper: a port for a server that binds it itself, given only its number (a shell script,
PostgreSQL), held so that nothing else takes it between the choice and the server's bind.

The hold is a socket bound to a free port with SO_REUSEADDR and never listening. On Linux a server that
sets SO_REUSEADDR as well (hypercorn, `aonode serve`, PostgreSQL) may still bind that port and listen
there, while the kernel never gives it to anyone binding port 0 (it is in use) and refuses it to a
socket without SO_REUSEADDR. Servers this code starts itself take a bound socket or port 0 instead.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def held_port(host: str = "127.0.0.1") -> socket.socket:
    """The hold: close it once the server has stopped (getsockname()[1] is the port)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


@contextmanager
def reserved_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A free port, held until the block ends (held_port)."""
    with held_port(host) as sock:
        yield sock.getsockname()[1]
