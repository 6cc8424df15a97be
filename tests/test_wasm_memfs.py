"""The emscripten MemFS on its own: emscripten's errno and clock behaviour, and exact state round trips."""
from __future__ import annotations

import itertools

import pytest

from aonode.engine.wasm import memfs_state
from aonode.engine.wasm.memfs import (
    EACCES, EBADF, EEXIST, EINVAL, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY, ESPIPE, O_APPEND, O_CREAT, O_EXCL,
    O_RDWR, O_TRUNC, O_WRONLY, FSError,
)
from aonode.engine.wasm.memfs_io import SEEK_CUR, SEEK_END, SEEK_SET, MemFS


@pytest.fixture()
def fs() -> MemFS:
    counter = itertools.count(10000)
    fs = MemFS(lambda: next(counter))
    fs.start()
    return fs


def errno(fn) -> int:
    with pytest.raises(FSError) as info:
        fn()
    return info.value.errno


def test_start_up_is_emscripten_s(fs):
    """Std streams on 0-2 (TTYs), /data made last with the 4th clock tick, inode numbers as in JS."""
    assert [fs.streams[fd].path for fd in range(3)] == ["/dev/tty", "/dev/tty", "/dev/tty1"]
    assert all(fs.streams[fd].tty for fd in range(3))
    data = fs.node_at("/data")
    assert data.timestamp == 10003 and data.id == 20
    assert fs.readdir(fs.root) == [".", "..", "tmp", "home", "dev", "proc", "data"]
    assert fs.clock() == 10004


def test_write_seek_read_and_the_clock(fs):
    f = fs.open("/tmp/a", O_CREAT | O_RDWR, 0o644)
    assert f.fd == 3 and fs.node_at("/tmp/a").timestamp == 10004
    assert fs.write(f, b"hello world") == 11 and f.node.timestamp == 10005
    assert fs.write(f, b"") == 0 and fs.clock() == 10006  # an empty write does not tick
    assert fs.llseek(f, 6, SEEK_SET) == 6 and fs.read(f, 100) == b"world"
    assert fs.llseek(f, -5, SEEK_END) == 6 and fs.llseek(f, 2, SEEK_CUR) == 8
    assert fs.write(f, b"!", position=20) == 1 and f.node.size == 21 and f.node.data[11:20] == bytes(9)
    assert errno(lambda: fs.llseek(f, -100, SEEK_CUR)) == EINVAL
    assert errno(lambda: fs.llseek(fs.streams[1], 0, SEEK_SET)) == ESPIPE


def test_open_flags(fs):
    assert errno(lambda: fs.open("/tmp/none", 0)) == ENOENT
    fs.close(fs.open("/tmp/b", O_CREAT | O_WRONLY, 0o600))
    assert errno(lambda: fs.open("/tmp/b", O_CREAT | O_EXCL | O_WRONLY)) == EEXIST
    assert errno(lambda: fs.open("/tmp", O_WRONLY)) == EISDIR
    # emscripten's mayCreate swallows the ENOTDIR of the lookup and reports the file's missing x bit
    assert errno(lambda: fs.open("/tmp/b/c", O_CREAT | O_WRONLY)) == EACCES
    assert errno(lambda: fs.open("/tmp/b/c", 0)) == ENOENT  # FS.open swallows lookup errors too
    assert errno(lambda: fs.lookup("/tmp/b/c")) == ENOTDIR
    w = fs.open("/tmp/b", O_WRONLY | O_APPEND)
    fs.write(w, b"12")
    fs.write(w, b"34")
    assert bytes(w.node.data) == b"1234"
    assert errno(lambda: fs.read(w, 1)) == EBADF
    fs.open("/tmp/b", O_WRONLY | O_TRUNC)
    assert w.node.size == 0
    fs.chmod(w.node, 0o400)
    assert errno(lambda: fs.open("/tmp/b", O_WRONLY)) == EACCES


def test_rename_unlink_rmdir(fs):
    fs.mkdir("/tmp/d")
    fs.close(fs.open("/tmp/d/f", O_CREAT | O_WRONLY))
    assert errno(lambda: fs.rmdir("/tmp/d")) == ENOTEMPTY
    assert errno(lambda: fs.unlink("/tmp/d")) == EISDIR
    assert errno(lambda: fs.rename("/tmp/d", "/tmp/d/inside")) == EINVAL
    fs.rename("/tmp/d/f", "/tmp/g")
    assert fs.readdir(fs.node_at("/tmp")) == [".", "..", "d", "g"]
    fs.rmdir("/tmp/d")
    fs.unlink("/tmp/g")
    assert fs.readdir(fs.node_at("/tmp")) == [".", ".."]
    assert errno(lambda: fs.unlink("/tmp/g")) == ENOENT


def test_readdir_orders_names_as_javascript_objects(fs):
    for name in ("b", "10", "a", "2"):
        fs.mkdir("/tmp/" + name)
    assert fs.readdir(fs.node_at("/tmp")) == [".", "..", "2", "10", "b", "a"]


def test_state_round_trip_keeps_everything(fs):
    """Unlinked-but-open files, dup'ed descriptors sharing a position, inode counter, random stream."""
    f = fs.open("/tmp/t", O_CREAT | O_RDWR)
    fs.write(f, b"payload")
    fs.unlink("/tmp/t")
    twin = fs.dup(f)
    fs.symlink("/tmp", "/home/link")
    fs.urandom(5)
    saved = memfs_state.to_dict(fs)
    again = memfs_state.from_dict(saved, fs.clock)
    assert memfs_state.to_dict(again) == saved
    g, g_twin = again.streams[f.fd], again.streams[twin.fd]
    assert g.shared is g_twin.shared and g.shared.position == 7
    assert again.read(g, 10, position=0) == b"payload"
    assert again.node_at("/home/link") is again.node_at("/tmp")
    assert again.urandom(8) == fs.urandom(8)
    assert again.open("/tmp/new", O_CREAT | O_WRONLY).node.id == fs.open("/tmp/new", O_CREAT | O_WRONLY).node.id


def test_an_import_outside_the_list_is_a_load_error_naming_it(tmp_path) -> None:
    import wasmtime

    from aonode.engine.errors import ModuleError
    from aonode.engine.wasm import Instance, Runtime

    wasm = wasmtime.wat2wasm('(module (import "env" "__syscall_openat" (func (param i32 i32 i32 i32) (result i32)))'
                             ' (import "env" "__syscall_no_such_call" (func)) (memory (export "memory") 1))')
    runtime = Runtime(tmp_path)
    with pytest.raises(ModuleError, match=r"env\.__syscall_no_such_call$"):
        Instance(runtime, runtime.load(bytes(wasm)))
