"""Shared AOS workloads for the benches: the same message strings go to our engine and to ao-loader.

A workload is a setup sequence (spawn first, as a compute unit evaluates it) plus one message that the
bench repeats. Messages are built with `aonode.engine.aos`, so both sides receive identical JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

from aonode.engine.aos import env_json, message_json

OWNER = "BENCHOWNER" + "o" * 33
RECIPIENT = "BENCHRECIPIENT" + "r" * 29
PID = "BENCHPROCESS" + "p" * 31
MODULE = "ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s"  # aos2_0_6 on legacynet
PROCESS = {
    "Id": PID,
    "Owner": OWNER,
    "Module": MODULE,
    "Tags": [
        {"name": "Type", "value": "Process"},
        {"name": "Name", "value": "bench"},
        {"name": "Authority", "value": OWNER},
    ],
}
EVAL = (("Action", "Eval"),)
INITIAL_SUPPLY = 10**15

# A minimal token: integer balances, Transfer moves Quantity and notifies both sides, as the ao token
# blueprint does (Debit-Notice to the sender, Credit-Notice to the recipient).
TOKEN_LUA = (
    """
Balances = Balances or { [Owner] = %d }
Handlers.add("transfer", Handlers.utils.hasMatchingTag("Action", "Transfer"), function(msg)
  local qty = math.tointeger(tonumber(msg.Quantity))
  assert(qty and qty > 0, "Quantity must be a positive integer")
  local from, to = msg.From, msg.Recipient
  local have = Balances[from] or 0
  if have < qty then
    Send({ Target = from, Action = "Transfer-Error", ["Message-Id"] = msg.Id, Error = "Insufficient Balance!" })
    return
  end
  Balances[from] = have - qty
  Balances[to] = (Balances[to] or 0) + qty
  Send({ Target = from, Action = "Debit-Notice", Recipient = to, Quantity = tostring(qty),
         Data = "You transferred " .. qty .. " to " .. to })
  Send({ Target = to, Action = "Credit-Notice", Sender = from, Quantity = tostring(qty),
         Data = "You received " .. qty .. " from " .. from })
end)
return "token ready"
"""
    % INITIAL_SUPPLY
)


@dataclass(frozen=True)
class Step:
    """One message after the spawn: who sends it, its tags and its data."""

    sender: str
    tags: tuple[tuple[str, str], ...]
    data: str = ""


@dataclass(frozen=True)
class Workload:
    name: str
    setup: tuple[Step, ...]
    repeat: Step

    def messages(self) -> list[tuple[str, str]]:
        """(msg_json, env_json): the spawn, the setup steps, then the repeated message last."""
        steps = (*self.setup, self.repeat)
        return [spawn_message()] + [message(step, n) for n, step in enumerate(steps, 1)]


def _env() -> str:
    return env_json(PROCESS, {"Id": MODULE, "Tags": []})


def spawn_message() -> tuple[str, str]:
    """The process's own spawn message, which it evaluates first."""
    spawn = dict(PROCESS, From=OWNER, Target=PID, Data="", **{"Block-Height": "1", "Timestamp": "1700000000000"})
    return message_json(spawn), _env()


def message(step: Step, n: int) -> tuple[str, str]:
    """The n-th message after the spawn (n sets its id, height and timestamp)."""
    msg = {
        "Id": f"BENCH{n:07d}" + "m" * 31,
        "From": step.sender,
        "Owner": step.sender,
        "Target": PID,
        "Module": MODULE,
        "Block-Height": str(1 + n),
        "Timestamp": str(1700000000000 + 1000 * n),
        "Tags": [{"name": k, "value": v} for k, v in step.tags],
        "Data": step.data,
    }
    return message_json(msg), _env()


EVAL_RETURN_1 = Workload("Eval `return 1`", setup=(), repeat=Step(OWNER, EVAL, "return 1"))
TOKEN_TRANSFER = Workload(
    "token Transfer",
    setup=(Step(OWNER, EVAL, TOKEN_LUA),),
    repeat=Step(OWNER, (("Action", "Transfer"), ("Recipient", RECIPIENT), ("Quantity", "1"))),
)
WORKLOADS = (EVAL_RETURN_1, TOKEN_TRANSFER)


def fill_lua(rows: int, width: int = 96) -> str:
    """Eval that grows the Lua heap by about rows × (width + 40) bytes (strings kept in a global table)."""
    return (
        "Big = Big or {}; local n = #Big; local pad = string.rep('x', %d); "
        "for i = 1, %d do Big[n + i] = pad .. (n + i) end; return #Big" % (width, rows)
    )
