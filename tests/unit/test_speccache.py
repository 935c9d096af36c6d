"""The compile cache: an entry is used only when everything the compile depended on is unchanged."""
from __future__ import annotations

import marshal
import os

import pytest

from ptrace_lang import speccache
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import NO_SPAN
from ptrace_lang.spec import from_plain, to_plain

SCRIPT = """
BEGIN {
  @c[comm, pid] = count(); @h = hist(5); @l = lhist(3, 0, 10, 1); @s = stats(7);
  @v["x"] = (1, "two"); printf("%s %d %5.2s\\n", comm, pid, "abc"); print(@c); time();
  exit();
}
END { clear(@c); }
"""


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PTRACE_NO_CACHE", raising=False)
    return tmp_path / "ptrace-lang" / "specs"


def compiled(text=SCRIPT, positional=()):
    return compile_script(text, "stdin", Options(positional=list(positional)))


def test_plain_round_trip_is_equal_and_keeps_no_span_identity():
    spec = compiled().spec
    back = from_plain(marshal.loads(marshal.dumps(to_plain(spec))))
    assert back == spec
    assert back is not spec
    assert [type(m).__name__ for m in back.maps] == [type(m).__name__ for m in spec.maps]
    assert any(p.insns for p in back.programs)
    assert from_plain(to_plain(NO_SPAN)) is NO_SPAN     # errors.render tests it by identity
    lh = next(m for m in back.user_maps if m.kind == "lhist")
    assert lh.lhist == (0, 10, 1) and isinstance(lh.lhist, tuple)


def test_to_plain_refuses_foreign_objects():
    with pytest.raises(TypeError):
        to_plain(object())


def test_store_then_lookup(cache_home):
    spec = compiled().spec
    k = speccache.key(SCRIPT, "stdin", [])
    assert speccache.lookup(k) is None
    speccache.store(k, spec, [])
    assert len(list(cache_home.iterdir())) == 1
    assert speccache.lookup(k) == spec
    # the same key computed again (a later run) finds it
    assert speccache.lookup(speccache.key(SCRIPT, "stdin", [])) == spec


def test_key_covers_text_file_positional_and_environment(cache_home, monkeypatch):
    base = speccache.key(SCRIPT, "stdin", [])
    assert speccache.key(SCRIPT + " ", "stdin", []) != base
    assert speccache.key(SCRIPT, "a.bt", []) != base
    assert speccache.key(SCRIPT, "stdin", ["1"]) != base
    monkeypatch.setenv("BPFTRACE_MAX_MAP_KEYS", "10")
    assert speccache.key(SCRIPT, "stdin", []) != base
    monkeypatch.delenv("BPFTRACE_MAX_MAP_KEYS")
    assert speccache.key(SCRIPT, "stdin", []) == base


def test_a_changed_compiler_file_changes_the_key(cache_home, monkeypatch):
    base = speccache.key(SCRIPT, "stdin", [])
    fp = list(speccache._code_fingerprint())
    assert any(p.endswith("speccache.py") for p, *_ in fp)
    assert any(p.endswith("ptrace.lark") for p, *_ in fp)
    path, size, mtime = fp[0]
    monkeypatch.setattr(speccache, "_code_fingerprint", lambda: tuple([(path, size, mtime + 1)] + fp[1:]))
    assert speccache.key(SCRIPT, "stdin", []) != base


def test_a_changed_dependency_is_not_used(cache_home, tmp_path):
    dep = tmp_path / "binary"
    dep.write_bytes(b"one")
    spec = compiled().spec
    k = speccache.key(SCRIPT, "stdin", [])
    speccache.store(k, spec, [str(dep)])
    assert speccache.lookup(k) == spec
    dep.write_bytes(b"other contents")
    assert speccache.lookup(k) is None
    dep.unlink()
    assert speccache.lookup(k) is None


def test_a_damaged_or_foreign_entry_is_ignored(cache_home):
    spec = compiled().spec
    k = speccache.key(SCRIPT, "stdin", [])
    speccache.store(k, spec, [])
    (entry,) = cache_home.iterdir()
    entry.write_bytes(entry.read_bytes()[:100])
    assert speccache.lookup(k) is None
    entry.write_bytes(b"garbage")
    assert speccache.lookup(k) is None
    # an entry whose stored key differs (a file-name collision) is not used
    other = speccache.key("BEGIN { exit(); }", "stdin", [])
    entry.write_bytes(marshal.dumps((other, (), to_plain(spec))))
    assert speccache.lookup(k) is None


def test_old_entries_are_trimmed(cache_home, monkeypatch):
    monkeypatch.setattr(speccache, "MAX_ENTRIES", 3)
    spec = compiled().spec
    for i in range(5):
        speccache.store(speccache.key(SCRIPT, "stdin", [str(i)]), spec, [])
    assert len(list(cache_home.iterdir())) == 3
    assert not [p for p in cache_home.iterdir() if p.name.endswith(".tmp")]


def test_uprobe_targets_record_the_binary_as_a_dependency():
    bash = "/bin/bash" if os.path.exists("/bin/bash") else None
    if bash is None:
        pytest.skip("no /bin/bash to resolve a uprobe against")
    c = compile_script("uprobe:/bin/bash:main { @ = count(); }", "stdin", Options())
    assert os.path.realpath(bash) in [os.path.realpath(d) for d in c.deps]
    c = compile_script("uprobe:libc:malloc { @ = count(); }", "stdin", Options())
    assert "/etc/ld.so.cache" in c.deps


def test_an_installed_package_is_fingerprinted_by_its_record(tmp_path, monkeypatch):
    site = tmp_path / "lib" / "site-packages"
    pkg = site / "ptrace_lang"
    pkg.mkdir(parents=True)
    (pkg / "cli.py").write_text("x = 1\n")
    info = site / "ptrace_lang-0.1.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_text("ptrace_lang/cli.py,,\n")
    monkeypatch.setattr(speccache, "_PKG_DIR", str(pkg))
    first = speccache._code_fingerprint()
    assert first == ((str(info / "RECORD"),) + first[0][1:],)
    # pip installing again writes a new RECORD: another key
    (info / "RECORD").unlink()
    (info / "RECORD").write_text("ptrace_lang/cli.py,,\nptrace_lang/new.py,,\n")
    assert speccache._code_fingerprint() != first
    # a source checkout (not under site-packages) is fingerprinted file by file
    monkeypatch.setattr(speccache, "_PKG_DIR", os.path.dirname(os.path.abspath(speccache.__file__)))
    assert len(speccache._code_fingerprint()) > 20
