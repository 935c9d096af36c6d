#!/usr/bin/env python3
"""The Python API: count syscalls by process for a while, print the top ones and the
printf events. Run as root:  python3 examples/api_top_syscalls.py [seconds]"""
import sys
import time

from ptrace_lang import PtraceError, trace

SCRIPT = """
tracepoint:raw_syscalls:sys_enter { @calls[comm] = count(); }
tracepoint:syscalls:sys_enter_execve { printf("exec by %s\\n", comm); }
"""


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    try:
        with trace(SCRIPT) as t:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for event in t.events(timeout=max(0.0, deadline - time.monotonic())):
                    print("event:", event.value, end="")
    except PtraceError as e:
        print(e.render(), file=sys.stderr)
        return 1
    calls = t.maps["@calls"] or {}
    for comm, n in sorted(calls.items(), key=lambda kv: kv[1], reverse=True)[:5]:
        print(f"{comm:16s} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
