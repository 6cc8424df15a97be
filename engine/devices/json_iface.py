"""json-iface@1.0: the AOS JSON calling convention between a message and the wasm device.

Pass 1 turns the assigned message and the process into the `msg`/`env` JSON strings AOS `handle`
reads (`ctx.wasm_input`, for wasm64@1.0); pass 2 decodes what `handle` returned (`ctx.wasm_output`)
into `ctx.results`. Keeping encoding apart from execution lets the wasm device stay format-agnostic.
"""

from __future__ import annotations

from typing import Any

from aonode.engine import aos
from aonode.engine.devices.base import Assignment, DeviceInfo, JsonObject, ProcessState, Signal, SlotContext
from aonode.engine.message import Message

INFO = DeviceInfo("json-iface@1.0", ("compute",), about="AOS JSON in (pass 1) and out (pass 2)")

# Tags the scheduler adds to an assignment that AOS reads as top-level message fields.
ASSIGNMENT_FIELDS = ("Timestamp", "Block-Height", "Hash-Chain", "Epoch", "Nonce")


def empty_results(error: str | None = None) -> JsonObject:
    return {"Output": {"data": ""}, "Messages": [], "Spawns": [], "Assignments": [], "Error": error}


def module_id(process: Message) -> str:
    return process.tag("Module") or process.tag("WASM-Image") or process.tag("Image") or ""


def legacy_message(msg: Message, process_id: str, process: Message, assignment: Assignment | None) -> dict[str, Any]:
    """The message as the legacy CU hands it to AOS: the signed fields plus the assignment's
    (zeros without one)."""
    body = msg.to_legacy_json()
    if msg.from_ == msg.owner:
        # From-Process is the node's word about which local process sent a message; a client's
        # own claim is dropped so `msg.From` checks in handlers cannot be forged.
        body["Tags"] = [t for t in body["Tags"] if t["name"].lower() != "from-process"]
    body["Target"] = msg.target or process_id
    body["Module"] = module_id(process)
    body["Timestamp"] = str(assignment.timestamp if assignment else 0)
    body["Block-Height"] = str(assignment.block_height if assignment else 0)
    body["Epoch"] = str(assignment.epoch if assignment else 0)
    body["Nonce"] = str(assignment.slot if assignment else 0)
    body["Hash-Chain"] = assignment.hash_chain if assignment else ""
    if any(name.lower() == "cron-tick" for name, _ in msg.tags):
        body["Cron"] = True
    return body


def environment(process_id: str, process: Message) -> dict[str, Any]:
    return {
        "Process": {
            "Id": process_id,
            "Owner": process.owner,
            "Tags": [{"name": n, "value": v} for n, v in process.tags],
        },
        "Module": {"Id": module_id(process), "Tags": []},
    }


class JSONInterface:
    name = INFO.name

    def __init__(self) -> None:
        self._env: tuple[str, str] | None = None  # (process id, env JSON): the same for every message

    @staticmethod
    def info() -> DeviceInfo:
        return INFO

    def prepare(self, state: ProcessState, ctx: SlotContext) -> None:
        """Pass 1's encoding ahead of pass 1 (it reads only the message, its assignment and the
        definition): a backlog does it on the compute thread, so the wasm-ahead thread only runs wasm."""
        if ctx.message is not None:
            body = legacy_message(ctx.message, state.process_id, state.process, ctx.assignment)
            ctx.wasm_input = (aos.message_json(body), self._env_json(state))

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        if ctx.pass_ == 1:
            if ctx.wasm_input is None:  # not prepared ahead
                self.prepare(state, ctx)
            return Signal.OK
        raw, ctx.wasm_output = ctx.wasm_output, None
        if raw is None:  # the wasm device already put an error result in place
            return Signal.OK
        outcome = aos.parse_result(raw)
        ctx.results = {
            "Output": outcome.raw_output,  # as the image returned it (None when AOS printed nothing), as ao-loader does
            "Messages": list(outcome.messages),
            "Spawns": list(outcome.spawns),
            "Assignments": list(outcome.assignments),
            "Error": outcome.error,
            "GasUsed": outcome.gas_used,
        }
        return Signal.OK

    def _env_json(self, state: ProcessState) -> str:
        if self._env is None or self._env[0] != state.process_id:
            env = environment(state.process_id, state.process)
            self._env = (state.process_id, aos.env_json(env["Process"], env["Module"]))
        return self._env[1]
