"""Counts this process's glibc malloc arenas after eight threads allocate (tests/test_runner.py)."""

from __future__ import annotations

import ctypes
import sys
import tempfile
import threading
from pathlib import Path


def arenas_after_threads(_: object = None) -> int:
    def allocate() -> None:
        blocks = [bytearray(4096) for _ in range(500)]  # above pymalloc's 512 bytes: glibc malloc
        barrier.wait()  # all eight alive at once, so none inherits another's arena
        del blocks

    barrier = threading.Barrier(8)
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "malloc.xml"
        handle = libc.fopen(str(path).encode(), b"w")
        libc.malloc_info(0, handle)
        libc.fclose(handle)
        return path.read_text().count("<heap nr=")


if __name__ == "__main__":
    print(arenas_after_threads())
    sys.exit(0)
