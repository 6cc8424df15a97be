"""aos2_0_6 in wasmtime: Eval, state across messages, handlers, print, errors, Send and Spawn."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from aonode.engine.aos import parse_result
from aonode.engine.wasm import Instance, Runtime
from tests.helpers.images import AOS_MODULE_ID, SPEC, image_path

pytestmark = pytest.mark.slow  # two full AOS images, and ao-loader in node

OTHER = "OTHER" + "t" * 38


class Proc:
    """A spawned in-memory process: the spawn message first, then numbered messages."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.n = 0
        self.first = parse_result(instance.handle(SPEC.spawn_json(), SPEC.env()))

    def send(self, data: str, frm: str | None = None, tags: list | None = None):
        self.n += 1
        msg = SPEC.message_json(self.n, data, frm, tags) if tags else SPEC.message_json(self.n, data, frm)
        return parse_result(self.instance.handle(msg, SPEC.env()))


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Runtime:
    return Runtime(tmp_path_factory.mktemp("wasm-cache"))


@pytest.fixture()
def proc(runtime, aos_image) -> Proc:
    return Proc(Instance(runtime, runtime.load(aos_image.read_bytes())))


def test_spawn_then_eval_returns_two(proc):
    assert proc.first.ok and proc.first.error is None
    out = proc.send("return 1+1")
    assert out.ok and out.output == "2" and out.error is None


def test_state_survives_and_print_is_captured(proc):
    proc.send("counter = 41")
    out = proc.send("counter = counter + 1; print('hello'); return counter")
    assert out.output == "hello\n42"


def test_error_is_reported_and_state_kept(proc):
    proc.send("kept = 'yes'")
    out = proc.send('error("boom")')
    assert out.error is not None and "boom" in out.error
    assert proc.send("return kept").output == "yes"


def test_handler_replies_to_other_sender(proc):
    proc.send('Handlers.add("ping", Handlers.utils.hasMatchingTag("Action", "Ping"), '
              'function(m) m.reply({ Data = "pong" }) end)')
    out = proc.send("", frm=OTHER, tags=[{"name": "Action", "value": "Ping"}])
    assert out.error is None
    replies = [m for m in out.messages if m.get("Target") == OTHER]
    assert replies and replies[0]["Data"] == "pong"


def test_send_and_spawn_appear_in_outbox(proc):
    out = proc.send('Send({ Target = "' + OTHER + '", Data = "hi", Action = "Hello" }); '
                    'Spawn("' + AOS_MODULE_ID + '", { Data = "child" }); return "ok"')
    assert out.output == "ok"
    assert any(m.get("Target") == OTHER and m.get("Data") == "hi" for m in out.messages)
    assert len(out.spawns) == 1 and out.spawns[0].get("Data") == "child"


PEER = Path(__file__).resolve().parent / "peers" / "aoloader_run.cjs"
AO_LOADER = Path(__file__).resolve().parents[1] / "node_modules" / "@permaweb" / "ao-loader"


def _sequence() -> list[tuple[str, str]]:
    codes = ["return 1+1", "x = 41", "x = x + 1; print('hi'); return x", 'error("boom")', "return x",
             "return os.time()", "return math.random()",
             'Send({ Target = "' + OTHER + '", Data = "hi" }); return "sent"',
             "return os.date('%c|%j|%U|%V|%G|%g|%a %A %b %B|%p %I|%e|%u %w|%y %C %D %F %T|%%|%z', 1700000000)",
             "return os.date('!%x %X %r %R %h %n%t%W', 1)",
             "return os.time({ year = 2024, month = 14, day = 35, hour = 25 })",
             "return os.date('*t', 1709251200).yday"]
    env = SPEC.env()
    return [(SPEC.spawn_json(), env)] + [(SPEC.message_json(n, code), env) for n, code in enumerate(codes, 1)]


@pytest.mark.peers
@pytest.mark.skipif(not (shutil.which("node") and PEER.exists() and AO_LOADER.exists()),
                    reason="node, ao-loader or the peer runner is missing")
@pytest.mark.parametrize("name,fmt", [("aos2_0_6.wasm", "wasm64-unknown-emscripten-draft_2024_02_15"),
                                      ("aos2_0_4_32.wasm", "wasm32-unknown-emscripten4")])
def test_same_outputs_and_memory_as_ao_loader(runtime, tmp_path, name, fmt):
    """The reference loader and our host agree byte for byte on memory after every message."""
    image = image_path(name)
    seq = _sequence()
    (tmp_path / "m.json").write_text(json.dumps({"messages": [{"msg": m, "env": e} for m, e in seq]}))
    done = subprocess.run(["node", "--experimental-wasm-memory64", str(PEER), str(image), str(tmp_path / "m.json"),
                           "--format", fmt], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    inst = Instance(runtime, runtime.load(image.read_bytes()))
    for (msg, env), ref in zip(seq, theirs, strict=True):
        out = parse_result(inst.handle(msg, env))
        assert out.error == ref["error"]
        assert out.raw_output == (ref["output"] if out.error is None else out.raw_output)
        assert out.messages == ref["messages"]
        assert (inst.memory_sha256(), inst.memory_size) == (ref["memory_sha256"], ref["memory_size"])


@pytest.mark.parametrize("name", ["aos2_0_6.wasm", "aos2_0_4_32.wasm"])
def test_wasm_helper_and_python_imports_agree(runtime, name):
    """The in-wasm invoke/longjmp/memcpy helper is an optimisation only: same bytes as the Python host."""
    image = runtime.load(image_path(name).read_bytes())
    fast, slow = Instance(runtime, image), Instance(runtime, image, fast_imports=False)
    assert fast.python_imports < slow.python_imports
    for msg, env in _sequence():
        assert fast.handle(msg, env) == slow.handle(msg, env)
        assert fast.memory_sha256() == slow.memory_sha256()


def test_parse_result_shapes():
    ok = parse_result('{"ok":true,"response":{"Output":{"data":"hi"},"Messages":[{"Target":"x"}],"Error":null}}')
    assert ok.ok and ok.output == "hi" and ok.messages == [{"Target": "x"}] and ok.error is None
    failed = parse_result('{"ok":false,"response":"bad json"}')
    assert not failed.ok and failed.error == "bad json"
    assert parse_result("").error and not parse_result("").ok
    assert "invalid JSON" in parse_result("{nope").error
    structured = parse_result('{"ok":true,"response":{"Output":"plain","Error":{"code":1}}}')
    assert structured.output == "plain" and structured.error == '{"code":1}'


def test_message_json_is_javascript_json():
    text = SPEC.message_json(3, "héllo ✓\n\"q\"")
    assert '"Data":"héllo ✓\\n\\"q\\""' in text and ": " not in text and ", " not in text
    assert text.startswith('{"Id":') and '"Tags":[{"name":"Action","value":"Eval"}]' in text
