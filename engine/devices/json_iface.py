"""json-iface@1.0: the AOS JSON calling convention between a message and the wasm device.

Pass 1 turns the assigned message and the process into the `msg`/`env` JSON strings AOS `handle`
reads (left in `state.scratch` for wasm64@1.0); pass 2 decodes what `handle` returned into
`state.results`. Keeping encoding apart from execution lets the wasm device stay format-agnostic.
"""
from __future__ import annotations

from typing import Any

from aonode.engine import aos
from aonode.engine.devices.base import ProcessState, Signal
from aonode.engine.message import Message

# Tags the scheduler adds to an assignment that AOS reads as top-level message fields.
ASSIGNMENT_FIELDS = ("Timestamp", "Block-Height", "Hash-Chain", "Epoch", "Nonce")


def empty_results(error: str | None = None) -> dict[str, Any]:
    return {"Output": {"data": ""}, "Messages": [], "Spawns": [], "Assignments": [], "Error": error}


def module_id(process: Message) -> str:
    return process.tag("Module") or process.tag("WASM-Image") or process.tag("Image") or ""


def legacy_message(msg: Message, process_id: str, process: Message, assignment: dict[str, Any]) -> dict[str, Any]:
    """The message as the legacy CU hands it to AOS: the signed fields plus the assignment's."""
    body = msg.to_legacy_json()
    if msg.from_ == msg.owner:
        # From-Process is the node's word about which local process sent a message; a client's
        # own claim is dropped so `msg.From` checks in handlers cannot be forged.
        body["Tags"] = [t for t in body["Tags"] if t["name"].lower() != "from-process"]
    body["Target"] = msg.target or process_id
    body["Module"] = module_id(process)
    body["Timestamp"] = str(assignment.get("timestamp", 0))
    body["Block-Height"] = str(assignment.get("block-height", 0))
    body["Epoch"] = str(assignment.get("epoch", 0))
    body["Nonce"] = str(assignment.get("slot", 0))
    body["Hash-Chain"] = assignment.get("hash-chain", "")
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
    name = "json-iface@1.0"

    def compute(self, state: ProcessState, msg: Message) -> Signal:
        if state.pass_ == 1:
            assignment = state.scratch.get("assignment", {})
            body = legacy_message(msg, state.process_id, state.process, assignment)
            env = state.scratch.get("env-json")
            if env is None:  # the same for every message of the process
                env = state.scratch["env-json"] = aos.env_json(*self._env_parts(state))
            state.scratch["wasm-input"] = (aos.message_json(body), env)
            return Signal.OK
        raw = state.scratch.pop("wasm-output", None)
        if raw is None:  # the wasm device already put an error result in place
            return Signal.OK
        outcome = aos.parse_result(raw)
        state.results = {
            "Output": outcome.raw_output if isinstance(outcome.raw_output, dict) else {"data": outcome.output},
            "Messages": list(outcome.messages),
            "Spawns": list(outcome.spawns),
            "Assignments": list(outcome.assignments),
            "Error": outcome.error,
            "GasUsed": outcome.gas_used,
        }
        return Signal.OK

    @staticmethod
    def _env_parts(state: ProcessState) -> tuple[dict[str, Any], dict[str, Any]]:
        env = environment(state.process_id, state.process)
        return env["Process"], env["Module"]
