"""The REPL driven through a real terminal (a pty): probes attached entry by entry, events
triggered, maps read, a probe detached, errors shown without ending the session, quit and
Ctrl-D, every kernel object released."""
from __future__ import annotations

import fcntl
import os
import re
import stat
import struct
import subprocess
import sys
import termios
import threading
import time

from runner import ROOT, named_workload, ptrace_cmd

# escape sequences (CSI, OSC, charset and keypad modes) and carriage returns
_ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
                   r"|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r")
COMM = "replwork"


class Terminal:
    """A program on the slave side of a pty; ``expect`` searches its screen output with the
    escape sequences taken out, from where the last match ended."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.p = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                  cwd=ROOT, start_new_session=True)
        os.close(slave)
        self.fd = master
        self._raw = bytearray()
        self._lock = threading.Lock()
        self.pos = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except OSError:          # EIO: the slave side is closed
                break
            if not data:
                break
            with self._lock:
                self._raw += data

    @property
    def text(self) -> str:
        with self._lock:
            raw = bytes(self._raw)
        return _ANSI.sub("", raw.decode("utf-8", "replace"))

    def expect(self, pattern: str, timeout: float = 10) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text
            m = rx.search(text, self.pos)
            if m:
                self.pos = m.end()
                return m
            if time.monotonic() > deadline or not self._reader.is_alive():
                raise AssertionError(f"no {pattern!r} in the terminal; after the last match:\n"
                                     f"{text[self.pos:]}")
            time.sleep(0.02)

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def wait(self, timeout: float = 15) -> int:
        try:
            return self.p.wait(timeout)
        finally:
            self._reader.join(2)

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        os.close(self.fd)


def _start(tmp_path, *args: str) -> Terminal:
    env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1",
           "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    return Terminal(ptrace_cmd(*args), env)


def _getppid(n: int) -> None:
    subprocess.run(named_workload(COMM, f"import os\nfor _ in range({n}): os.getppid()"), check=True)


def _bpf_ids(pid: int) -> tuple[set[int], set[int]]:
    """Ids of the BPF programs and maps the process holds, from its fds' fdinfo."""
    progs, maps = set(), set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = f.read()
        except OSError:
            continue
        for key, into in (("prog_id", progs), ("map_id", maps)):
            m = re.search(rf"^{key}:\s*(\d+)", info, re.M)
            if m:
                into.add(int(m.group(1)))
    return progs, maps


def _prog_name(ident: int) -> str | None:
    from ptrace_lang.kernel import progs, sys as ksys

    attr = ksys.GetIdAttr()
    attr.start_id = ident
    try:
        fd = ksys.bpf(ksys.BPF_PROG_GET_FD_BY_ID, attr)
    except OSError:
        return None
    try:
        return progs.prog_info(fd).get("name", "")
    finally:
        os.close(fd)


def _alive(cmd: int, ident: int) -> bool:
    from ptrace_lang.kernel import sys as ksys

    attr = ksys.GetIdAttr()
    attr.start_id = ident
    try:
        os.close(ksys.bpf(cmd, attr))
    except OSError:
        return False
    return True


def _assert_released(progs: set[int], maps: set[int]) -> None:
    from ptrace_lang.kernel import sys as ksys

    assert progs and maps
    # the programs are found by id (named p<probe>_<group>_<provider>, as every run's are:
    # a name alone could be another test's run going on at the same time)
    deadline = time.monotonic() + 5
    while True:
        left = ({i for i in progs if _alive(ksys.BPF_PROG_GET_FD_BY_ID, i)},
                {i for i in maps if _alive(ksys.BPF_MAP_GET_FD_BY_ID, i)})
        if not any(left) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == (set(), set()), f"still loaded after quit: programs {left[0]}, maps {left[1]}"


def test_repl_session(tmp_path):
    t = _start(tmp_path, "--repl")
    try:
        t.expect(r"ptrace>")
        # a block over several lines: Enter inside the open { continues it
        t.send(f'tracepoint:syscalls:sys_enter_getppid /comm == "{COMM}"/ {{\r@x = count();\r}}\r')
        t.expect(r"\.\.\.>")
        t.expect(r"Attached 1 probe \(#0\)")
        progs, maps = _bpf_ids(t.p.pid)
        names = {_prog_name(i) for i in progs}
        assert "p0_0_tracepoint" in names
        assert all(re.fullmatch(r"p\d+_\d+_.*", n) for n in names), names
        _getppid(7)
        t.send("print @x\r")
        t.expect(r"@x: 7\n")
        # a second entry joins the session and uses the first one's map
        t.send(f'tracepoint:syscalls:sys_enter_getppid /comm == "{COMM}"/ '
               f'{{ @a[comm] = count(); printf("getppid by %s\\n", comm); }}\r')
        t.expect(r"Attached 1 probe \(#1\)")
        more = _bpf_ids(t.p.pid)
        progs |= more[0]
        maps |= more[1]
        _getppid(3)
        t.expect(r"getppid by replwork\n")
        t.send("watch @x 0.2\r")
        t.expect(r"Every 0.2s: @x .*\n@x: 10\n")
        t.send("q")                     # any key ends the view
        t.send("probes\r")
        t.expect(r"#0\s+attached\s+tracepoint:syscalls:sys_enter_getppid\n"
                 r"#1\s+attached\s+tracepoint:syscalls:sys_enter_getppid\n")
        t.send("detach 0\r")
        t.expect(r"Detached probe #0")
        _getppid(5)                     # #1 still prints, @x no longer counts
        t.expect(r"getppid by replwork\n")
        t.send("print @x\r")
        t.expect(r"@x: 10\n")
        t.send("quit\r")
        assert t.wait() == 0
        t.expect(r"\n\n@a\[replwork\]: 8\n@x: 10\n")
    finally:
        t.close()
    _assert_released(progs, maps)
    hist = tmp_path / "state" / "ptrace-lang" / "history"
    assert stat.S_IMODE(hist.stat().st_mode) == 0o600
    assert "print @x" in hist.read_text()


def test_repl_errors_do_not_end_the_session(tmp_path):
    t = _start(tmp_path)                # no program on a terminal: the REPL
    try:
        t.expect(r"ptrace>")
        t.send("tracepoint:syscalls:sys_enter_getppid { $x = ; }\r")
        t.expect(r"stdin:1:46-47: ERROR: syntax error, unexpected ;\n"
                 r"tracepoint:syscalls:sys_enter_getppid \{ \$x = ; \}\n"
                 r" {45}~\n")
        t.send("BEGIN { @n = 1; }\r")
        t.expect(r"Attached 1 probe \(#0\)")
        t.send('BEGIN { @n = "text"; }\r')     # the type of a map already loaded
        t.expect(r"stdin:1:9-20: ERROR: Type mismatch for @n")
        # a probe printing a map keeps printing that map when a map sorted before it comes
        t.send("interval:ms:200 { print(@n); }\r")
        t.expect(r"Attached 1 probe \(#1\)")
        t.expect(r"@n: 1\n")
        t.send("BEGIN { @a = 5; }\r")
        t.expect(r"Attached 1 probe \(#2\)")
        assert t.expect(r"@\w+: \d\n").group() == "@n: 1\n"
        t.send("detach 1\r")
        t.expect(r"Detached probe #1")
        t.send("detach 7\r")
        t.expect(r"ERROR: no probe #7")
        t.send("tracepoint:syscalls:sys_enter_getppid {\r  @c = \x03")   # Ctrl-C: line cancelled
        t.send('BEGIN { printf("still here %d\\n", @n); }\r')
        t.expect(r"still here 1\n")
        t.send('END { printf("bye\\n"); }\r')
        t.expect(r"Attached 1 probe \(#4\)")
        t.send("\x04")                  # Ctrl-D: END runs, maps print
        assert t.wait() == 0
        t.expect(r"bye\n\n\n@a: 5\n@n: 1\n")
        assert "Traceback" not in t.text
    finally:
        t.close()


def test_no_program_without_a_terminal():
    p = subprocess.run(ptrace_cmd(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       cwd=ROOT, timeout=30)
    # no arguments at all: the usage text, as bpftrace; options but no program: its words
    assert p.returncode == 1 and p.stderr.startswith("USAGE:"), p.stderr
    p = subprocess.run(ptrace_cmd("-q"), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       cwd=ROOT, timeout=30)
    assert (p.returncode, p.stderr) == (1, "ERROR: USAGE: filename or -e 'program' required.\n")


def test_repl_flame_writes_a_flame_graph_of_a_live_map(tmp_path):
    # flame @map FILE: the same picture as -f flamegraph, from the running session
    t = _start(tmp_path, "--repl")
    svg, folded = tmp_path / "live.svg", tmp_path / "live.folded"
    try:
        t.expect(r"ptrace>")
        t.send(f'tracepoint:syscalls:sys_enter_getppid /comm == "{COMM}"/ '
               '{ @s[ustack, comm] = count(); @n = count(); }\r')
        t.expect(r"Attached 1 probe \(#0\)")
        _getppid(6)
        t.send(f"flame @s {svg}\r")
        t.expect(r"wrote .*live\.svg \(\d+ stacks\)")
        t.send(f"flame @s {folded}\r")
        t.expect(r"wrote .*live\.folded \(\d+ stacks\)")
        t.send(f"flame @n {svg}.2\r")                  # not keyed by stacks: a clear refusal
        t.expect(r"ERROR: @n is not a count\(\)/sum\(\) map keyed by kstack or ustack")
        t.send("quit\r")
        assert t.wait() == 0
    finally:
        t.close()
    import xml.etree.ElementTree as ET

    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    lines = folded.read_text().splitlines()
    assert lines and sum(int(x.rsplit(" ", 1)[1]) for x in lines) == 6
    assert all(x.startswith(COMM + ";") for x in lines), lines
