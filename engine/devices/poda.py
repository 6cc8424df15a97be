"""poda@1.0: a process that lists authorities only evaluates messages they vouch for.

A message signed by its own user passes: the signature already says who sent it. Anything else
(a message relayed by a node, pushed from another process) must carry a `Commitments` tag: a JSON
list of `{"signature-type", "owner", "signature"}` signatures over the message id bytes. At least
`quorum` distinct listed authorities must have signed; a message that fails is skipped with an
error result instead of reaching the image.

Decisions:
- Any invalid commitment rejects the message ("Invalid commitments"), as the reference does: a
  forged signature is a sign of tampering, not a vote to ignore.
- Each authority counts once, however many commitments it made.
- The process's own spawn message always passes (the definition is the root of trust), and so
  does what the node makes for the process itself (owner and From are the process id: cron
  ticks, messages it sent to itself); the server must not accept such messages from outside.
- Authorities come from a `PoDA` tag (a JSON object with `Authority`, `Quorum`) when it lists
  any; otherwise from the `Authority` tags (repeatable, or comma-separated). Quorum: tag
  `PoDA-Quorum`, else the `PoDA` object's `Quorum`, else tag `Quorum`, else 1. A named quorum
  larger than the authority list is refused when the process is initialised.
- Only pass 1 checks: later passes of the same message were already admitted.

Commitments sign the message id, so they are attached with `Message.with_tags`, which keeps the
id; whoever builds a message is responsible for its id matching its content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aonode.engine import crypto
from aonode.engine.devices.base import DeviceInfo, ProcessState, Signal, SlotContext
from aonode.engine.devices.json_iface import empty_results
from aonode.engine.errors import BadInput
from aonode.engine.message import Message, b64url_decode

NAME = "poda@1.0"
COMMITMENTS_TAG = "Commitments"
INVALID = "Invalid commitments"
NOT_ENOUGH = "Not enough validations"
INFO = DeviceInfo(NAME, ("init", "compute"), about="admits only messages a quorum of authorities vouched for")


@dataclass(frozen=True)
class PodaConfig:
    authorities: tuple[str, ...]
    quorum: int


@dataclass(frozen=True)
class Commitment:
    signature_type: int
    owner: bytes
    signature: bytes

    @property
    def signer(self) -> str:
        return crypto.address_of(self.owner)


def _split(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _poda_object(process: Message) -> dict[str, Any]:
    raw = process.tag("PoDA")
    if raw is None:
        return {}
    try:
        obj = json.loads(raw)
    except ValueError:
        return {}  # a plain marker such as "PoDA: true" carries no settings
    return {str(k).lower(): v for k, v in obj.items()} if isinstance(obj, dict) else {}


def _quorum(value: Any) -> int:
    try:
        quorum = int(str(value).strip())
    except ValueError as err:
        raise BadInput(f"PoDA quorum must be an integer, got {value!r}") from err
    if quorum < 1:
        raise BadInput(f"PoDA quorum must be at least 1, got {quorum}")
    return quorum


def config(process: Message) -> PodaConfig:
    """Authorities and quorum from the process definition; BadInput when they cannot work."""
    obj = _poda_object(process)
    authorities = _split(obj.get("authority", []))
    if not authorities:
        authorities = [a for name, value in process.tags if name.lower() == "authority" for a in _split(value)]
    unique = tuple(dict.fromkeys(authorities))
    given = [raw for raw in (process.tag("PoDA-Quorum"), obj.get("quorum"), process.tag("Quorum")) if raw is not None]
    if not given:
        # No quorum named: one authority suffices; with none listed only user-signed messages pass.
        return PodaConfig(authorities=unique, quorum=1)
    quorum = _quorum(given[0])
    if quorum > len(unique):
        raise BadInput(f"PoDA quorum {quorum} exceeds the {len(unique)} listed authorities")
    return PodaConfig(authorities=unique, quorum=quorum)


def commit(msg_id: str, wallet: crypto.Wallet) -> dict[str, Any]:
    """One commitment: `wallet` vouches for the message with id `msg_id`."""
    return {
        "signature-type": wallet.signature_type,
        "owner": crypto.b64url_encode(wallet.owner),
        "signature": crypto.b64url_encode(wallet.sign(b64url_decode(msg_id))),
    }


def with_commitments(msg: Message, commitments: list[dict[str, Any]]) -> Message:
    """`msg` carrying `commitments` (its id unchanged, so the signatures still cover it)."""
    return msg.with_tags(**{COMMITMENTS_TAG: json.dumps(commitments, separators=(",", ":"))})


def parse_commitments(raw: str) -> list[Commitment]:
    """The `Commitments` tag value; BadInput when it is not a list of well-formed commitments."""
    try:
        items = json.loads(raw)
    except ValueError as err:
        raise BadInput("Commitments is not JSON") from err
    if not isinstance(items, list):
        raise BadInput("Commitments must be a JSON list")
    out: list[Commitment] = []
    for item in items:
        if not isinstance(item, dict):
            raise BadInput("each commitment must be an object")
        kind = item.get("signature-type")
        if isinstance(kind, bool) or not isinstance(kind, int):
            raise BadInput("signature-type must be an integer")
        owner, signature = item.get("owner"), item.get("signature")
        if not isinstance(owner, str) or not isinstance(signature, str):
            raise BadInput("a commitment needs owner and signature strings")
        out.append(Commitment(kind, b64url_decode(owner), b64url_decode(signature)))
    return out


def is_user_signed(msg: Message) -> bool:
    """Signed by the user it claims to come from, and not relayed on behalf of a process."""
    return msg.signature is not None and msg.from_ == msg.owner and msg.tag("From-Process") is None


def check(msg: Message, cfg: PodaConfig) -> str | None:
    """None when `msg` may be evaluated, else the error it is skipped with."""
    if is_user_signed(msg):
        return None
    raw = msg.tag(COMMITMENTS_TAG)
    if raw is None:
        return NOT_ENOUGH
    try:
        commitments = parse_commitments(raw)
        id_bytes = b64url_decode(msg.id)
        valid = all(crypto.verify(c.signature_type, c.owner, id_bytes, c.signature) for c in commitments)
    except BadInput:
        return INVALID
    if not valid:
        return INVALID
    signers = {c.signer for c in commitments} & set(cfg.authorities)
    return None if len(signers) >= cfg.quorum else NOT_ENOUGH


def _from_the_process_itself(state: ProcessState, msg: Message) -> bool:
    """The spawn message, and what the node makes for this process (cron ticks, self-sends)."""
    return msg.id == state.process.id or (msg.owner == state.process_id and msg.from_ == state.process_id)


def skip(ctx: SlotContext, error: str) -> Signal:
    """End this message with an error result and no effects."""
    ctx.results = empty_results(error)
    return Signal.SKIP


@dataclass(frozen=True)
class PoDA:
    name: str = NAME

    @staticmethod
    def info() -> DeviceInfo:
        return INFO

    def init(self, state: ProcessState, ctx: SlotContext) -> Signal:
        config(state.process)  # refuse a definition whose quorum can never be met
        return Signal.OK

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        msg = ctx.message
        if msg is None or ctx.pass_ > 1 or _from_the_process_itself(state, msg):
            return Signal.OK
        try:
            cfg = config(state.process)
        except BadInput as err:
            return skip(ctx, f"Invalid PoDA configuration: {err}")
        error = check(msg, cfg)
        return Signal.OK if error is None else skip(ctx, error)
