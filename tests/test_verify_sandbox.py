"""The code sandbox against hostile programs: each attack is contained, reported, and leaves no trace.

Attacks that only the strong isolation (root: namespaces + throwaway uid) can contain are skipped
under the weak `rlimits` level, with the reason; the report of the stage says which level ran.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from stages.verify.sandbox import STRONG, Limits, isolation, run_python

FAST = Limits(wall_s=2.0, memory_mb=256, file_mb=16, nproc=32)
strong_only = pytest.mark.skipif(isolation()[0] != STRONG, reason="needs root namespaces + uid isolation")


def _processes_with(marker: str) -> list[int]:
    """pids whose command line mentions `marker` (a process the sandbox failed to kill)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker in Path(f"/proc/{entry}/cmdline").read_bytes().decode(
                errors="replace"
            ):
                found.append(int(entry))
        except OSError:
            continue
    return found


def _sandbox_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("longcot-sandbox-*")}


@pytest.fixture
def machine_unchanged():
    """Fail the test if a sandbox temp dir survives it."""
    before = _sandbox_dirs()
    yield
    assert _sandbox_dirs() == before


def test_normal_program_runs(machine_unchanged) -> None:
    result = run_python("print(int(input()) * 2)", "21\n", FAST)
    assert (result.status, result.stdout) == ("ok", "42\n")


def test_infinite_loop_is_killed_at_the_wall_clock(machine_unchanged) -> None:
    result = run_python("while True:\n    pass", "", FAST)
    assert result.status in ("timeout", "cpu_limit")
    assert result.wall_s < FAST.wall_s + 1.5


def test_sleeping_children_in_a_new_session_are_killed(machine_unchanged) -> None:
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}.5"
    code = f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\nprint('spawned')"
    result = run_python(code, "", FAST)
    assert result.stdout == "spawned\n"
    assert result.leftover_processes == 0
    assert _processes_with(marker) == []


@strong_only
def test_fork_bomb_is_capped_and_cleaned_up(machine_unchanged) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = run_python(code, "", FAST)
    assert result.status in ("timeout", "cpu_limit")
    assert result.leftover_processes == 0


def test_memory_bomb_hits_the_address_space_limit(machine_unchanged) -> None:
    result = run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))", "", FAST)
    assert result.status == "memory"
    assert "MemoryError" in result.stderr


def test_one_gigabyte_write_is_stopped_by_the_file_size_limit(machine_unchanged) -> None:
    code = "with open('big.bin', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'0' * (1 << 20))"
    result = run_python(code, "", FAST)
    assert result.status == "file_limit"


def test_huge_output_is_capped(machine_unchanged) -> None:
    result = run_python(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
        "",
        Limits(wall_s=2, output_bytes=1 << 20, file_mb=8),
    )
    assert result.status in ("output_limit", "file_limit")
    assert len(result.stdout) <= 1 << 20


def test_parent_environment_is_not_visible(machine_unchanged, monkeypatch) -> None:
    monkeypatch.setenv("LONGCOT_FAKE_SECRET", "hunter2")
    result = run_python(
        "import os\nprint(sorted(os.environ))\nprint(os.environ.get('LONGCOT_FAKE_SECRET'))", "", FAST
    )
    assert "hunter2" not in result.stdout
    assert "LONGCOT_FAKE_SECRET" not in result.stdout


@strong_only
def test_writing_outside_the_temp_dir_is_contained(machine_unchanged, tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    home = Path("/root/escaped-longcot.txt")
    code = (
        "import os\n"
        f"for path in [{str(target)!r}, {str(home)!r}, '/etc/escaped-longcot', '/tmp/escaped-longcot']:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('denied', path, type(exc).__name__)\n"
    )
    result = run_python(code, "", FAST)
    assert result.status == "ok"
    assert not target.exists() and not home.exists() and not Path("/etc/escaped-longcot").exists()
    assert not Path("/tmp/escaped-longcot").exists()  # only its private /tmp saw it


@strong_only
def test_network_socket_cannot_reach_anything(machine_unchanged) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'leak')"
        result = run_python(code, "", FAST)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert result.status == "error"
    assert "unreachable" in result.stderr.lower() or "refused" in result.stderr.lower()


def test_spawned_shell_inherits_the_sandbox(machine_unchanged, monkeypatch) -> None:
    monkeypatch.setenv("LONGCOT_FAKE_SECRET", "hunter2")
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}.25"
    code = (
        "import subprocess\n"
        f"print(subprocess.run(['sh', '-c', 'echo secret=$LONGCOT_FAKE_SECRET; id -u; (sleep {marker} >/dev/null 2>&1 &)'],"
        " capture_output=True, text=True).stdout)"
    )
    result = run_python(code, "", FAST)
    assert "secret=\n" in result.stdout  # the shell got the minimal environment too
    if isolation()[0] == STRONG:
        assert result.stdout.split("\n")[1] != "0"  # not root
    assert _processes_with(marker) == []
