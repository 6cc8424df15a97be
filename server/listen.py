"""The node's public TCP socket, bound before the node starts and listening once it serves.

Binding it first (port 0: the kernel picks a free one) holds the port for the whole start and names it
in what `aonode serve` announces, so a caller (a test) can let the node pick a port instead of choosing
one that someone else could take before the node binds it. Until hypercorn (or the ingest
workers) listen, a connection is refused, as before anything was bound.

Why a claim beside the socket: with `--ingest-workers` the port is shared (SO_REUSEPORT), and the
kernel lets any socket of the same user with that option join, listening or not; a bound socket that
does not listen yet excludes nobody either (SO_REUSEADDR). So two nodes started at the same instant
could both bind one port and the kernel would spread connections over both nodes' workers. Each node
first claims its address and port (server/port_claim.py: a Linux abstract unix socket, taken atomically,
removed by the kernel with its process, so a node killed with -9 leaves nothing behind); the other is
told the port is in use. Nodes on two addresses of one port (127.0.0.1 and 127.0.0.2) both serve.
"""

from __future__ import annotations

import errno
import socket

from aonode.server.port_claim import PortInUse, port_claim

__all__ = ["PortInUse", "base_url", "bound_socket", "claimed_socket"]

CLAIM_ATTEMPTS = 16  # port 0: free ports tried while other nodes claim each one first (never seen twice)


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


def claimed_socket(host: str, port: int, reuse_port: bool = False) -> tuple[socket.socket, socket.socket]:
    """(the public socket, this node's claim on its port): keep both open while serving, close both
    after. PortInUse when another node holds the claim or another program the port. The claim is taken
    before the bind, so of two nodes racing for one port the second always fails on one or the other."""
    for _ in range(CLAIM_ATTEMPTS):
        if port:
            claim = port_claim(host, port)
            try:
                return _bound(host, port, reuse_port), claim
            except BaseException:
                claim.close()
                raise
        sock = _bound(host, 0, reuse_port)
        try:
            return sock, port_claim(host, sock.getsockname()[1])
        except PortInUse:  # a node claimed this free port just before binding it: take another
            sock.close()
        except BaseException:
            sock.close()
            raise
    raise PortInUse(f"no free port on {host} that another aonode node had not claimed ({CLAIM_ATTEMPTS} tried)")


def _bound(host: str, port: int, reuse_port: bool) -> socket.socket:
    try:
        return bound_socket(host, port, reuse_port)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} is in use on {host}; choose another with --port") from err
        raise


def base_url(host: str, sock: socket.socket) -> str:
    """http://host:port for the port `sock` is bound to (an IPv6 host in brackets)."""
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
