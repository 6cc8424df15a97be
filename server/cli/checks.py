"""What `aonode serve` checks before it starts, so a user's mistake is one line and exit code 2.

A data dir that is a file or unwritable, a host that does not resolve, a port out of range or in
use, and a data dir another `aonode serve` already holds (an exclusive lock on `<data-dir>/lock`,
held for the life of the process: two nodes on one SQLite store would serve stale state).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from aonode.server.port_claim import Address, PortInUse, claims_held, endpoint_address, unclaimed

LOCK_NAME = "lock"


class UserError(Exception):
    """A mistake in how aonode was invoked: `str(err)` is the one line to show; exit code 2."""


def port(text: str) -> int:
    """argparse type for --port."""
    if not text.isdecimal() or not 0 <= int(text) <= 65535:
        raise UserError(f"--port must be a number from 0 (any free port) to 65535, not {text!r}")
    return int(text)


def data_dir_locked(path: Path) -> IO[str]:
    """Create `path` if needed and lock it for this process; keep the returned file open while serving."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--data-dir {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle = open(path / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held until exit
    except OSError as err:
        raise UserError(f"--data-dir {path} cannot be used: {err.strerror or err}") from err
    if not os.access(path, os.W_OK):
        raise UserError(f"--data-dir {path} is not writable")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"--data-dir {path} is in use by another aonode serve ({holder}); stop it or choose another --data-dir"
        ) from err
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def address_free(host: str, port_number: int) -> None:
    """UserError unless `host` resolves and `port_number` can be bound on it right now."""
    try:
        infos = socket.getaddrinfo(host, port_number, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise UserError(f"--host {host!r} is not an address of this machine: {err}") from err
    family, kind, proto, _, address = infos[0]
    if port_number:
        try:
            unclaimed(endpoint_address(host), port_number, _claims(port_number))
        except PortInUse as err:
            raise UserError(str(err)) from err
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise UserError(f"port {port_number} is in use on {host}; choose another with --port") from err
            raise UserError(f"cannot listen on {host}:{port_number}: {err.strerror or err}") from err


def _claims(port_number: int) -> list[Address]:
    """The other nodes' claims on the port; none known without /proc/net/unix (the claim itself decides)."""
    try:
        return claims_held(port_number)
    except OSError:
        return []
