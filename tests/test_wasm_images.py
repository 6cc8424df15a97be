"""Every image in ../shared/modules loads and does its job under our host."""
from __future__ import annotations

import struct

import pytest

from aonode.engine.aos import ProcessSpec, parse_result
from aonode.engine.errors import ModuleError
from aonode.engine.wasm import Instance, Runtime
from tests.helpers.images import image_path

pytestmark = pytest.mark.slow  # compiles eight images

SPEC = ProcessSpec(pid="PROCESS" + "p" * 36, owner="OWNER" + "o" * 38, module_id="M" * 43)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Runtime:
    return Runtime(tmp_path_factory.mktemp("wasm-cache"))


def load(runtime: Runtime, name: str, **kwargs) -> Instance:
    return Instance(runtime, runtime.load(image_path(name).read_bytes()), **kwargs)


def spawn_and_eval(inst: Instance, code: str):
    first = parse_result(inst.handle(SPEC.spawn_json(), SPEC.env()))
    return first, parse_result(inst.handle(SPEC.message_json(1, code), SPEC.env()))


@pytest.mark.parametrize("name,memory64", [("aos2_0_4_32.wasm", False), ("aos-2-pure-xs.wasm", True)])
def test_full_aos_builds_eval(runtime, name, memory64):
    inst = load(runtime, name)
    assert inst.image.memory64 is memory64
    first, out = spawn_and_eval(inst, "return 6*7")
    assert first.ok and out.ok and out.error is None and out.output == "42"


def test_legacy_exception_image_is_translated(runtime):
    image = runtime.load(image_path("aos-2-pure-xs.wasm").read_bytes())
    assert image.translated and "free" not in image.export_names


def test_image_without_free_reuses_one_input_buffer(runtime):
    """aos-2-pure-xs has no `free` and an unknown stack size: large inputs go to one scratch buffer."""
    inst = load(runtime, "aos-2-pure-xs.wasm")
    spawn_and_eval(inst, "return 1")
    seen = set()
    for n in range(3):
        big = "return #'" + "x" * (40_000 + n) + "'"
        out = parse_result(inst.handle(SPEC.message_json(2 + n, big), SPEC.env()))
        assert out.output == str(40_000 + n)
        seen.add((inst.host.state.scratch_ptr, inst.memory_size))
    (scratch, _), = seen  # one buffer, and memory did not grow after the first
    assert scratch and inst.snapshot().host_state["scratch_ptr"] == scratch


@pytest.mark.parametrize("name", ["process.wasm", "test-aos.wasm", "test-wasi-aos.wasm",
                                  "test-standalone-ex-aos.wasm"])
def test_ping_pong_images_answer(runtime, name):
    inst = load(runtime, name)
    first, out = spawn_and_eval(inst, "ping")
    raw = out.raw_output if isinstance(out.raw_output, str) else out.output
    assert out.ok and "pong" in str(raw)


def test_cxx_exceptions_are_thrown_and_caught(runtime):
    inst = load(runtime, "test-ex.wasm")
    assert inst.run_start() == 0
    assert inst.stdout == b"enter main\nenter try\ncatching runtime_error\nexit main\n"


def test_tiny_modules(runtime):
    assert load(runtime, "test-64.wasm").call("fac", 5.0) == 120.0
    pow_calc = load(runtime, "pow_calculator.wasm", extra_imports={"my_lib": {"mul": lambda a, b: a * b}})
    assert pow_calc.call("pow", 2, 5) == 32
    printer = load(runtime, "test-print.wasm")
    printer.call("hello")
    assert printer.stdout.startswith(b"Hello, World!\n")


def test_calling_passes_strings(runtime):
    inst = load(runtime, "test-calling.wasm")
    a = inst.call("malloc", 16)
    inst.host.write(a, b"hello\0\0\0world\0")
    inst.call("print_args", a, a + 8)
    assert inst.stdout == b"ARGS: 'world' 'hello'\n"  # the module prints its second argument first


def test_missing_imports_fail_at_load_with_their_names(runtime):
    with pytest.raises(ModuleError, match="my_lib.mul"):
        load(runtime, "pow_calculator.wasm")


def test_compiled_artifact_is_reused_from_disk(tmp_path):
    wasm = image_path("test-64.wasm").read_bytes()
    first = Runtime(tmp_path).load(wasm)
    artifacts = list(tmp_path.glob("*.cwasm"))
    assert len(artifacts) == 1
    again = Runtime(tmp_path)
    second = again.load(wasm)
    assert second.sha256 == first.sha256 and list(tmp_path.glob("*.cwasm")) == artifacts
    assert Instance(again, second).call("fac", 3.0) == 6.0


def test_stack_pointer_returns_to_base_between_messages(runtime):
    inst = load(runtime, "aos2_0_6.wasm")
    spawn_and_eval(inst, "return 1")
    sp = inst.exports["emscripten_stack_get_current"](inst.store)
    assert sp == inst.exports["emscripten_stack_get_base"](inst.store)
    assert struct.unpack("<I", bytes(inst.memory_view()[0:4]))[0] == 1668509029  # ao-loader's cookie


def test_weavedrive_reads_local_data_and_halts_on_missing(runtime, tmp_path):
    from aonode.engine.errors import DataUnavailable

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "TX-abc").write_bytes(b"hello from arweave")
    inst = load(runtime, "aos2_0_6.wasm", weavedrive_dir=tmp_path)
    first, out = spawn_and_eval(inst, "F = io.open('/data/TX-abc') return F:read(5) .. '|' .. F:read(13)")
    assert out.error is None and out.output == "hello| from arweave"
    before = inst.memory_sha256()
    with pytest.raises(DataUnavailable, match="no data item 'missing'"):
        inst.handle(SPEC.message_json(2, "return io.open('/data/missing')"), SPEC.env())
    assert inst.memory_sha256() == before
    assert parse_result(inst.handle(SPEC.message_json(3, "return 'still ok'"), SPEC.env())).output == "still ok"
