"""ptrace as root with a compile cache an unprivileged user could write: the planted program never
runs, the script is compiled and run instead, and a damaged entry never hangs the start.

The attacker's writes are made by a child that dropped to nobody (65534) before writing. The
entries it plants are what the cache held before it was sealed (marshal of the key, no
dependencies, the program), named as the lookup names them: exactly what an earlier ptrace took
and ran. So "the marker is absent and the script's own output is there" shows both that the
planted system() was reachable and that it did not run.
"""
from __future__ import annotations

import marshal
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from runner import run

from ptrace_lang import speccache
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.spec import to_plain

NOBODY = 65534
OWN = 'BEGIN { printf("own program\\n"); exit(); }'


def _as_nobody(write) -> None:
    """Run ``write()`` in a child with nobody's uid and gid and no groups."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            write()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the attacker's writes failed"


def _planted_entry(marker) -> tuple[str, bytes]:
    """The entry name ptrace -e OWN looks up, and a program running ``touch marker`` under it."""
    k = speccache.key(OWN, "stdin", [])
    evil = compile_script(f'BEGIN {{ system("touch {marker}"); exit(); }}', "stdin",
                          Options(unsafe=True)).spec
    return speccache._entry_name(k), marshal.dumps((k, (), to_plain(evil)))


@pytest.fixture
def open_dir():
    """A directory others can reach (pytest's tmp_path is under a 0700 directory)."""
    d = Path(tempfile.mkdtemp(prefix="ptrace-cache-trust-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("layout", ["attackers-directory", "roots-directory-world-writable"])
def test_a_planted_system_call_does_not_run(open_dir, layout):
    tmp_path = open_dir
    marker = tmp_path / "marker"
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    specs = shared / "ptrace-lang" / "specs"
    if layout == "roots-directory-world-writable":
        specs.mkdir(parents=True)
        os.chmod(specs.parent, 0o755)
        os.chmod(specs, 0o777)
    name, data = _planted_entry(marker)

    def write():
        os.makedirs(specs, exist_ok=True)
        with open(specs / name, "wb") as f:
            f.write(data)
    _as_nobody(write)
    assert (specs / name).stat().st_uid == NOBODY

    r = run("-v", "-e", OWN, env={"XDG_CACHE_HOME": str(shared), "PTRACE_NO_CACHE": "0"})
    assert r.rc == 0, r.err
    assert not marker.exists(), "the planted system() ran"
    assert r.out.startswith("own program\n"), r.out      # compiled from the script itself
    assert "not used" in r.err, r.err                    # and -v said why


def test_a_fifo_in_place_of_an_entry_does_not_hang(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "PTRACE_NO_CACHE": "0"}
    first = run("-e", OWN, env=env)
    assert first.rc == 0 and first.out.startswith("own program\n"), first.err
    specs = tmp_path / "ptrace-lang" / "specs"
    (entry,) = [p for p in specs.iterdir() if p.name.endswith(".marshal")]
    entry.unlink()
    os.mkfifo(entry, 0o600)
    r = run("-v", "-e", OWN, env=env, timeout=30)
    assert r.rc == 0 and r.out.startswith("own program\n"), r.err
    assert "not a regular file" in r.err, r.err


def test_a_flipped_bit_is_refused_and_the_script_compiled(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "PTRACE_NO_CACHE": "0"}
    assert run("-e", OWN, env=env).rc == 0
    specs = tmp_path / "ptrace-lang" / "specs"
    (entry,) = [p for p in specs.iterdir() if p.name.endswith(".marshal")]
    data = bytearray(entry.read_bytes())
    at = data.rfind(b"own program")     # in the program (the key holds the text too)
    data[at] ^= 0x20                   # "Own program" if it were trusted
    entry.write_bytes(bytes(data))
    r = run("-v", "-e", OWN, env=env)
    assert r.rc == 0 and r.out.startswith("own program\n"), (r.out, r.err)
    assert "not sealed" in r.err, r.err
