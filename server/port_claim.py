"""One aonode node per TCP endpoint: a claim on (address, port) that the kernel drops with its process.

Why: the ingest workers share the node's port with SO_REUSEPORT, which lets any socket of the same user
with that option join, so the kernel itself would let two nodes share an endpoint (server/listen.py).
Each node holds a Linux abstract unix socket named `aonode-port-<port>@<address>` for as long as it
serves. Two different addresses are two endpoints (127.0.0.1:P and 127.0.0.2:P both serve), but a
wildcard overlaps: 0.0.0.0 every IPv4 address, and :: (dual-stack) every address of both families.

A name for each address cannot say "no specific address is taken", so the claims of one port are
checked and taken under a gate: the abstract socket `aonode-port-<port>`, bound only while a node
looks at the claims held (in /proc/net/unix, this network namespace's) and binds its own. An older
aonode held that very name for its whole run, so a node of this version waits a moment for the gate
and then reports the port in use. Like TCP ports, abstract names belong to the network namespace.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aonode.engine.errors import StartupRefused

GATE_WAIT = 2.0  # seconds: a gate is held for a read of /proc/net/unix and a bind; longer is an older aonode
_UNIX_SOCKETS = Path("/proc/net/unix")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class PortInUse(StartupRefused):
    """The port is bound by another program or claimed by another aonode node: one line, exit 2."""


def port_claim(host: str, port: int) -> socket.socket:
    """This process's claim on `host`:`port` (keep it open while serving), or PortInUse when another
    node's claim overlaps it."""
    address = endpoint_address(host)
    with _gate(port) as gate:
        try:
            held_now = claims_held(port)
        except OSError:  # no /proc/net/unix to read (a locked-down /proc): one node per port, the gate kept
            return gate.dup()
        unclaimed(address, port, held_now)
        claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            claim.bind(f"\0{_claim_name(port)}{address}")
        except BaseException:
            claim.close()
            raise
        return claim


def endpoint_address(host: str) -> Address:
    """The address a bind to `host` takes: a literal as written (an IPv4-mapped IPv6 one as IPv4), a
    name as the resolver gives it first, "" the wildcard."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not host:
        return ipaddress.ip_address("::" if family == socket.AF_INET6 else "0.0.0.0")
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        address = ipaddress.ip_address(socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)[0][4][0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def unclaimed(address: Address, port: int, held: list[Address]) -> None:
    """PortInUse when one of the claims `held` on `port` overlaps `address`."""
    for other in held:
        if overlaps(address, other):
            raise PortInUse(f"port {port} is in use by another aonode serve (on {other}); choose another with --port")


def overlaps(a: Address, b: Address) -> bool:
    """Whether sockets on a and b (one port) would take each other's connections."""
    if a == b or (a.is_unspecified and a.version == 6) or (b.is_unspecified and b.version == 6):
        return True
    return a.version == b.version and (a.is_unspecified or b.is_unspecified)


def claims_held(port: int) -> list[Address]:
    """The addresses of `port` that nodes claim now (this network namespace)."""
    prefix = "@" + _claim_name(port)
    held = []
    for line in _UNIX_SOCKETS.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[7].startswith(prefix):
            try:
                held.append(ipaddress.ip_address(fields[7][len(prefix) :]))
            except ValueError:
                continue
    return held


def _claim_name(port: int) -> str:
    return f"aonode-port-{port}@"


@contextmanager
def _gate(port: int) -> Iterator[socket.socket]:
    gate = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        deadline = time.monotonic() + GATE_WAIT
        while True:
            try:
                gate.bind(f"\0aonode-port-{port}")
                break
            except OSError as err:
                if err.errno != errno.EADDRINUSE:
                    raise
                if time.monotonic() > deadline:
                    raise PortInUse(
                        f"port {port} is in use by another aonode serve; choose another with --port"
                    ) from err
                time.sleep(0.005)
        yield gate
    finally:
        gate.close()
