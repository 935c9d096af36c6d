"""uprobe targets checked as bpftrace checks them (resolve_offset_uprobe): an address must lie
inside a function (--unsafe forces it, with a warning), ``func+N`` must stay inside ``func``,
and a zero-size symbol contains nothing. A fixture compiled here with gcc."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from ptrace_lang import elfsyms
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc missing")

SRC = r'''
__asm__(".globl zerosize\n.type zerosize,@function\nzerosize:\n nop\n ret\n");
int work(int x) { return x * 3 + 1; }
int main(void) { return work(2); }
'''


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    d = tmp_path_factory.mktemp("uprobe_checks")
    (d / "t.c").write_text(SRC)
    subprocess.run(["gcc", "-O1", "-o", str(d / "t"), str(d / "t.c")], check=True)
    return str(d / "t")


def compile_error(src: str, **kw) -> str:
    with pytest.raises(PtraceError) as info:
        compile_script(src, "stdin", Options(**kw))
    return info.value.render(SOURCES).splitlines()[0]


def test_an_address_inside_no_function_is_refused_unless_unsafe(binary):
    msg = compile_error(f"uprobe:{binary}:10 {{ }}")
    # bpftrace 0.17: ERROR: Could not resolve address: /bin/bash:0xa
    assert msg == f"stdin:1:1-{len(binary) + 11}: ERROR: Could not resolve address: {binary}:0xa"
    c = compile_script(f"uprobe:{binary}:10 {{ }}", "stdin", Options(unsafe=True))
    assert len(c.spec.attachments) == 1


def test_an_address_inside_a_function_is_accepted(binary):
    work = elfsyms.lookup_symbol(binary, "work")
    c = compile_script(f"uprobe:{binary}:{hex(work.address)} {{ }}", "stdin", Options())
    assert len(c.spec.attachments) == 1


def test_an_offset_past_the_end_of_the_function(binary):
    size = elfsyms.lookup_symbol(binary, "work").size
    msg = compile_error(f"uprobe:{binary}:work+{size} {{ }}")
    assert msg.endswith(f"ERROR: Offset outside the function bounds ('work' size is {size})")
    c = compile_script(f"uprobe:{binary}:work+{size - 1} {{ }}", "stdin", Options())
    assert len(c.spec.attachments) == 1


def test_a_zero_size_symbol_holds_no_address_and_no_offset(binary):
    zs = elfsyms.lookup_symbol(binary, "zerosize")
    assert zs.size == 0
    assert compile_error(f"uprobe:{binary}:zerosize+1 {{ }}").endswith(
        "ERROR: Offset outside the function bounds ('zerosize' size is 0)")
    assert compile_error(f"uprobe:{binary}:{hex(zs.address)} {{ }}").endswith(
        f"ERROR: Could not resolve address: {binary}:{hex(zs.address)}")
    c = compile_script(f"uprobe:{binary}:zerosize {{ }}", "stdin", Options())
    assert len(c.spec.attachments) == 1
