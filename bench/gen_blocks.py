#!/usr/bin/env python3
"""Write a script of N tracepoint blocks, for measuring how compile time grows.

Each block: a predicate, a keyed count, a hist and a printf, on its own
syscall tracepoint (the sys_enter_* tracepoints with a `count` or `fd`
argument are cycled through; past their number they repeat, which is
still one program per block).

    python3 bench/gen_blocks.py 1000 > /tmp/blocks.bt
    ptrace --dry-run /tmp/blocks.bt
"""

from __future__ import annotations

import sys

# sys_enter_* tracepoints whose args have an `fd` field (x86_64)
TRACEPOINTS = [
    "read", "write", "close", "newfstat", "lseek", "pread64", "pwrite64", "readv",
    "writev", "fsync", "fdatasync", "ftruncate", "fchdir", "fchmod", "fchown",
    "flock", "getdents64", "fcntl", "ioctl", "fstatfs", "syncfs", "fadvise64",
    "fallocate",
]


def block(i: int) -> str:
    tp = TRACEPOINTS[i % len(TRACEPOINTS)]
    return (f"tracepoint:syscalls:sys_enter_{tp} /pid != {i}/ {{\n"
            f"  @c{i}[comm] = count();\n"
            f"  @h{i} = hist(args->fd);\n"
            f'  printf("{tp} %d %s\\n", pid, comm);\n'
            f"}}\n")


def script(n: int) -> str:
    return "".join(block(i) for i in range(n))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else 100
    sys.stdout.write(script(n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
