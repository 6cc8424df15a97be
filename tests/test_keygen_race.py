"""engine/keygen_race.py: a node's first wallet comes from the first of two key searches (forked when the
process has one thread, fresh interpreters otherwise); the key must be a sound RSA-4096 Arweave key (it
survives the full check a JWK load makes, and signs what verifies), each race gives a different key, and
no search process outlives the race, even one cancelled."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from aonode.engine.crypto import RSA, RSA_BITS, Wallet, verify
from aonode.engine.first_start import data_dir_wallet
from aonode.engine.keygen_race import KeyRace, raced_rsa_wallet


def _children() -> set[int]:
    """This process's live child processes (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found |= {int(pid) for pid in (task / "children").read_text().split()}
        except FileNotFoundError:  # that thread ended between the listing and the read
            continue
    return found


def _in_a_thread() -> Wallet:
    """A race run beside another thread: its searches are fresh interpreters, not forks."""
    made: list[Wallet] = []
    worker = threading.Thread(target=lambda: made.append(raced_rsa_wallet()))
    worker.start()
    worker.join()
    return made[0]


@pytest.mark.parametrize("where", ["forked", "spawned"])
def test_raced_wallet_is_a_sound_rsa_4096_key_and_no_search_is_left_running(tmp_path, where):
    before = _children()
    race = raced_rsa_wallet if where == "forked" else _in_a_thread
    first, second = race(), race()
    assert _children() <= before  # the losing searches were killed and reaped
    assert first.signature_type == RSA and first.key.key_size == RSA_BITS  # type: ignore[union-attr]
    assert first.address != second.address
    first.save(tmp_path / "key.json")
    again = Wallet.load(tmp_path / "key.json")  # the JWK load checks the key in full (primes, CRT values)
    assert again.address == first.address
    signature = again.sign(b"a message")
    assert verify(RSA, first.owner, b"a message", signature)
    assert not verify(RSA, first.owner, b"another message", signature)


def test_a_data_dir_keeps_the_wallet_its_first_start_made(tmp_path):
    made = data_dir_wallet(tmp_path)
    assert (tmp_path / "wallet.json").exists()
    assert data_dir_wallet(tmp_path).address == made.address


def test_a_cancelled_race_leaves_no_search_running():
    before = _children()
    race = KeyRace()
    assert _children() - before  # searching
    race.cancel()
    assert _children() <= before
