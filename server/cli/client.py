"""`aonode spawn` / `aonode send`: sign an ANS-104 item with the user's wallet and POST it to a node.

With `--httpsig` the same fields travel as an httpsig@1.0 message (RFC 9421, engine/httpsig.py) to
HyperBEAM's `/push` paths, which also compute it; the node's signatures on the answer are checked
(engine/answer_signature.verify_answer) and the node's address printed as `answered-by`.

Items are built as aoconnect builds them (protocol tags first, then the user's), so a node sees the
same thing whichever client a user picks. Spawn items name the node's scheduler; when the user does
not pass `--scheduler`, the node is asked for its address (`GET /~meta@1.0/info/address`).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

import aonode.server.cli.ansi as ansi
from aonode.engine import httpsig
from aonode.engine.ans104 import DataItem, Tag, build_and_sign
from aonode.engine.answer_signature import verify_answer
from aonode.engine.answers import JSON
from aonode.engine.crypto import Wallet
from aonode.engine.errors import AONodeError, BadInput
from aonode.modules import catalogue

DEFAULT_NODE = "http://127.0.0.1:8734"
VARIANT = "ao.TN.1"
TIMEOUT_S = 60.0
WAIT_TIMEOUT_S = 600.0  # `send --wait`: the node computes every slot before this one first


def parse_tag(text: str) -> Tag:
    """`Name=Value` from the command line; the value may contain '='."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise BadInput(f"--tag expects Name=Value, got {text!r}")
    return name, value


def merge_tags(defaults: Sequence[Tag], user: Sequence[Tag]) -> list[Tag]:
    """Protocol tags first; a user tag with the same name (any case) replaces the default's value."""
    user_by_name = {name.lower(): (name, value) for name, value in user}
    merged = [user_by_name.pop(name.lower(), (name, value)) for name, value in defaults]
    seen = {name.lower() for name, _ in merged}
    return merged + [(n, v) for n, v in user if n.lower() not in seen]


def new_anchor() -> str:
    """A fresh 32-character anchor, so two identical sends (ed25519 signs deterministically) get
    different ids instead of being de-duplicated by the scheduler."""
    return secrets.token_hex(16)


def spawn_tags(module: str, scheduler: str, tags: Sequence[Tag] = ()) -> list[Tag]:
    protocol = [
        ("Data-Protocol", "ao"),
        ("Variant", VARIANT),
        ("Type", "Process"),
        ("Module", module),
        ("Scheduler", scheduler),
    ]
    return merge_tags(protocol, tags)


def message_tags(tags: Sequence[Tag] = ()) -> list[Tag]:
    return merge_tags([("Data-Protocol", "ao"), ("Variant", VARIANT), ("Type", "Message")], tags)


def build_spawn(
    wallet: Wallet,
    *,
    module: str,
    scheduler: str,
    tags: Sequence[Tag] = (),
    data: bytes | str = "",
    anchor: str | None = None,
) -> DataItem:
    return build_and_sign(wallet, data=data, tags=spawn_tags(module, scheduler, tags), anchor=anchor)


def build_message(
    wallet: Wallet, *, process: str, tags: Sequence[Tag] = (), data: bytes | str = "", anchor: str | None = None
) -> DataItem:
    return build_and_sign(wallet, data=data, tags=message_tags(tags), target=process, anchor=anchor)


def schedule_url(node: str, process: str | None = None) -> str:
    base = node.rstrip("/")
    return f"{base}/{process}~process@1.0/schedule" if process else f"{base}/~process@1.0/schedule"


def post_item(url: str, item: DataItem, *, client: httpx.Client | None = None) -> Any:
    """POST the raw item; the node's JSON answer, or AONodeError with its status and body."""
    own = client is None
    http = client or httpx.Client(timeout=TIMEOUT_S)
    try:
        reply = http.post(
            url, content=item.raw, headers={"content-type": "application/octet-stream", "accept": "application/json"}
        )
    except httpx.HTTPError as err:
        raise AONodeError(f"cannot reach {url}: {err}") from err
    finally:
        if own:
            http.close()
    if reply.status_code >= 400:
        raise AONodeError(f"{url} answered {reply.status_code}: {reply.text[:500]}")
    try:
        return reply.json()
    except ValueError:
        return {"id": item.id, "reply": reply.text}


def build_httpsig(
    wallet: Wallet,
    url: str,
    *,
    tags: Sequence[Tag],
    data: bytes | str,
    target: str | None = None,
    anchor: str | None = None,
    committed_body: bool = False,
) -> httpsig.Request:
    """The message as httpsig@1.0 fields (names lowercased; a later tag of the same name wins): the
    request's own signed fields, or (`committed_body`) the request's `body` with its commitment in a
    `body/commitments/<id>` part, as HyperBEAM's own clients send it."""
    fields: dict[str, httpsig.Value] = {name.lower(): value.encode() for name, value in tags}
    fields["data"] = data.encode() if isinstance(data, str) else data
    for key, value in (("target", target), ("anchor", anchor)):
        if value is not None:
            fields[key] = value.encode()
    if committed_body:
        return httpsig.committed_request(wallet, fields, url=url)
    return httpsig.signed_message(wallet, fields, url=url)


def post_httpsig(req: httpsig.Request) -> Any:
    """POST a signed httpsig request; the node's JSON answer plus `answered-by`, the address whose
    signature on the answer verified (AONodeError when the answer is an error or its signature fails)."""
    try:
        reply = httpx.post(req.url, content=req.body, headers=list(req.headers), timeout=TIMEOUT_S)
    except httpx.HTTPError as err:
        raise AONodeError(f"cannot reach {req.url}: {err}") from err
    if reply.status_code >= 400:
        raise AONodeError(f"{req.url} answered {reply.status_code}: {reply.text[:500]}")
    signed = "signature" in reply.headers  # BadInput (below) when its signatures do not verify
    answered_by = verify_answer(reply.headers.multi_items(), reply.content) if signed else None
    return {**reply.json(), "answered-by": answered_by}


def get_json_answer(url: str, timeout: float, hint: str = "") -> httpx.Response:
    """GET `url` asking for JSON; AONodeError (ending in `hint`) unless it answers 200."""
    try:
        reply = httpx.get(url, headers={"accept": "application/json"}, timeout=timeout)
    except httpx.HTTPError as err:
        raise AONodeError(f"cannot reach {url} ({err}){hint}") from err
    if reply.status_code != 200:
        raise AONodeError(f"{url} answered {reply.status_code}: {reply.text[:500]}{hint}")
    return reply


def node_address(node: str) -> str:
    """The node's wallet address: the scheduler a spawn on this node must name."""
    reply = get_json_answer(f"{node.rstrip('/')}/~meta@1.0/info/address", TIMEOUT_S, "; pass --scheduler")
    text = reply.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text
    return body.get("address", text) if isinstance(body, dict) else str(body)


def resolve_module(ref: str | None) -> str:
    """A module id: the argument itself when it is an id, else the catalogue's id for that name."""
    ref = ref or catalogue.default_name()
    if catalogue.MODULE_ID.match(ref):
        return ref
    entry = catalogue.lookup(ref)
    if entry is None:
        raise BadInput(f"unknown module {ref!r} (not an id and not in the catalogue)")
    return entry.id or entry.name  # uncatalogued-on-Arweave images go by name; the node resolves it


def _read_data(args: argparse.Namespace, default: str) -> bytes | str:
    if args.data_file:
        return Path(args.data_file).read_bytes()
    return args.data if args.data is not None else default


def _run(args: argparse.Namespace) -> int:
    try:
        wallet = Wallet.load(args.wallet)
        tags = [parse_tag(t) for t in args.tag]
        anchor = args.anchor or new_anchor()
        answer = (
            _run_httpsig(args, wallet, tags, anchor)
            if args.httpsig
            else post_item(*_ans104_item(args, wallet, tags, anchor))
        )
        if getattr(args, "wait", False):
            result = slot_result(args.node, args.process, answer.get("slot") if isinstance(answer, dict) else None)
            answer = {**answer, "result": result if args.raw else ansi.strip(result)}
    except (AONodeError, OSError) as err:
        print(f"aonode {args.command}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 1 if getattr(args, "wait", False) and _errored(answer["result"]) else 0


def slot_result(node: str, process: str, slot: object) -> JSON:
    """The result of `slot` of `process` (`/compute/<slot>/results`: the node computes up to it first)."""
    if not isinstance(slot, int):
        raise AONodeError(f"the node's answer names no slot to wait for (got {slot!r})")
    url = f"{node.rstrip('/')}/{process}~process@1.0/compute/{slot}/results"
    result: JSON = get_json_answer(url, WAIT_TIMEOUT_S).json()
    return result


def _errored(result: JSON) -> bool:
    return isinstance(result, dict) and result.get("Error") not in (None, "", {})


def _ans104_item(args: argparse.Namespace, wallet: Wallet, tags: list[Tag], anchor: str) -> tuple[str, DataItem]:
    if args.command == "spawn":
        scheduler = args.scheduler or node_address(args.node)
        # aoconnect sends "1984" when a spawn has no data; gateways refuse empty items.
        item = build_spawn(
            wallet,
            module=resolve_module(args.module),
            scheduler=scheduler,
            tags=tags,
            data=_read_data(args, "1984"),
            anchor=anchor,
        )
        return schedule_url(args.node), item
    item = build_message(wallet, process=args.process, tags=tags, data=_read_data(args, ""), anchor=anchor)
    return schedule_url(args.node, args.process), item


def _run_httpsig(args: argparse.Namespace, wallet: Wallet, tags: list[Tag], anchor: str) -> Any:
    base = args.node.rstrip("/")
    if args.command == "spawn":
        all_tags = spawn_tags(resolve_module(args.module), args.scheduler or node_address(args.node), tags)
        return post_httpsig(
            build_httpsig(
                wallet,
                f"{base}/push",
                tags=all_tags,
                data=_read_data(args, "1984"),
                anchor=anchor,
                committed_body=args.committed_body,
            )
        )
    return post_httpsig(
        build_httpsig(
            wallet,
            f"{base}/{args.process}~process@1.0/push",
            tags=message_tags(tags),
            data=_read_data(args, ""),
            target=args.process,
            anchor=anchor,
            committed_body=args.committed_body,
        )
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wallet", required=True, help="Arweave JWK file (RSA-4096 or Ed25519)")
    parser.add_argument("--node", default=DEFAULT_NODE, help=f"node URL (default {DEFAULT_NODE})")
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add a tag (repeatable); overrides a protocol tag of the same name",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--data", help="the item's data as text")
    group.add_argument("--data-file", help="read the item's data from this file")
    parser.add_argument("--anchor", help="32-character anchor (default: random)")
    parser.add_argument(
        "--httpsig",
        action="store_true",
        help="send an httpsig@1.0 (RFC 9421) message to /push (scheduled and computed) "
        "instead of an ANS-104 item to /schedule",
    )
    parser.add_argument(
        "--committed-body",
        action="store_true",
        help="with --httpsig: send the message as the request's multipart body with its "
        "commitment in a body/commitments/<id> part (HyperBEAM's form) instead of "
        "signing the request's own fields",
    )
    parser.set_defaults(func=_run)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `aonode spawn` and `aonode send` on the main CLI."""
    spawn = subparsers.add_parser("spawn", help="sign and schedule a process spawn on a node")
    spawn.add_argument("--module", help="module id or catalogue name (default: the catalogue's default)")
    spawn.add_argument("--scheduler", help="scheduler address (default: ask the node)")
    _common(spawn)
    send = subparsers.add_parser("send", help="sign and schedule a message to a process on a node")
    send.add_argument("process", help="target process id")
    send.add_argument(
        "--wait",
        action="store_true",
        help="wait until the node computed the message and add its result (Output, Messages, "
        "Error, ...) as `result`; exit 1 when it has an Error",
    )
    send.add_argument(
        "--raw",
        action="store_true",
        help="with --wait: keep AOS's ANSI colour codes in the result (stripped by default)",
    )
    _common(send)
