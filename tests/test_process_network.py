"""Processes talking to each other and to time: push, cron, PoDA, and the bounded live set."""
from __future__ import annotations

from pathlib import Path

import pytest

from aonode.engine import definitions
from aonode.engine.crypto import Wallet
from aonode.engine.devices.poda import commit, with_commitments
from tests.helpers.nodeutil import OTHER, action, definition, eval_msg, make_node, output

pytestmark = pytest.mark.slow  # many processes, eviction and reload

PONG = """
Handlers.add('ping', Handlers.utils.hasMatchingTag('Action', 'Ping'), function(msg)
  Pings = (Pings or 0) + 1
  Send({ Target = msg.From, Action = 'Pong', Data = tostring(Pings) })
end)
return 'ready'
"""

PING = """
Handlers.add('pong', Handlers.utils.hasMatchingTag('Action', 'Pong'), function(msg)
  Pongs = (Pongs or 0) + 1
  if Pongs < 3 then Send({ Target = msg.From, Action = 'Ping' }) end
end)
Send({ Target = '%s', Action = 'Ping' })
return 'started'
"""


def test_two_processes_ping_pong_through_push(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    a = node.spawn(definition(("Name", "a")))["process"]
    b = node.spawn(definition(("Name", "b")))["process"]
    node.schedule(b, eval_msg(b, PONG))
    node.schedule(a, eval_msg(a, PING % b))
    node.settle()
    node.schedule(a, eval_msg(a, "return Pongs", nonce="check"))
    node.schedule(b, eval_msg(b, "return Pings", nonce="check"))
    assert output(node.now(a)) == "3"
    assert output(node.now(b)) == "3"
    # The first Ping went to b's schedule, with the sender set by the node.
    pushed = node.compute(a, 1)["results"]["Pushed"]
    assert pushed and pushed[0]["target"] == b and isinstance(pushed[0]["slot"], int)
    ping = node.store.get_assignment(b, pushed[0]["slot"]).message
    assert ping.from_ == a and ping.tag("From-Process") == a
    node.close()


def test_a_target_spawned_after_a_send_to_it_gets_the_next_one(tmp_path: Path) -> None:
    """The router remembers ids that are no process here (a token's notices go to wallets), but a
    spawn since makes that stale: the first Send is remote, the one after the spawn is delivered."""
    node = make_node(tmp_path / "node")
    a = node.spawn(definition(("Name", "a")))["process"]
    later = definitions.complete(definition(("Name", "later")), node.images.catalogue, node.router.address)
    send = f"Send({{ Target = '{later.id}', Action = 'Hello' }})"
    node.schedule(a, eval_msg(a, send, nonce="before"))
    first = node.now(a)["results"]["Pushed"]
    assert [row["status"] for row in first] == ["remote"]
    assert node.spawn(later)["process"] == later.id
    node.schedule(a, eval_msg(a, send, nonce="after"))
    second = node.now(a)["results"]["Pushed"]
    assert second[0]["target"] == later.id and isinstance(second[0]["slot"], int)
    assert node.store.get_assignment(later.id, second[0]["slot"]).message.tag("Action") == "Hello"
    node.close()


def test_push_loops_are_bounded(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    echo = ("Handlers.add('echo', Handlers.utils.hasMatchingTag('Action', 'Echo'), function(msg) "
            "Echoes = (Echoes or 0) + 1; Send({ Target = msg.From, Action = 'Echo' }) end)")
    a = node.spawn(definition(("Name", "a")))["process"]
    b = node.spawn(definition(("Name", "b")))["process"]
    node.schedule(a, eval_msg(a, echo))
    node.schedule(b, eval_msg(b, echo))
    node.schedule(a, eval_msg(a, f"Send({{ Target = '{b}', Action = 'Echo' }})"))
    node.settle(max_rounds=200)
    node.schedule(a, eval_msg(a, "return Echoes", nonce="check"))
    echoes = int(output(node.now(a)))
    assert 0 < echoes < 100  # the loop stopped at the push depth limit instead of running forever
    stopped = [r for _, r in node.store.results(a, 0, None, 1000, False) + node.store.results(b, 0, None, 1000, False)
               if any(p.get("status") == "depth-exceeded" for p in r.get("Pushed", []))]
    assert stopped, "the bounded hop is reported in the sender's result"
    node.close()


def test_cron_ticks_are_in_the_schedule_and_replay_identically(tmp_path: Path) -> None:
    counts = []
    for run in ("one", "two"):
        node = make_node(tmp_path / run)  # the clock steps 1 s per assignment
        pid = node.spawn(definition(("Cron-Frequency", "2-Seconds")))["process"]
        node.schedule(pid, eval_msg(pid, "Handlers.add('tick', Handlers.utils.hasMatchingTag('Action', 'Cron'), "
                                         "function() Ticks = (Ticks or 0) + 1 end)"))
        for n in range(6):
            node.schedule(pid, eval_msg(pid, "return 1", nonce=str(n)))
        node.schedule(pid, eval_msg(pid, "return Ticks", nonce="ticks"))
        ticks = int(output(node.now(pid)))
        page = node.schedule_page(pid, 0, None)["assignments"]
        cron_slots = [a["slot"] for a in page if any(t["name"] == "Cron-Tick" for t in a["body"]["Tags"])]
        assert ticks == len(cron_slots) and ticks >= 3
        counts.append(cron_slots)
        node.close()
    assert counts[0] == counts[1]


def test_poda_quorum_two_of_three(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    authorities = [Wallet.generate("ed25519") for _ in range(3)]
    pid = node.spawn(definition(*[("Authority", w.address) for w in authorities], ("Quorum", "2")))["process"]

    def relayed(code: str, signers: list[Wallet]):
        msg = eval_msg(pid, code)
        return with_commitments(msg, [commit(msg.id, w) for w in signers])

    node.schedule(pid, relayed("X = 'two'", authorities[:2]))
    assert node.now(pid)["results"]["Error"] is None
    node.schedule(pid, relayed("X = 'one'", authorities[2:]))
    assert node.now(pid)["results"]["Error"] == "Not enough validations"
    stranger = Wallet.generate("ed25519")
    node.schedule(pid, relayed("X = 'stranger'", [authorities[0], stranger]))
    assert node.now(pid)["results"]["Error"] == "Not enough validations"
    node.schedule(pid, relayed("return X", authorities[1:]))
    assert output(node.now(pid)) == "two"
    node.close()


def test_evicted_processes_come_back_from_their_snapshot(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node", max_live=2)
    pids = [node.spawn(definition(("Name", f"p{i}")))["process"] for i in range(4)]
    for i, pid in enumerate(pids):
        node.schedule(pid, eval_msg(pid, f"N = {i}"))
        node.now(pid)
    assert len(node.live) <= 2
    for i, pid in enumerate(pids):
        node.schedule(pid, eval_msg(pid, "return N", nonce="read"))
        assert output(node.now(pid)) == str(i)
    node.close()


def test_pushed_messages_into_a_poda_process_carry_the_node_commitment(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    other = Wallet.generate("ed25519")
    guarded = node.spawn(definition(("Authority", node.address), ("Authority", other.address), ("Quorum", "1"),
                                    ("Name", "guarded")))["process"]
    node.schedule(guarded, relayed_eval(node, guarded, other, "Handlers.add('hi', Handlers.utils.hasMatchingTag("
                                        "'Action', 'Hi'), function(m) Seen = m.From end)"))
    sender = node.spawn(definition(("Name", "sender")))["process"]
    node.schedule(sender, eval_msg(sender, f"Send({{ Target = '{guarded}', Action = 'Hi' }})"))
    node.settle()
    node.schedule(guarded, relayed_eval(node, guarded, other, "return Seen"))
    assert output(node.now(guarded)) == sender
    node.close()


def relayed_eval(node, pid: str, wallet: Wallet, code: str):
    msg = eval_msg(pid, code)
    return with_commitments(msg, [commit(msg.id, wallet)])


def test_a_client_cannot_claim_from_process(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    pid = node.spawn(definition())["process"]
    node.schedule(pid, eval_msg(pid, "Handlers.add('who', 'Who', function(m) "
                                     "LastFrom = m.From .. ' ' .. tostring(m.Tags['From-Process']) end)"))
    forged = action(pid, "Who", ("From-Process", pid), owner=OTHER)  # claims to come from the process itself
    node.schedule(pid, forged)
    node.schedule(pid, eval_msg(pid, "return LastFrom"))
    assert output(node.now(pid)) == f"{OTHER} nil"  # the claim never reaches the handler
    node.close()


def test_ao_assign_schedules_an_existing_message_on_another_local_process(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    a = node.spawn(definition(("Name", "a")))["process"]
    b = node.spawn(definition(("Name", "b")))["process"]
    # AOS only evaluates an assigned message (its Target is another process) when it is assignable.
    node.schedule(b, eval_msg(b, "Handlers.add('note', 'Note', function(m) Noted = m.Data end); "
                                 "ao.addAssignable('notes', function(m) return m.Action == 'Note' end)"))
    node.schedule(a, eval_msg(a, f"Handlers.add('fwd', 'Note', function(m) "
                                 f"Assign({{ Processes = {{ '{b}' }}, Message = m.Id }}) end)"))
    note = action(a, "Note", data="hello", nonce="note")
    node.schedule(a, note)
    node.settle()
    assigned = node.compute(a, 2)["results"]["Assigned"]
    assert assigned == [{"process": b, "message": note.id, "slot": 2}]
    node.schedule(b, eval_msg(b, "return Noted", nonce="check"))
    assert output(node.now(b)) == "hello"
    node.close()
