"""Run an untrusted Python program with limits, and leave the machine as it was afterwards.

Every run gets: a fresh temp dir as cwd (deleted after), its own session/process group, CPU-time,
address-space, file-size and process-count limits, a wall-clock timeout that kills the whole group,
stdout/stderr to files capped by the file-size limit, and a minimal environment (no parent secrets).

When running as root (containers, CI), it also gets the strongest isolation this module can build
without extra tools, reported as `netns+mountns+uid`:
- its own network namespace: no interface but a downed loopback, so no network at all;
- its own mount namespace with private tmpfs over the world-writable dirs (/tmp, /var/tmp, /dev/shm,
  /run/lock), so the only persistent place it can write is its temp dir;
- a throwaway uid (1_000_000 + its pid), so file permissions protect everything else, RLIMIT_NPROC
  actually applies (root ignores it), and every process it spawned, even one that escaped the
  process group with setsid, can be found and killed by uid.
Otherwise the level is `rlimits` (limits, process group, temp dir and clean env only) and callers
should say so in their report.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STRONG = "netns+mountns+uid"
WEAK = "rlimits"

_CLONE_NEWNS, _CLONE_NEWNET = 0x00020000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 0x1000, 0x4000, 1 << 18
_PR_SET_CHILD_SUBREAPER = 36
_UID_BASE = 1_000_000
_MASKED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
SANDBOX_CWD = "/tmp/work"  # where the temp dir appears inside the mount namespace
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (the defaults suit competitive-programming tests)."""

    wall_s: float = 6.0
    memory_mb: int = 2048
    file_mb: int = 64
    nproc: int = 64
    output_bytes: int = 4 << 20


@dataclass(frozen=True)
class RunResult:
    """What happened: `status` is ok | error | timeout | memory | file_limit | cpu_limit | output_limit."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str  # the tail, for evidence
    wall_s: float
    isolation: str
    leftover_processes: int = 0  # processes of the sandbox uid still alive after cleanup (want 0)


def _set_limits(limits: Limits) -> None:
    cpu = int(limits.wall_s) + 1
    memory, fsize = limits.memory_mb << 20, limits.file_mb << 20
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise OSError(ctypes.get_errno(), f"{what} failed")


def _enter_namespaces(workdir: str) -> None:
    """In the child: new net + mount namespace, private tmpfs over world-writable dirs."""
    _check(_LIBC.unshare(_CLONE_NEWNET | _CLONE_NEWNS), "unshare")
    _check(_LIBC.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
    cwd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)  # opened in the new namespace, before masking
    for path in _MASKED_DIRS:
        if os.path.isdir(path):
            opts = b"size=16m,mode=1777"
            _check(_LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts), path)
    # The temp dir may live under a masked dir: bind it (through the open handle) to /tmp/work.
    os.mkdir(SANDBOX_CWD)
    _check(_LIBC.mount(f"/proc/self/fd/{cwd}".encode(), SANDBOX_CWD.encode(), None, _MS_BIND, None), "bind")
    os.close(cwd)
    os.chdir(SANDBOX_CWD)


def _preexec(limits: Limits, workdir: str, uid: int | None):
    def run() -> None:
        _set_limits(limits)
        if uid is not None:
            _enter_namespaces(workdir)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    return run


def _uid_processes(uid: int) -> list[tuple[int, int]]:
    """(pid, ppid) of every process whose real uid is `uid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            found.append((int(entry), int(fields["PPid"].strip())))
    return found


def _kill_uid(uid: int, budget_s: float = 5.0) -> int:
    """SIGKILL every process of `uid` (from a helper running as that uid: kill(-1) reaches exactly
    them), reap the ones re-parented to us, and return how many are left (0 unless the kernel is slow)."""
    end = time.monotonic() + budget_s
    while True:
        procs = _uid_processes(uid)
        if not procs or time.monotonic() > end:
            return len(procs)
        helper = os.fork()
        if helper == 0:
            try:
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(helper, 0)
        for pid, ppid in procs:
            if ppid == os.getpid():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        time.sleep(0.01)


def _launch(
    python: str, workdir: str, stdin, stdout, stderr, limits: Limits, uid: int | None
) -> subprocess.Popen:
    home = workdir if uid is None else SANDBOX_CWD
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"}
    return subprocess.Popen(
        [python, "-I", "-B", "prog.py"],
        cwd=workdir,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
        start_new_session=True,
        preexec_fn=_preexec(limits, workdir, uid),
        close_fds=True,
    )


@functools.cache
def isolation() -> tuple[str, str]:
    """(level, interpreter) available here, found once per process by trying a real sandboxed run.

    As root the interpreter must be one the throwaway uid can execute (e.g. not one under /root).
    """
    if os.geteuid() == 0:
        _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of a sandbox come back to us to reap
        for python in dict.fromkeys([sys.executable, "/usr/bin/python3", shutil.which("python3") or ""]):
            try:
                if python and _execute(python, STRONG, "print('ok')", "", Limits(wall_s=10)).stdout == "ok\n":
                    return STRONG, python
            except (OSError, subprocess.SubprocessError):  # no namespaces here, or not executable as the uid
                continue
    return WEAK, sys.executable


def _status(returncode: int, stderr: str, stdout_size: int, limits: Limits) -> str:
    if returncode == -signal.SIGXFSZ:
        return "file_limit"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "cpu_limit"
    if stdout_size > limits.output_bytes:
        return "output_limit"
    if returncode != 0 and "MemoryError" in stderr:
        return "memory"
    if returncode != 0 and "File too large" in stderr:  # Python ignores SIGXFSZ and raises instead
        return "file_limit"
    if returncode != 0:
        return "error"
    return "ok"


def _execute(python: str, level: str, source: str, stdin: str, limits: Limits) -> RunResult:
    workdir = tempfile.mkdtemp(prefix="longcot-sandbox-")
    iodir = tempfile.mkdtemp(prefix="longcot-sandbox-io-")  # private: the child only gets its fds
    try:
        Path(workdir, "prog.py").write_text(source)
        Path(iodir, "stdin").write_text(stdin)
        uid = None
        started = time.monotonic()
        with (
            open(Path(iodir, "stdin"), "rb") as fin,
            open(Path(iodir, "stdout"), "wb") as fout,
            open(Path(iodir, "stderr"), "wb") as ferr,
        ):
            if level == STRONG:
                # a process runs one sandbox at a time, so its pid makes the uid unique among sandboxes
                uid = _UID_BASE + os.getpid()
                os.chown(workdir, uid, uid)
                os.chown(Path(workdir, "prog.py"), uid, uid)
            proc = _launch(python, workdir, fin, fout, ferr, limits, uid)
            try:
                returncode = proc.wait(timeout=limits.wall_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # also stray children still in the group
            returncode = proc.wait()
            leftover = _kill_uid(uid) if uid is not None else 0
        wall = time.monotonic() - started
        with open(Path(iodir, "stdout"), "rb") as f:
            out = f.read(limits.output_bytes + 1)
        err = Path(iodir, "stderr").read_bytes()[-2000:].decode("utf-8", "replace")
        status = "timeout" if timed_out else _status(returncode, err, len(out), limits)
        text = out[: limits.output_bytes].decode("utf-8", "replace")
        return RunResult(status, returncode, text, err, round(wall, 4), level, leftover)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(iodir, ignore_errors=True)


def run_python(source: str, stdin: str = "", limits: Limits | None = None) -> RunResult:
    """Run `source` as a Python program in the sandbox, feeding it `stdin`."""
    level, python = isolation()
    return _execute(python, level, source, stdin, limits or Limits())
