"""poda@1.0: messages not signed by their user need commitments from a quorum of authorities."""
from __future__ import annotations

import json

import pytest

from aonode.engine.ans104 import build_and_sign
from aonode.engine.crypto import Wallet
from aonode.engine.devices.base import ProcessState, Signal, SlotContext
from aonode.engine.devices.poda import (INVALID, NOT_ENOUGH, PoDA, commit, config,
                                        with_commitments)
from aonode.engine.errors import BadInput
from aonode.engine.message import Message

PID = "P" * 43
RELAY = "R" * 43


@pytest.fixture(scope="module")
def eds() -> list[Wallet]:
    return [Wallet.generate("ed25519") for _ in range(4)]


@pytest.fixture(scope="module")
def rsa_wallet() -> Wallet:
    return Wallet.generate("rsa")


def _process(*tags: tuple[str, str]) -> Message:
    return Message.create(owner="O" * 43, tags=(("Type", "Process"),) + tags)


def _state(process: Message) -> ProcessState:
    return ProcessState(process_id=PID, process=process)


def _ctx(msg: Message | None = None) -> SlotContext:
    return SlotContext(message=msg, results={"Output": {"data": "previous"}})


def _relayed(data: str = "hello") -> Message:
    """A message a node relays for another process: unsigned, From-Process set."""
    return Message.create(owner=RELAY, target=PID, tags=(("Action", "Ping"), ("From-Process", RELAY)),
                          data=data)


def _quorum_2_of_3(wallets: list[Wallet]) -> Message:
    return _process(*(("Authority", w.address) for w in wallets[:3]), ("Quorum", "2"))


def _run(process: Message, msg: Message) -> tuple[Signal, SlotContext]:
    ctx = _ctx(msg)
    return PoDA().compute(_state(process), ctx), ctx


def _assert_skipped(signal: Signal, ctx: SlotContext, error: str) -> None:
    assert signal is Signal.SKIP
    assert ctx.results == {"Error": error, "Output": {"data": ""}, "Messages": [], "Spawns": [],
                             "Assignments": []}


def test_two_of_three_accepted(eds: list[Wallet]) -> None:
    msg = _relayed()
    msg = with_commitments(msg, [commit(msg.id, eds[0]), commit(msg.id, eds[2])])
    signal, ctx = _run(_quorum_2_of_3(eds), msg)
    assert signal is Signal.OK
    assert ctx.results == {"Output": {"data": "previous"}}


def test_one_of_three_rejected(eds: list[Wallet]) -> None:
    msg = _relayed()
    signal, ctx = _run(_quorum_2_of_3(eds), with_commitments(msg, [commit(msg.id, eds[1])]))
    _assert_skipped(signal, ctx, NOT_ENOUGH)


def test_same_authority_twice_counts_once(eds: list[Wallet]) -> None:
    msg = _relayed()
    msg = with_commitments(msg, [commit(msg.id, eds[1]), commit(msg.id, eds[1])])
    _assert_skipped(*_run(_quorum_2_of_3(eds), msg), NOT_ENOUGH)


def test_non_authority_signer_not_counted(eds: list[Wallet]) -> None:
    msg = _relayed()
    msg = with_commitments(msg, [commit(msg.id, eds[0]), commit(msg.id, eds[3])])
    _assert_skipped(*_run(_quorum_2_of_3(eds), msg), NOT_ENOUGH)


def test_invalid_signature_rejected(eds: list[Wallet]) -> None:
    msg = _relayed()
    other = _relayed(data="something else")
    forged = commit(other.id, eds[2])  # a real signature, but over another message
    msg = with_commitments(msg, [commit(msg.id, eds[0]), commit(msg.id, eds[1]), forged])
    _assert_skipped(*_run(_quorum_2_of_3(eds), msg), INVALID)


def test_signature_from_another_key_rejected(eds: list[Wallet]) -> None:
    msg = _relayed()
    stolen = commit(msg.id, eds[3]) | {"owner": commit(msg.id, eds[0])["owner"]}
    msg = with_commitments(msg, [stolen, commit(msg.id, eds[1])])
    _assert_skipped(*_run(_quorum_2_of_3(eds), msg), INVALID)


@pytest.mark.parametrize("raw", ["not json", "{}", "[1]", '[{"signature-type": "2"}]',
                                 '[{"signature-type": 2, "owner": "!!", "signature": "AA"}]',
                                 '[{"signature-type": 9, "owner": "AA", "signature": "AA"}]'])
def test_malformed_commitments_rejected(eds: list[Wallet], raw: str) -> None:
    msg = _relayed().with_tags(Commitments=raw)
    _assert_skipped(*_run(_quorum_2_of_3(eds), msg), INVALID)


def test_no_commitments_rejected(eds: list[Wallet]) -> None:
    _assert_skipped(*_run(_quorum_2_of_3(eds), _relayed()), NOT_ENOUGH)


def test_rsa_and_ed25519_authorities_together(eds: list[Wallet], rsa_wallet: Wallet) -> None:
    process = _process(("Authority", f"{rsa_wallet.address}, {eds[0].address}"), ("PoDA-Quorum", "2"))
    msg = _relayed()
    assert commit(msg.id, rsa_wallet)["signature-type"] == 1
    accepted = with_commitments(msg, [commit(msg.id, rsa_wallet), commit(msg.id, eds[0])])
    assert _run(process, accepted)[0] is Signal.OK
    only_rsa = with_commitments(msg, [commit(msg.id, rsa_wallet)])
    _assert_skipped(*_run(process, only_rsa), NOT_ENOUGH)


def test_user_signed_message_passes_without_commitments(eds: list[Wallet]) -> None:
    user = eds[3]  # not an authority
    item = build_and_sign(user, data="hi", tags=[("Action", "Ping")], target=PID)
    signal, _ = _run(_quorum_2_of_3(eds), item.to_message())
    assert signal is Signal.OK


def test_signed_message_relayed_for_a_process_needs_commitments(eds: list[Wallet]) -> None:
    item = build_and_sign(eds[3], data="hi", tags=[("Action", "Ping"), ("From-Process", RELAY)],
                          target=PID)
    _assert_skipped(*_run(_quorum_2_of_3(eds), item.to_message()), NOT_ENOUGH)


def test_spawn_message_and_own_cron_pass(eds: list[Wallet]) -> None:
    process = _quorum_2_of_3(eds)
    assert _run(process, process)[0] is Signal.OK
    own = Message.create(owner=PID, target=PID, tags=(("Action", "Cron"),), from_=PID)
    assert _run(process, own)[0] is Signal.OK


def test_later_passes_are_not_checked_again(eds: list[Wallet]) -> None:
    ctx = _ctx(_relayed())
    ctx.pass_ = 2
    assert PoDA().compute(_state(_quorum_2_of_3(eds)), ctx) is Signal.OK


def test_config_from_poda_object_overrides_authority_tags(eds: list[Wallet]) -> None:
    poda = json.dumps({"Authority": [eds[0].address, eds[1].address], "Quorum": 2})
    process = _process(("Authority", eds[2].address), ("PoDA", poda))
    cfg = config(process)
    assert cfg.authorities == (eds[0].address, eds[1].address) and cfg.quorum == 2
    msg = _relayed()
    by_tag_authority = with_commitments(msg, [commit(msg.id, eds[0]), commit(msg.id, eds[2])])
    _assert_skipped(*_run(process, by_tag_authority), NOT_ENOUGH)


def test_config_defaults_and_repeated_tags(eds: list[Wallet]) -> None:
    cfg = config(_process(("Authority", eds[0].address), ("Authority", eds[1].address),
                          ("Authority", eds[0].address)))
    assert cfg.authorities == (eds[0].address, eds[1].address) and cfg.quorum == 1
    assert config(_process(("PoDA", "true"))).authorities == ()


@pytest.mark.parametrize("quorum", ["0", "two", "3"])
def test_unusable_quorum_refused_at_init(eds: list[Wallet], quorum: str) -> None:
    process = _process(("Authority", eds[0].address), ("Authority", eds[1].address), ("Quorum", quorum))
    with pytest.raises(BadInput):
        PoDA().init(_state(process), _ctx(process))
    signal, ctx = _run(process, _relayed())
    assert signal is Signal.SKIP and ctx.results["Error"].startswith("Invalid PoDA configuration")
