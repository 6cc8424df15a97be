"""The AOS JSON interface as pure functions: what `handle` is given and how its answer is read."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from aonode.engine.message import b64url

# What json.dumps(obj, ensure_ascii=False, separators=(",", ":")) builds on every call, made once.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(obj: Any) -> str:
    """JSON exactly as JavaScript's JSON.stringify writes it (what ao-loader hands the image)."""
    return _ENCODER.encode(obj)


def _tags(tags: Any) -> list[dict]:
    if isinstance(tags, dict):
        return [{"name": str(k), "value": str(v)} for k, v in tags.items()]
    return [
        {"name": str(t["name"]), "value": str(t["value"])}
        if isinstance(t, dict)
        else {"name": str(t[0]), "value": str(t[1])}
        for t in (tags or [])
    ]


def message_json(msg: dict, process: dict | None = None) -> str:
    """The legacy AO message shape; `From` defaults to `Owner` and `Target` to the process id."""
    out = dict(msg)
    out["Tags"] = _tags(msg.get("Tags"))
    out.setdefault("Owner", msg.get("From", ""))
    out.setdefault("From", out["Owner"])
    if process is not None:
        out.setdefault("Target", process.get("Id", ""))
    if not isinstance(out.get("Data", ""), str):
        out["Data"] = out["Data"].decode() if isinstance(out["Data"], bytes) else _dumps(out["Data"])
    out.setdefault("Data", "")
    return _dumps(out)


def env_json(process: dict, module: dict | None = None) -> str:
    """`{"Process": {Id, Owner, Tags}, "Module": {Id, Tags}}` from the process's spawn message."""
    proc = {
        "Id": process.get("Id", ""),
        "Owner": process.get("Owner", process.get("From", "")),
        "Tags": _tags(process.get("Tags")),
    }
    mod = {"Id": (module or {}).get("Id", process.get("Module", "")), "Tags": _tags((module or {}).get("Tags"))}
    return _dumps({"Process": proc, "Module": mod})


@dataclass
class Outcome:
    """One evaluated message: `output` is Output.data (prints joined), `error` a string or None."""

    ok: bool
    output: Any = ""
    messages: list = field(default_factory=list)
    spawns: list = field(default_factory=list)
    assignments: list = field(default_factory=list)
    patches: list = field(default_factory=list)
    error: str | None = None
    gas_used: int = 0
    raw_output: Any = None


def _error_text(err: Any) -> str | None:
    if err is None or err == "" or err is False:
        return None
    if isinstance(err, str):
        return err
    return _dumps(err)


def parse_result(raw: str, gas_used: int = 0) -> Outcome:
    """Read `handle`'s JSON: `{"ok": bool, "response": {Output, Messages, Spawns, Assignments, Error}}`."""
    if not raw:
        return Outcome(ok=False, error="the image returned no result (invalid input JSON?)", gas_used=gas_used)
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as err:
        return Outcome(ok=False, error=f"the image returned invalid JSON: {err}", gas_used=gas_used)
    ok = bool(doc.get("ok", True)) if isinstance(doc, dict) else False
    response = doc.get("response", doc) if isinstance(doc, dict) else {}
    if not isinstance(response, dict):
        return Outcome(ok=False, error=_error_text(response) or "error", gas_used=gas_used)
    output = response.get("Output")
    data = output.get("data", "") if isinstance(output, dict) else (output if output is not None else "")
    error = _error_text(response.get("Error"))
    if not ok and error is None:
        error = _error_text(response) or "error"
    return Outcome(
        ok=ok,
        output=data,
        messages=list(response.get("Messages") or []),
        spawns=list(response.get("Spawns") or []),
        assignments=list(response.get("Assignments") or []),
        patches=list(response.get("Patches") or []),
        error=error,
        gas_used=gas_used,
        raw_output=output,
    )


EVAL_TAGS = ({"name": "Action", "value": "Eval"},)
BASE_TIMESTAMP = 1_700_000_000_000


@dataclass(frozen=True)
class ProcessSpec:
    """A process as AOS sees it, with message ids and timestamps derived from a counter, so a
    sequence of messages is reproducible (the eval CLI, tests and benchmarks build messages here)."""

    pid: str
    owner: str
    module_id: str
    name: str = "aonode"

    def definition(self) -> dict:
        return {
            "Id": self.pid,
            "Owner": self.owner,
            "Module": self.module_id,
            "Tags": [
                {"name": "Type", "value": "Process"},
                {"name": "Name", "value": self.name},
                {"name": "Authority", "value": self.owner},
            ],
        }

    def env(self) -> str:
        return env_json(self.definition(), {"Id": self.module_id, "Tags": []})

    def spawn_json(self) -> str:
        """The process's own spawn message, which the legacy CU evaluates first."""
        spawn = dict(
            self.definition(),
            From=self.owner,
            Target=self.pid,
            Data="",
            **{"Block-Height": "0", "Timestamp": str(BASE_TIMESTAMP)},
        )
        return message_json(spawn)

    def message_json(self, n: int, data: str = "", frm: str | None = None, tags: list | tuple = EVAL_TAGS) -> str:
        """Message number `n` (>= 1): an Eval from the owner unless told otherwise."""
        sender = frm or self.owner
        digest = hashlib.sha256(f"{self.pid}\x00{n}\x00{sender}".encode()).digest()
        return message_json(
            {
                "Id": b64url(digest),
                "From": sender,
                "Owner": sender,
                "Target": self.pid,
                "Module": self.module_id,
                "Block-Height": str(n),
                "Timestamp": str(BASE_TIMESTAMP + n * 1000),
                "Tags": list(tags),
                "Data": data,
            }
        )
