"""USDT sites of one wildcard, each read as its own note says; constants cut to their size;
blocks on one USDT probe and one uprobe run in declaration order (as bpftrace's do)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from runner import run

# a stapsdt note as <sys/sdt.h> writes it (the header is not needed): the site is the nop
NOTE = r'''
#define SDT(provider, name, args)                                                         \
    "990: nop\n"                                                                          \
    ".pushsection .note.stapsdt,\"?\",\"note\"\n"                                          \
    ".balign 4\n"                                                                         \
    ".4byte 992f-991f, 994f-993f, 3\n"                                                    \
    "991: .asciz \"stapsdt\"\n"                                                           \
    "992: .balign 4\n"                                                                    \
    "993: .8byte 990b\n"                                                                  \
    ".8byte _.stapsdt.base\n"                                                             \
    ".8byte 0\n"                                                                          \
    ".asciz \"" provider "\"\n"                                                           \
    ".asciz \"" name "\"\n"                                                               \
    ".asciz \"" args "\"\n"                                                               \
    "994: .balign 4\n"                                                                    \
    ".popsection\n"                                                                       \
    ".ifndef _.stapsdt.base\n"                                                            \
    ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"               \
    ".weak _.stapsdt.base\n"                                                              \
    ".hidden _.stapsdt.base\n"                                                            \
    "_.stapsdt.base: .space 1\n"                                                          \
    ".size _.stapsdt.base, 1\n"                                                           \
    ".popsection\n"                                                                       \
    ".endif\n"
'''

PROGRAM = NOTE + r'''
__attribute__((noinline)) void sites(void)
{
    __asm__ __volatile__(SDT("app", "site", "-4@$7"));
    __asm__ __volatile__(SDT("app", "site", "1@$300"));
    __asm__ __volatile__(SDT("app", "other", "-2@$-3"));
}
int main(void) { sites(); return 0; }
'''


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("usdt_sites")
    (d / "app.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-O1", "-o", str(d / "app"), str(d / "app.c")], check=True)
    return str(d / "app")


def test_each_site_reads_its_own_arguments(app):
    # one program per argument spec: the second site's 1@$300 is not read as the first's -4@$7
    r = run("-c", app, "-e", f'usdt:{app}:app:* {{ printf("%s %d\\n", probe, arg0); }}')
    assert r.rc == 0, r.err
    assert r.out.split("\n")[:3] == [f"usdt:{app}:app:site 7", f"usdt:{app}:app:site 44",
                                     f"usdt:{app}:app:other -3"], r.out


def test_blocks_on_one_event_run_in_declaration_order(app):
    r = run("-c", app, "-e", f'usdt:{app}:app:other {{ printf("A\\n"); }} '
                             f'usdt:{app}:app:other {{ printf("B\\n"); }} '
                             f'uprobe:{app}:sites {{ printf("1\\n"); }} '
                             f'uprobe:{app}:sites {{ printf("2\\n"); }} '
                             f'uprobe:{app}:sites {{ printf("3\\n"); }}')
    assert r.rc == 0, r.err
    assert r.out.split() == ["1", "2", "3", "A", "B"], r.out


def test_a_block_of_several_functions_keeps_its_place(app):
    # the first block's two functions share one uprobe_multi link: it is attached in the
    # block's place among the others, not before them
    r = run("-c", app, "-e", f'uprobe:{app}:sites,uprobe:{app}:main {{ printf("1 %s\\n", func); }} '
                             f'uprobe:{app}:sites {{ printf("2\\n"); }}')
    assert r.rc == 0, r.err
    assert r.out.split("\n")[:3] == ["1 main", "1 sites", "2"], r.out


def test_a_function_in_every_object_of_a_process():
    import sys
    app = subprocess.Popen([sys.executable, "-c",
                            "import os, time\nwhile True:\n os.getppid(); time.sleep(0.05)"])
    try:
        r = run("-p", str(app.pid), "-e", 'uprobe:*:getppid { printf("%s\\n", probe); exit(); }',
                timeout=30)
    finally:
        app.kill()
        app.wait()
    assert r.rc == 0, r.err
    (line,) = r.out.split()
    assert line.startswith("uprobe:/") and "libc.so" in line and line.endswith(":getppid"), r.out
