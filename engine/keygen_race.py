"""A new RSA-4096 wallet from whichever of two processes finds its primes first.

Making an RSA-4096 key is a random prime search: measured on this project's 2-core machine, median
0.5 CPU-s, one in ten over 0.8 s, the slowest of 30 over 2 s. A node's first start waits for its key,
so that tail was the tail of a cold start. Two searches side by side, the first to finish kept and the
other killed, use about the same CPU in total (twice the shorter of two) while the wait becomes the
shorter one: median ~0.26 s, 99th percentile ~0.85 s instead of ~2 s. Processes, not threads: a search
cannot be interrupted, and the loser must stop using the CPU the moment the winner is done.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from aonode.engine.crypto import RSA_BITS, RSA_EXPONENT, Wallet

RACERS = 2
# The child prints the key as DER (PKCS#8) on stdout and nothing else.
_SEARCH = (
    "import sys;"
    "from cryptography.hazmat.primitives import serialization as s;"
    "from cryptography.hazmat.primitives.asymmetric import rsa;"
    f"k=rsa.generate_private_key(public_exponent={RSA_EXPONENT},key_size={RSA_BITS});"
    "sys.stdout.buffer.write(k.private_bytes(s.Encoding.DER,s.PrivateFormat.PKCS8,s.NoEncryption()))"
)


def raced_rsa_wallet(racers: int = RACERS) -> Wallet:
    """A fresh RSA-4096 wallet, searched in `racers` processes at once (one search on this thread when
    processes cannot be started). The key comes from our own child, so the load skips OpenSSL's check of
    the key (~0.3 s, holding the GIL), which is for keys from elsewhere."""
    try:
        searches = [
            subprocess.Popen([sys.executable, "-c", _SEARCH], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            for _ in range(max(1, racers))
        ]
    except OSError:
        return Wallet.generate("rsa")
    try:
        der = _first_answer(searches)
    finally:
        for search in searches:
            if search.poll() is None:
                search.kill()
            search.wait()
            if search.stdout is not None:
                search.stdout.close()
    if der is None:
        return Wallet.generate("rsa")
    key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != RSA_BITS:
        return Wallet.generate("rsa")
    return Wallet(key)


def _first_answer(searches: list[subprocess.Popen[bytes]]) -> bytes | None:
    """The whole output of the first search that ends well; None when every one failed."""
    chunks: dict[int, bytearray] = {id(search): bytearray() for search in searches}
    with selectors.DefaultSelector() as selector:
        for search in searches:
            assert search.stdout is not None
            selector.register(search.stdout, selectors.EVENT_READ, search)
        while selector.get_map():
            for ready, _ in selector.select():
                search = ready.data
                data = os.read(ready.fd, 1 << 16)
                if data:
                    chunks[id(search)] += data
                    continue
                selector.unregister(ready.fileobj)  # end of its output: it is done
                if search.wait() == 0 and chunks[id(search)]:
                    return bytes(chunks[id(search)])
    return None
