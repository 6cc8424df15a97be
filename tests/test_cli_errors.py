"""Issue 10 items 4 and 12: the installed `aonode` console script on a user's mistakes: one line naming
the problem, exit code 2, no traceback; `--version`; defaults in every --help; one node per data dir."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.httpnode import cli_node

pytestmark = pytest.mark.slow  # subprocesses of the console script

AONODE = str(Path(sys.executable).parent / "aonode")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AONODE, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def assert_one_line_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], done.stderr


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0 and done.stdout.startswith("aonode ")


@pytest.mark.parametrize("command", ["serve", "eval", "spawn", "send"])
def test_every_help_shows_defaults(command: str) -> None:
    done = run(*command.split(), "--help")
    assert done.returncode == 0 and "default" in done.stdout
    if command == "serve":
        assert "8734" in done.stdout and "127.0.0.1" in done.stdout and ".aonode" in done.stdout


@pytest.mark.parametrize("args, needle", [
    (["--port", "99999"], "--port"),
    (["--port", "http"], "--port"),
    (["--host", "no.such.host.invalid"], "--host"),
])
def test_bad_host_or_port_is_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    assert_one_line_error(run("serve", "--data-dir", str(tmp_path / "d"), *args), needle)


def test_data_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run("serve", "--data-dir", str(tmp_path / "file")), "is a file")
    assert_one_line_error(run("serve", "--data-dir", str(tmp_path / "file" / "below")), "--data-dir")


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(run("serve", "--data-dir", str(tmp_path / "d"), "--port", str(port)), "in use")


def test_a_second_node_on_the_same_data_dir_exits(tmp_path: Path) -> None:
    """Issue 10 item 4: one node per data dir; the first keeps serving."""
    with cli_node(tmp_path / "shared") as (url, proc):
        done = run("serve", "--data-dir", str(tmp_path / "shared"), "--port", "0")
        assert_one_line_error(done, "in use by another aonode serve")
        assert proc.poll() is None
    with cli_node(tmp_path / "shared") as (_url, again):  # once it stopped, the data dir is free again
        assert again.poll() is None
