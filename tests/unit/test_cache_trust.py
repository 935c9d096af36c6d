"""The caches are no way into root: a cache directory or file someone else could have written is
not used, every entry is sealed with the user's secret, what is loaded never allows more than the
command line, and a damaged entry (a FIFO, a symlink, a flipped bit) is a miss, never a hang."""
from __future__ import annotations

import marshal
import os
import subprocess
import sys

import pytest

from ptrace_lang import cachefs, speccache
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.spec import to_plain

SAFE = 'BEGIN { printf("x %d\\n", 7); exit(); }'
NOBODY = 65534


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PTRACE_NO_CACHE", raising=False)
    cachefs.reset()
    yield tmp_path / "ptrace-lang" / "specs"
    cachefs.reset()


def spec_of(text=SAFE, unsafe=False):
    return compile_script(text, "stdin", Options(unsafe=unsafe)).spec


def stored(cache_home, text=SAFE):
    k = speccache.key(text, "stdin", [])
    speccache.store(k, spec_of(text), [])
    (entry,) = [p for p in cache_home.iterdir()]
    assert speccache.lookup(k) is not None
    return k, entry


# ------------------------------------------------------------------------- whose files

@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_cache_directory_of_another_user_is_not_used(cache_home):
    k, entry = stored(cache_home)
    os.chown(cache_home, NOBODY, NOBODY)
    cachefs.reset()
    assert speccache.lookup(k) is None
    assert any("owned by uid 65534" in n for n in cachefs.take_notes())
    # nor written to
    speccache.store(speccache.key(SAFE, "a.bt", []), spec_of(), [])
    assert len(list(cache_home.iterdir())) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_an_entry_of_another_user_is_refused(cache_home):
    k, entry = stored(cache_home)
    os.chown(entry, NOBODY, NOBODY)
    assert speccache.lookup(k) is None


def test_a_directory_writable_by_others_is_not_used(cache_home):
    k, entry = stored(cache_home)
    os.chmod(cache_home, 0o777)
    cachefs.reset()
    assert speccache.lookup(k) is None
    assert any("writable by group or others" in n for n in cachefs.take_notes())
    os.chmod(cache_home, 0o700)
    os.chmod(entry, 0o666)
    cachefs.reset()
    assert speccache.lookup(k) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_foreign_file_in_the_directory_stops_writes(cache_home):
    k, entry = stored(cache_home)
    planted = cache_home / "planted"
    planted.write_bytes(b"x")
    os.chown(planted, NOBODY, NOBODY)
    speccache.store(speccache.key(SAFE, "a.bt", []), spec_of(), [])
    assert sorted(p.name for p in cache_home.iterdir()) == sorted([entry.name, "planted"])


# ------------------------------------------------------------------------- authenticity

def test_an_entry_not_sealed_with_the_users_secret_is_refused(cache_home):
    # what the old cache accepted: the key, no dependencies, a program (here one running system())
    k, entry = stored(cache_home)
    evil = spec_of('BEGIN { system("touch /tmp/pwned"); exit(); }', unsafe=True)
    entry.write_bytes(marshal.dumps((k, (), to_plain(evil))))
    assert speccache.lookup(k, unsafe=True) is None
    # nor sealed with another secret
    (cache_home.parent / "key").write_bytes(os.urandom(32))
    cachefs.reset()
    speccache.store(k, spec_of(), [])
    (cache_home.parent / "key").write_bytes(os.urandom(32))
    cachefs.reset()
    assert speccache.lookup(k) is None


def test_every_single_bit_flip_is_refused(cache_home):
    k, entry = stored(cache_home)
    good = entry.read_bytes()
    for i in range(0, len(good) * 8, max(1, len(good) * 8 // 300)):
        bad = bytearray(good)
        bad[i // 8] ^= 1 << (i % 8)
        entry.write_bytes(bytes(bad))
        assert speccache.lookup(k) is None, i
    entry.write_bytes(good)
    assert speccache.lookup(k) is not None


def test_a_malformed_spec_sealed_by_the_user_is_a_miss_not_a_traceback(cache_home):
    k, entry = stored(cache_home)
    for plain in (("R", "ObjectSpec"), ("R", "ObjectSpec", 1, 2, 3, 4, 5, 6, 7, 8, 9), "text", 5):
        assert cachefs.write(("specs",), entry.name, marshal.dumps((k, (), plain)))
        assert speccache.lookup(k) is None
    assert cachefs.write(("specs",), entry.name, b"\x00garbage")
    assert speccache.lookup(k) is None


# ------------------------------------------------------------------------- nothing wider than the command line

@pytest.mark.parametrize("call,name", [
    ('system("touch /tmp/pwned")', "system"),
    ("signal(9)", "signal"),
])
def test_a_cached_unsafe_program_needs_unsafe(cache_home, call, name):
    text = f"kprobe:vfs_read {{ {call}; exit(); }}" if name != "system" else f"BEGIN {{ {call}; exit(); }}"
    evil = spec_of(text, unsafe=True)
    assert speccache.needs_unsafe(evil) == name
    assert speccache.needs_unsafe(spec_of()) is None
    # an entry under a safe key (a forged or colliding one) holding the unsafe program
    k = speccache.key(SAFE, "stdin", [])
    speccache.store(k, evil, [])
    assert speccache.lookup(k) is None
    assert any(f"uses {name}()" in n for n in cachefs.take_notes())
    assert speccache.lookup(k, unsafe=True) is not None


def test_override_is_unsafe_too():
    from ptrace_lang.spec import ObjectSpec, ProgramSpec
    call = bytes([0x85, 0, 0, 0]) + (58).to_bytes(4, "little")
    exit_ = bytes([0x95, 0, 0, 0, 0, 0, 0, 0])
    spec = ObjectSpec(programs=[ProgramSpec("p", 2, call + exit_)])
    assert speccache.needs_unsafe(spec) == "override"
    # a 0x85 byte elsewhere (an immediate) is no call
    spec = ObjectSpec(programs=[ProgramSpec("p", 2, bytes([0xb7, 0, 0, 0, 0x85, 0, 0, 0]) + exit_)])
    assert speccache.needs_unsafe(spec) is None


def test_the_unsafe_helper_numbers_are_the_kernels():
    from ptrace_lang.bpf.helpers import HELPER_IDS
    assert {HELPER_IDS["override_return"], HELPER_IDS["send_signal"],
            HELPER_IDS["send_signal_thread"]} == set(speccache._UNSAFE_HELPERS)
    from ptrace_lang.spec import EV_SYSTEM
    assert speccache._EV_SYSTEM == EV_SYSTEM


# ------------------------------------------------------------------------- damaged entries

_LOOKUP = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from ptrace_lang import speccache
k = speccache.key(%r, "stdin", [])
print(speccache.lookup(k))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)   # MiB read at most
"""


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "dir"])
def test_a_fifo_or_a_link_to_a_device_is_refused_at_once(cache_home, kind):
    k, entry = stored(cache_home)
    entry.unlink()
    if kind == "fifo":
        os.mkfifo(entry, 0o600)
    elif kind == "dev-zero":
        entry.symlink_to("/dev/zero")
    else:
        entry.mkdir(0o700)
    p = subprocess.run([sys.executable, "-c", _LOOKUP % SAFE], capture_output=True, text=True,
                       timeout=20, env={**os.environ, "XDG_CACHE_HOME": str(cache_home.parent.parent)})
    # a miss, at once, without reading /dev/zero until memory runs out
    assert p.returncode == 0 and p.stdout.split("\n")[0] == "None", p.stderr
    assert int(p.stdout.split()[1]) < 300, p.stdout


def test_an_oversized_entry_is_not_read(cache_home, monkeypatch):
    k, entry = stored(cache_home)
    monkeypatch.setattr(cachefs, "MAX_SIZE", 100)
    assert speccache.lookup(k) is None


# ------------------------------------------------------------------------- writes

def test_a_planted_symlink_at_the_temporary_name_is_not_followed(cache_home, tmp_path):
    k, entry = stored(cache_home)
    entry.unlink()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    for pid in range(os.getpid() - 5, os.getpid() + 50):
        (cache_home / f"{entry.name}.{pid}.tmp").symlink_to(victim)
    speccache.store(k, spec_of(), [])
    assert victim.read_bytes() == b"precious"
    assert speccache.lookup(k) is not None


def test_temporaries_of_interrupted_writes_are_removed(cache_home):
    k, entry = stored(cache_home)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    left = cache_home / f"{entry.name}.{dead}.0011223344556677.tmp"
    left.write_bytes(b"half")
    old = cache_home / f"{entry.name}.{os.getpid()}.8899aabbccddeeff.tmp"
    old.write_bytes(b"half")
    os.utime(old, (1, 1))
    mine = cache_home / f"{entry.name}.{os.getpid()}.0123456789abcdef.tmp"
    mine.write_bytes(b"being written")
    speccache.store(speccache.key(SAFE, "a.bt", []), spec_of(), [])
    assert not left.exists() and not old.exists() and mine.exists()


# ------------------------------------------------------------------------- where

def test_a_home_that_does_not_exist_gets_no_directories(tmp_path, monkeypatch):
    home = tmp_path / "nonexistent" / "home"
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    cachefs.reset()
    try:
        speccache.store(speccache.key(SAFE, "stdin", []), spec_of(), [])
        assert not (tmp_path / "nonexistent").exists()
        # an existing home gets ~/.cache/ptrace-lang made
        assert cachefs.top() == str(home / ".cache" / "ptrace-lang")
    finally:
        cachefs.reset()


def test_root_without_xdg_uses_a_root_only_place_not_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "someone"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cachefs.top() == "/var/cache/ptrace-lang"


# ------------------------------------------------------------------------- the BTF answers

def test_btf_answers_with_a_flipped_bit_are_refused(tmp_path, monkeypatch):
    from ptrace_lang.sema import btftypes
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cachefs.reset()
    try:
        st = btftypes._Store()
        if st._key() is None:
            pytest.skip("no vmlinux BTF to key the cache file")
        st.load()
        st.answers[("field", "task_struct", "pid")] = ("offset", 2456, "int")
        st.dirty = True
        st.save()
        (f,) = [p for p in (tmp_path / "ptrace-lang").iterdir() if p.name.startswith("btf-")]
        assert btftypes._Store().load() == st.answers
        data = bytearray(f.read_bytes())
        at = data.find(b"offset")
        data[at] ^= 1
        f.write_bytes(bytes(data))
        assert btftypes._Store().load() == {}
        # nor a file written by someone else's hand
        f.write_bytes(marshal.dumps({("field", "task_struct", "pid"): ("offset", 8, "int")}))
        assert btftypes._Store().load() == {}
    finally:
        cachefs.reset()
