"""The emscripten filesystem as snapshot state: plain JSON (file bytes base64), rebuilt exactly.

Everything that can reach linear memory later is kept: inode numbers and the next one, the order of
directory entries, timestamps, open descriptors with shared positions (dup), unlinked files that are
still open, the cwd and the /dev/urandom stream position. WeaveDrive files keep only (id, size):
their bytes are Arweave data, read again from the node's cache.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from aonode.engine.wasm.memfs import Node, Shared, Stream, is_dir
from aonode.engine.wasm.memfs_io import DriveReader, MemFS

FORMAT = 1


def _node_row(node: Node, parent_id: int, attached: bool) -> list:
    extra: dict = {}
    if node.drive is not None:
        extra["drive"] = list(node.drive)
    elif node.data:
        extra["data"] = base64.b64encode(bytes(node.data)).decode()
    if node.link:
        extra["link"] = node.link
    return [node.id, parent_id, node.name, node.mode, node.rdev, node.timestamp, int(attached), extra]


def to_dict(fs: MemFS) -> dict:
    rows: list[list] = []
    seen: set[int] = set()

    def walk(node: Node, parent_id: int, attached: bool) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        rows.append(_node_row(node, parent_id, attached))
        for child in node.children.values():
            walk(child, node.id, True)

    walk(fs.root, 0, True)
    for stream in fs.streams.values():  # open but unlinked (a tmpfile) or detached with its parent
        node, chain = stream.node, []
        while id(node) not in seen:
            chain.append(node)
            if node.parent is None or node.parent is node:
                break
            node = node.parent
        for item in reversed(chain):
            parent = item.parent if item.parent is not None else item
            walk(item, parent.id, parent.children.get(item.name) is item)
    shared_ids: dict[int, int] = {}
    streams = []
    for fd in sorted(fs.streams):
        s = fs.streams[fd]
        owner = shared_ids.setdefault(id(s.shared), fd)
        streams.append(
            [
                fd,
                s.node.id,
                s.path,
                s.shared.flags,
                s.shared.position,
                int(s.seekable),
                owner,
                list(s.dirents) if s.dirents is not None else None,
            ]
        )
    return {
        "format": FORMAT,
        "next_ino": fs.next_ino,
        "cwd": fs.cwd,
        "random": [fs.random_counter, fs.random_left],
        "permissions": int(not fs.ignore_permissions),
        "nodes": rows,
        "streams": streams,
    }


def from_dict(data: dict, clock: Callable[[], int], drive_reader: DriveReader | None = None) -> MemFS:
    fs = MemFS(clock, drive_reader)
    nodes: dict[int, Node] = {}
    for ino, parent_id, name, mode, rdev, stamp, attached, extra in data["nodes"]:
        node = Node(ino, name, None, mode, rdev, stamp, link=extra.get("link", ""))
        if "drive" in extra:
            node.drive = (extra["drive"][0], int(extra["drive"][1]))
        elif "data" in extra:
            node.data = bytearray(base64.b64decode(extra["data"]))
        parent = nodes.get(parent_id)
        node.parent = parent if parent is not None else node
        if parent is not None and attached and is_dir(parent.mode):
            parent.children[name] = node
        nodes[ino] = node
    fs.root = nodes[data["nodes"][0][0]]
    fs.next_ino = data["next_ino"]
    fs.cwd = data["cwd"]
    fs.random_counter, fs.random_left = data.get("random", [0, 0])
    fs.ignore_permissions = not data.get("permissions", 1)
    shared: dict[int, Shared] = {}
    for fd, ino, path, flags, position, seekable, owner, dirents in data["streams"]:
        share = shared.setdefault(owner, Shared(flags, position))
        fs.streams[fd] = Stream(fd, nodes[ino], path, share, bool(seekable), dirents)
    return fs
