"""The node's public TCP socket, bound before the node starts and listening once it serves.

Binding it first (port 0: the kernel picks a free one) holds the port for the whole start and names it
in what `aonode serve` announces, so a caller (a test) can let the node pick a port instead of choosing
one that someone else could take before the node binds it. Until hypercorn (or the ingest
workers) listen, a connection is refused, as before anything was bound.
"""

from __future__ import annotations

import socket


def bound_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to `host`:`port` (0: a free port), not listening: hypercorn's own options
    (SO_REUSEADDR, TCP_NODELAY); `reuse_port` for a port the ingest workers' sockets share."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def base_url(host: str, sock: socket.socket) -> str:
    """http://host:port for the port `sock` is bound to (an IPv6 host in brackets)."""
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
