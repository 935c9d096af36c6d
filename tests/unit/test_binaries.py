"""Binaries of uprobe/USDT attach points beyond one file: ``*`` (and an empty binary for
USDT) with -p PID is every object the process maps (/proc/PID/maps), as bpftrace does; a glob
over files (``uprobe:./bin*:f``). A fixture compiled here with gcc; -p is this test's process."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ptrace_lang import libpath
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc missing")


@pytest.fixture(scope="module")
def bindir(tmp_path_factory):
    d = tmp_path_factory.mktemp("binaries")
    (d / "t.c").write_text("int work(int x) { return x + 1; }\n"
                           "int main(void) { return work(1); }\n")
    subprocess.run(["gcc", "-O1", "-o", str(d / "bin1"), str(d / "t.c")], check=True)
    shutil.copy(d / "bin1", d / "bin2")
    (d / "bin3.txt").write_text("not an ELF file\n")
    return d


def test_a_glob_over_files(bindir):
    c = compile_script(f"uprobe:{bindir}/bin*:work {{ }}", "stdin", Options())
    assert sorted(c.spec.probe_names) == [f"uprobe:{bindir}/bin1:work",
                                          f"uprobe:{bindir}/bin2:work"]
    cwd = os.getcwd()
    os.chdir(bindir)
    try:   # printed as written: ./bin1
        c = compile_script("uprobe:./bin?:main { }", "stdin", Options())
    finally:
        os.chdir(cwd)
    assert sorted(c.spec.probe_names) == ["uprobe:./bin1:main", "uprobe:./bin2:main"]
    assert all(a.target.endswith(("/bin1", "/bin2")) and f"{bindir}" in a.target
               for a in c.spec.attachments)


def test_a_glob_that_matches_no_file(bindir):
    with pytest.raises(PtraceError) as info:
        compile_script(f"uprobe:{bindir}/nope*:work {{ }}", "stdin", Options())
    assert f"ERROR: uprobe target file '{bindir}/nope*' does not exist or is not executable" in info.value.render(SOURCES)


def test_every_object_of_the_process():
    pid = os.getpid()
    objs = libpath.mapped_objects(pid)
    libc = next(p for p in objs if "libc.so" in os.path.basename(p))
    c = compile_script("uprobe:*:getpid { }", "stdin", Options(pid=pid))
    assert f"uprobe:{libc}:getpid" in c.spec.probe_names
    assert all(a.target.endswith(f":{pid}:{libc}") or ":getpid" not in a.probe_name
               for a in c.spec.attachments)


def test_every_object_needs_a_process():
    for src in ("uprobe:*:getpid { }", "usdt::prov:probe { }"):
        with pytest.raises(PtraceError) as info:
            compile_script(src, "stdin", Options())
        assert "needs -p PID" in info.value.render(SOURCES)
