"""Differential test of the emscripten filesystem: files and SQLite under the real ao-loader and ours.

Each message's output and the sha256 of the whole linear memory must agree, for the main AOS image, its
32-bit build and the AOS-SQLite image (whose SQLite writes a database file, a journal, fsyncs and reads /dev/urandom),
also across a snapshot/restore taken while files and a database handle are open. The peer feeds
ao-loader's /dev/urandom the fixed stream our MemFS uses (tests/peers/aoloader_run.cjs).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from aonode.engine.aos import env_json, message_json, parse_result
from aonode.engine.wasm import Instance, Runtime
from tests.helpers.images import image_path

pytestmark = [pytest.mark.slow, pytest.mark.peers]  # runs the reference ao-loader in node
ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "tests" / "peers" / "aoloader_run.cjs"
OWNER = "FSOWNER" + "o" * 36
PID = "FSPROCESS" + "p" * 34
MODULE = "M" * 43
PROCESS = {"Id": PID, "Owner": OWNER, "Module": MODULE,
           "Tags": [{"name": "Type", "value": "Process"}, {"name": "Name", "value": "fs"},
                    {"name": "Authority", "value": OWNER}]}

FILE_STEPS = [
    ("tmpfile", "local f = io.tmpfile(); f:write('hello world'); local p = f:seek('set', 6); "
                "local c = f:seek('cur', 2); local e = f:seek('end'); f:write('!!'); local e2 = f:seek('end'); "
                "Keep = f; return p .. '|' .. c .. '|' .. e .. '|' .. e2"),
    ("tmpname-rename-remove", "local n = os.tmpname(); local a = table.pack(os.rename(n, '/tmp/renamed')); "
                              "local b = table.pack(os.remove('/tmp/renamed')); "
                              "return n .. ' ' .. tostring(a[1]) .. ' ' .. tostring(b[2])"),
    ("remove-dirs", "local a = table.pack(os.remove('/data')); local b = table.pack(os.remove('/home')); "
                    "local c = table.pack(os.rename('/home/web_user', '/home/user2')); "
                    "return tostring(a[1]) .. '|' .. tostring(b[2]) .. '|' .. tostring(c[1])"),
    ("open-outside-drive", "local f, e = io.open('/tmp/x.txt', 'w'); return tostring(f) .. ' ' .. tostring(e)"),
    ("kept-file-after", "local e = Keep:seek('end'); Keep:seek('set', 0); Keep:write('J'); return e"),
    ("clock", "return os.clock()"),
]
SQLITE_STEPS = [
    ("sqlite-memory", "local sqlite3 = require('lsqlite3'); Mem = sqlite3.open_memory(); "
                      "Mem:exec('CREATE TABLE t(a, b); INSERT INTO t VALUES (1, \"x\"), (2, \"y\")'); "
                      "local r = {}; for row in Mem:nrows('SELECT * FROM t') do r[#r+1] = row.a .. row.b end; "
                      "return table.concat(r, ',')"),
    ("sqlite-file", "local sqlite3 = require('lsqlite3'); Db = sqlite3.open('/tmp/t.db'); "
                    "local rc = Db:exec('CREATE TABLE t(a, b); INSERT INTO t VALUES (1, \"x\"), (2, \"y\")'); "
                    "return rc .. ':' .. Db:changes()"),
    ("sqlite-file-insert", "Db:exec('INSERT INTO t VALUES (3, \"z\")'); local r = {}; "
                           "for row in Db:nrows('SELECT * FROM t ORDER BY a') do r[#r+1] = row.a .. row.b end; "
                           "return table.concat(r, ',')"),
    ("sqlite-reopen", "Db:close(); local sqlite3 = require('lsqlite3'); Db = sqlite3.open('/tmp/t.db'); "
                      "local n; for c in Db:urows('SELECT count(*) FROM t') do n = c end; return n"),
    ("sqlite-memory-again", "local n; for c in Mem:urows('SELECT sum(a) FROM t') do n = c end; return n"),
]
RESTORE_AFTER = {"aos2_0_6": 2, "aos2_0_4_32": 2, "sqlite": 8}  # mid-sequence: files, a tmpfile and databases are open

needs_node = pytest.mark.skipif(not (shutil.which("node") and PEER.exists()), reason="node or the peer is missing")


def sequence(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    env = env_json(PROCESS, {"Id": MODULE, "Tags": []})
    spawn = dict(PROCESS, From=OWNER, Target=PID, Data="", **{"Block-Height": "1", "Timestamp": "1700000000000"})
    out = [(message_json(spawn), env)]
    for n, (_label, code) in enumerate(steps, 1):
        msg = {"Id": f"FSMSG{n:04d}" + "m" * 34, "From": OWNER, "Owner": OWNER, "Target": PID, "Module": MODULE,
               "Block-Height": str(1 + n), "Timestamp": str(1700000000000 + 1000 * n),
               "Tags": [{"name": "Action", "value": "Eval"}], "Data": code}
        out.append((message_json(msg), env))
    return out


CASES = {"aos2_0_6": FILE_STEPS, "aos2_0_4_32": FILE_STEPS, "sqlite": FILE_STEPS + SQLITE_STEPS}
FORMATS = {"aos2_0_4_32": "wasm32-unknown-emscripten4"}  # the rest: the peer's wasm64 default


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Runtime:
    return Runtime(tmp_path_factory.mktemp("fs-wasm-cache"))


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, runtime, tmp_path_factory):
    """(name, labels, messages, reference lines, our results) for one image."""
    name = request.param
    path = image_path(f"{name}.wasm")
    seq = sequence(CASES[name])
    msgs = tmp_path_factory.mktemp("fs-peer") / "messages.json"
    msgs.write_text(json.dumps({"messages": [{"msg": m, "env": e} for m, e in seq]}))
    fmt = ["--format", FORMATS[name]] if name in FORMATS else []
    done = subprocess.run(["node", "--experimental-wasm-memory64", str(PEER), str(path), str(msgs), *fmt],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    image = runtime.load(path.read_bytes())
    inst = Instance(runtime, image)
    ours = []
    for msg, env in seq:
        ours.append((parse_result(inst.handle(msg, env)), inst.memory_sha256()))
    labels = ["spawn"] + [label for label, _ in CASES[name]]
    return name, labels, seq, reference, ours, image


@needs_node
def test_every_message_matches_ao_loader(case):
    name, labels, _, reference, ours, _ = case
    for label, ref, (got, sha) in zip(labels, reference, ours, strict=True):
        assert got.error == ref["error"], (name, label)
        assert got.raw_output == ref["output"], (name, label)
        assert sha == ref["memory_sha256"], (name, label)


@needs_node
def test_files_survive_snapshot_and_restore(case, runtime):
    name, labels, seq, reference, _, image = case
    first = Instance(runtime, image)
    cut = RESTORE_AFTER[name]
    for msg, env in seq[:cut]:
        first.handle(msg, env)
    copy = Instance.restore(runtime, image, first.snapshot())
    for index in range(cut, len(seq)):
        out = parse_result(copy.handle(*seq[index]))
        assert (out.error, out.raw_output) == (reference[index]["error"], reference[index]["output"]), labels[index]
        assert copy.memory_sha256() == reference[index]["memory_sha256"], labels[index]


def test_the_sequence_does_what_it_says(case):
    """Both sides agreeing on failures would prove nothing: the file and SQLite steps really work."""
    name, labels, _, _, ours, _ = case
    out = {label: got.output for label, (got, _) in zip(labels, ours)}
    text = {label: str(o.get("output") if isinstance(o, dict) else o) for label, o in out.items()}
    assert text["tmpfile"] == "6|8|11|13"
    assert text["kept-file-after"] == "13"
    assert text["remove-dirs"] == "true|/home: Directory not empty|true"
    if name == "sqlite":
        assert text["sqlite-memory"] == "1x,2y"
        assert text["sqlite-file"] == "0:2"
        assert text["sqlite-file-insert"] == "1x,2y,3z"
        assert text["sqlite-reopen"] == "3"
        assert text["sqlite-memory-again"] == "3"


DRIVE_ITEM = b"hello from the weave, 0123456789"
DRIVE_STEPS = [
    ("drive-seek-read", "local f = io.open('/data/ITEM'); local n = f:seek('end'); local a = f:seek('set', 6); "
                        "local s = f:read(4); local c = f:seek('cur', 2); local t = f:read(3); f:close(); "
                        "return n .. '|' .. a .. '|' .. s .. '|' .. c .. '|' .. t"),
    ("drive-keep-open", "Drive = io.open('/data/ITEM'); Drive:seek('set', 3); return 'kept'"),
    ("drive-boot-style", "local f = io.open('/data/ITEM'); return f:read(f:seek('end'))"),  # AOS's On-Boot read
    ("drive-tx-header", "local f = io.open('/tx/T'); return f:read(20)"),
    ("drive-read-kept", "return Drive:read(5)"),
    ("clock", "return os.clock()"),
]
DRIVE_RESTORE_AFTER = 3  # the kept drive file is open across the snapshot


@needs_node
def test_weavedrive_reads_match_ao_loader_with_its_extension(runtime, tmp_path):
    """The peer gives ao-loader a WeaveDrive extension over the same directory (the legacy CU's FS
    behaviour): drive files as FS nodes and streams, seeks, reads, headers, clock ticks."""
    (tmp_path / "drive" / "data").mkdir(parents=True)
    (tmp_path / "drive" / "tx").mkdir()
    (tmp_path / "drive" / "data" / "ITEM").write_bytes(DRIVE_ITEM)
    (tmp_path / "drive" / "tx" / "T").write_bytes(b'{"id":"T","tags":[]}')
    path = image_path("aos2_0_6.wasm")
    seq = sequence(DRIVE_STEPS)
    msgs = tmp_path / "messages.json"
    msgs.write_text(json.dumps({"messages": [{"msg": m, "env": e} for m, e in seq]}))
    done = subprocess.run(["node", "--experimental-wasm-memory64", str(PEER), str(path), str(msgs),
                           "--weavedrive", str(tmp_path / "drive")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    image = runtime.load(path.read_bytes())
    inst = Instance(runtime, image, weavedrive_dir=tmp_path / "drive")
    labels = ["spawn"] + [label for label, _ in DRIVE_STEPS]
    for index, (msg, env) in enumerate(seq):
        if index == DRIVE_RESTORE_AFTER:
            inst = Instance.restore(runtime, image, inst.snapshot(), weavedrive_dir=tmp_path / "drive")
        out = parse_result(inst.handle(msg, env))
        assert (out.error, out.raw_output) == (reference[index]["error"], reference[index]["output"]), labels[index]
        assert inst.memory_sha256() == reference[index]["memory_sha256"], labels[index]
    outputs = [str(line["output"]) for line in reference]
    assert "32|6|from|12|he " in outputs[1] and DRIVE_ITEM.decode() in outputs[3] and "lo fr" in outputs[5]
