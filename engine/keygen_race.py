"""A new RSA-4096 wallet from whichever of two processes finds its primes first.

Making an RSA-4096 key is a random prime search: measured on this project's 2-core machine, median
0.5 CPU-s, one in ten over 0.8 s, the slowest of 30 over 2 s. A node's first start waits for its key,
so that tail was the tail of a cold start. Two searches side by side, the first to finish kept and the
other killed, use about the same CPU in total (twice the shorter of two) while the wait becomes the
shorter one: median ~0.26 s, 99th percentile ~0.85 s instead of ~2 s. Processes, not threads: a search
cannot be interrupted, and the loser must stop using the CPU the moment the winner is done.

A race started while the process has one thread forks (the searches cost no interpreter start: ~0.1
CPU-s each); otherwise, or where there is no fork, each search is a fresh `python -c`. This module
imports no `cryptography` itself: a forked search imports what it needs after the fork, and the
caller's own import of it (~0.04-0.06 s) no longer delays both the searches and whatever the caller
starts after them (`aonode serve`: the demo image's compile, server/warmup.py).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aonode.engine.crypto import Wallet

RACERS = 2
DEADLINE_SECONDS = 60.0  # no search done by then (a machine that stalls them): this thread searches itself
# A fresh interpreter's search (needs only `cryptography`): the same as `search`, the key on stdout.
_SEARCH = (
    "import sys;"
    "from cryptography.hazmat.primitives import serialization as s;"
    "from cryptography.hazmat.primitives.asymmetric import rsa;"
    "k=rsa.generate_private_key(public_exponent={exponent},key_size={bits});"
    "sys.stdout.buffer.write(k.private_bytes(s.Encoding.DER,s.PrivateFormat.PKCS8,s.NoEncryption()))"
)


def search(fd: int) -> None:
    """One search (a forked one): a new RSA-4096 key written to `fd` as DER (PKCS#8), and nothing else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from aonode.engine.crypto import RSA_BITS, RSA_EXPONENT

    key = rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=RSA_BITS)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with os.fdopen(fd, "wb") as out:
        out.write(der)


@dataclass
class _Search:
    """One search process and the read end of its output."""

    pid: int
    fd: int
    popen: subprocess.Popen[bytes] | None = None
    status: int | None = None  # its exit status, once reaped

    def reap(self, *, kill: bool) -> int:
        """Wait for it to end (killing it first when `kill`); its exit status (0: it finished well)."""
        if self.status is None:
            if self.popen is not None:
                if kill and self.popen.poll() is None:
                    self.popen.kill()
                self.status = self.popen.wait()
            else:
                if kill:
                    os.kill(self.pid, signal.SIGKILL)  # not reaped yet: the pid is still our child's
                self.status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.status

    def close(self) -> None:
        if self.popen is not None and self.popen.stdout is not None:
            self.popen.stdout.close()
        elif self.popen is None:
            os.close(self.fd)


class KeyRace:
    """`racers` key searches, started at once; `wallet()` waits for the first and stops the others."""

    def __init__(self, racers: int = RACERS) -> None:
        self._searches: list[_Search] = []
        try:
            for _ in range(max(1, racers)):
                self._searches.append(_forked() if _can_fork() else _spawned())
        except OSError:
            pass  # fewer searches (none: this thread searches itself)

    def wallet(self) -> Wallet:
        """The first key found. It comes from our own child, so the load skips OpenSSL's check of the key
        (~0.3 s, holding the GIL), which is for keys from elsewhere."""
        try:
            der = _first_answer(self._searches)
        finally:
            self.cancel()
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        from aonode.engine.crypto import RSA_BITS, Wallet

        if der is not None:
            key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)
            if isinstance(key, rsa.RSAPrivateKey) and key.key_size == RSA_BITS:
                return Wallet(key)
        return Wallet.generate("rsa")

    def cancel(self) -> None:
        """Stop every search still running (the key is not needed after all, or one was found)."""
        for search in self._searches:
            search.reap(kill=True)
            search.close()
        self._searches = []


def raced_rsa_wallet(racers: int = RACERS) -> Wallet:
    """A fresh RSA-4096 wallet, searched in `racers` processes at once."""
    return KeyRace(racers).wallet()


def _can_fork() -> bool:
    """A fork copies only the calling thread: with others running (Python's, or native ones such as a
    compiler's pool), a lock one of them holds would stay held in the child."""
    if not hasattr(os, "fork"):
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1  # every thread of the process (Linux)
    except OSError:
        return threading.active_count() == 1


def _forked() -> _Search:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: search, write, leave without running the parent's cleanups
        status = 1
        try:
            os.close(read)
            os.closerange(3, write)  # nothing of the parent's stays open here (its data-dir lock, sockets)
            os.closerange(write + 1, os.sysconf("SC_OPEN_MAX"))
            search(write)
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    return _Search(pid, read)


def _spawned() -> _Search:
    from aonode.engine.crypto import RSA_BITS, RSA_EXPONENT

    code = _SEARCH.format(exponent=RSA_EXPONENT, bits=RSA_BITS)
    popen = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert popen.stdout is not None
    return _Search(popen.pid, popen.stdout.fileno(), popen)


def _first_answer(searches: list[_Search]) -> bytes | None:
    """The whole output of the first search that ends well; None when every one failed."""
    chunks = {search.fd: bytearray() for search in searches}
    deadline = time.monotonic() + DEADLINE_SECONDS
    with selectors.DefaultSelector() as selector:
        for search in searches:
            selector.register(search.fd, selectors.EVENT_READ, search)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for ready, _ in selector.select(left):
                data = os.read(ready.fd, 1 << 16)
                if data:
                    chunks[ready.fd] += data
                    continue
                selector.unregister(ready.fd)  # end of its output: it is done (or died)
                if chunks[ready.fd] and ready.data.reap(kill=False) == 0:  # its output ended: it is exiting
                    return bytes(chunks[ready.fd])
    return None
