"""The command line as bpftrace's getopt reads it, -I / --include resolution (no kernel)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ptrace_lang.cli import UsageError, parse_args

ROOT = Path(__file__).resolve().parents[2]


def test_options_after_the_program_and_file():
    o = parse_args(["-e", "BEGIN{}", "-q"])
    assert o["quiet"] and o["program"] == "BEGIN{}" and o["positional"] == []
    o = parse_args(["script.bt", "-q", "1", "two", "-v"])
    assert o["file"] == "script.bt" and o["quiet"] and o["verbose"]
    assert o["positional"] == ["1", "two"]


def test_double_dash_ends_options():
    o = parse_args(["-e", "BEGIN{}", "--", "-q", "-5"])
    assert not o["quiet"] and o["positional"] == ["-q", "-5"]
    o = parse_args(["--", "s.bt", "-x"])
    assert o["file"] == "s.bt" and o["positional"] == ["-x"]


def test_a_negative_number_is_an_option_as_in_getopt():
    with pytest.raises(UsageError, match=r"invalid option -- '5'.*after '--'"):
        parse_args(["-e", "BEGIN{}", "-5"])


def test_grouped_flags_and_attached_values():
    o = parse_args(["-qv", "-eBEGIN{}", "-kk", "-Iinc", "-I", "inc2"])
    assert o["quiet"] and o["verbose"] and o["program"] == "BEGIN{}"
    assert o["helper_checks"] == 2 and o["include_dirs"] == ["inc", "inc2"]
    o = parse_args(["-lv", "kprobe:*"])
    assert o["list"] and o["verbose"] and o["file"] == "kprobe:*"
    o = parse_args(["-l", "tracepoint:*", "-v"])       # bpftrace allows -v after the pattern
    assert o["list"] and o["verbose"] and o["file"] == "tracepoint:*"


def test_long_options():
    o = parse_args(["--include", "a.h", "--include=b.h", "--no-warnings", "--info", "--unsafe",
                    "--dry-run", "--usdt-file-activation", "-e", "BEGIN{}"])
    assert o["includes"] == ["a.h", "b.h"] and o["no_warnings"] and o["info"]
    assert o["unsafe"] and o["dry_run"] and o["usdt_file_activation"]
    with pytest.raises(UsageError, match="unrecognized option '--nope'"):
        parse_args(["--nope"])
    with pytest.raises(UsageError, match="requires an argument"):
        parse_args(["--include"])
    with pytest.raises(UsageError, match="doesn't allow an argument"):
        parse_args(["--info=1"])


def test_value_options_and_errors():
    o = parse_args(["-e", "x", "-c", "ls -l '/tmp/a b'", "-o", "f", "-B", "none", "-f", "json"])
    assert o["command"] == ["ls", "-l", "'/tmp/a", "b'"] and o["output"] == "f"
    assert o["buffering"] == "none" and o["format"] == "json"
    o = parse_args(["-e", "x", "-p", "12"])
    assert o["pid"] == 12
    with pytest.raises(UsageError, match="Cannot use both -c and -p"):
        parse_args(["-e", "x", "-p", "1", "-c", "true"])
    with pytest.raises(UsageError, match="option requires an argument -- 'e'"):
        parse_args(["-e"])
    with pytest.raises(UsageError, match="invalid option -- 'z'"):
        parse_args(["-z"])


def _ptrace(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "ptrace_lang", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                   "PTRACE_NO_CACHE": "1"})


def test_include_search_path_and_missing_header(tmp_path):
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.errors import CompileError

    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "mine.h").write_text('#define MAGIC 42\n#include "more.h"\n'
                                             "struct pt { int x; int y; };\n")
    (tmp_path / "inc" / "more.h").write_text("#define OTHER 7\n")
    prog = '#include "mine.h"\nBEGIN { printf("%d %d %d\\n", MAGIC, OTHER, sizeof(struct pt)); }'
    r = _ptrace("--dry-run", "-e", prog, cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == "stdin:1:1-18: ERROR: include file 'mine.h' not found", r.stderr
    assert any(line.startswith("HINT: searched: ") for line in lines), r.stderr
    assert "HINT: add a directory to the search path with -I DIR" in lines, r.stderr
    # with -I the header (and the one it includes, next to it) is read: its #defines and types
    c = compile_script(prog, "stdin", Options(include_dirs=(str(tmp_path / "inc"),)))
    assert sorted(os.path.basename(d) for d in c.deps if d.endswith(".h")) == ["mine.h", "more.h"]
    with pytest.raises(CompileError, match="include file 'mine.h' not found"):
        compile_script(prog, "stdin", Options())
    # a <header> found nowhere is an error (clang's "file not found"), unless cdefs knows its
    # names (types come from BTF); under #ifndef BPFTRACE_HAVE_BTF it is not read at all
    with pytest.raises(CompileError, match="include file 'no_such_dir_p2/x.h' not found"):
        compile_script("#include <no_such_dir_p2/x.h>\nBEGIN { exit(); }", "stdin", Options())
    compile_script("#include <net/sock.h>\nBEGIN { exit(); }", "stdin", Options())
    compile_script("#ifndef BPFTRACE_HAVE_BTF\n#include <no_such_dir_p2/x.h>\n#endif\n"
                   "BEGIN { exit(); }", "stdin", Options())
    # --include of the user's header
    c = compile_script('BEGIN { printf("%d\\n", MAGIC); }', "stdin",
                       Options(includes=(str(tmp_path / "inc" / "mine.h"),)))
    assert any(d.endswith("mine.h") for d in c.deps)


def test_include_option(tmp_path):
    r = _ptrace("--dry-run", "--include", "no_such_p2.h", "-e", "BEGIN { exit(); }")
    assert r.returncode == 1
    assert r.stderr.startswith("ERROR: --include: file 'no_such_p2.h' not found"), r.stderr
    from ptrace_lang.includes import find
    (tmp_path / "x.h").write_text("")
    path, dirs = find("x.h", False, None, [str(tmp_path)])
    assert path == str(tmp_path / "x.h") and dirs[0] == str(tmp_path)
    path, _ = find("x.h", True, str(tmp_path), [])            # "x.h": the script's directory
    assert path == str(tmp_path / "x.h")
    path, _ = find("x.h", False, str(tmp_path), [])           # <x.h>: not the script's directory
    assert path is None


def test_help_lists_the_new_options():
    r = _ptrace("--help")
    for opt in ("-k, -kk", "-I DIR", "--include FILE", "--no-warnings", "--info"):
        assert opt in r.stdout


def test_long_forms_of_the_short_options():
    o = parse_args(["--pid", "12", "--output=out.txt", "--format", "json", "--quiet",
                    "--verbose", "--debug=ast", "--buffering", "none", "--program", "BEGIN{}"])
    assert o["pid"] == 12 and o["output"] == "out.txt" and o["format"] == "json"
    assert o["quiet"] and o["verbose"] and o["stages"] == ["ast"]
    assert o["buffering"] == "none" and o["program"] == "BEGIN{}"
    o = parse_args(["--cmd=ls -l", "-e", "BEGIN{}"])
    assert o["command"] == ["ls", "-l"]
    with pytest.raises(UsageError, match="Failed to parse pid: invalid integer: x"):
        parse_args(["--pid=x"])
    with pytest.raises(UsageError, match="option '--format' requires an argument"):
        parse_args(["-e", "BEGIN{}", "--format"])
    with pytest.raises(UsageError, match="option '--quiet' doesn't allow an argument"):
        parse_args(["--quiet=1"])


def test_long_options_abbreviated_as_getopt_long():
    o = parse_args(["--vers", "--un", "--dry", "-e", "x"])
    assert o["version"] and o["unsafe"] and o["dry_run"]
    # bpftrace: option '--in' is ambiguous; possibilities: '--include' '--info'
    with pytest.raises(UsageError, match="option '--in' is ambiguous; possibilities: "
                                         "'--include' '--info'"):
        parse_args(["--in"])


# ---------------------------------------------------------------- --mode, --bench, --probe-filter

def test_mode_bench_and_its_alias():
    assert parse_args(["--mode", "bench", "-e", "BEGIN{}"])["mode"] == "bench"
    assert parse_args(["--mode=codegen", "-e", "BEGIN{}"])["mode"] == "codegen"
    assert parse_args(["--bench", "-e", "BEGIN{}"])["mode"] == "bench"
    assert parse_args(["-e", "BEGIN{}"])["mode"] is None
    # bpftrace's words: an unknown mode, and --bench after a --mode
    with pytest.raises(UsageError) as e:
        parse_args(["--mode", "fast", "-e", "BEGIN{}"])
    assert str(e.value) == ("USAGE: --mode can only be 'codegen', 'compiler-bench', 'bench', "
                            "'test' or 'format'.") and not e.value.usage
    with pytest.raises(UsageError) as e:
        parse_args(["--mode", "test", "--bench", "-e", "BEGIN{}"])
    assert str(e.value) == "USAGE: --bench conflicts with existing --mode"
    with pytest.raises(UsageError, match="'--mode' requires an argument"):
        parse_args(["-e", "BEGIN{}", "--mode"])


def test_probe_filter_option():
    assert parse_args(["--probe-filter", "uprobe.*", "-e", "BEGIN{}"])["probe_filter"] == "uprobe.*"
    assert parse_args(["--probe-filter=^t", "x.bt"])["probe_filter"] == "^t"
    assert parse_args(["--probe-f", "x", "x.bt"])["probe_filter"] == "x"     # getopt_long prefix
    assert parse_args(["x.bt"])["probe_filter"] is None


def _spec():
    from ptrace_lang import spec as S

    def att(provider, name, prog):
        return S.AttachSpec(provider=provider, program=prog, probe_name=name)
    progs = [S.ProgramSpec(name=n, prog_type=0, insns=b"") for n in ("pb", "pt", "pi", "pe", "pn")]
    return S.ObjectSpec(programs=progs, attachments=[
        att("begin", "begin", "pb"), att("tracepoint", "tracepoint:syscalls:sys_enter_read", "pt"),
        att("tracepoint", "tracepoint:syscalls:sys_enter_write", "pt"),
        att("interval", "interval:ms:10", "pi"), att("end", "end", "pe"),
        att("bench", "bench:x", "pn")])


def test_probe_filter_keeps_matching_probes_and_begin_end():
    from ptrace_lang.modes import probe_filter

    s = probe_filter(_spec(), "sys_enter_w")
    assert [a.probe_name for a in s.attachments] == [
        "begin", "tracepoint:syscalls:sys_enter_write", "end"]
    assert [p.name for p in s.programs] == ["pb", "pt", "pe"]     # the others are not loaded
    s = probe_filter(_spec(), "^(interval|bench):")
    assert [p.name for p in s.programs] == ["pb", "pi", "pe", "pn"]
    assert len(probe_filter(_spec(), "").attachments) == 6
    with pytest.raises(ValueError):
        probe_filter(_spec(), "(")


def test_bench_table_as_bpftrace_prints_it():
    from ptrace_lang.modes import bench_repeat, bench_table, duration_text

    assert bench_table([("lhist", 25), ("a_long_benchmark_name", 1500)]) == (
        "+-----------------------+--------------+\n"
        "| BENCHMARK             | AVERAGE TIME |\n"
        "+-----------------------+--------------+\n"
        "| lhist                 | 25ns         |\n"
        "| a_long_benchmark_name | 1\u03bcs          |\n"
        "+-----------------------+--------------+\n\n")
    assert bench_table([("a", 0)]).splitlines()[1] == "| BENCHMARK | AVERAGE TIME |"
    assert [duration_text(n) for n in (999, 1000, 2_500_000, 3_000_000_000)] == [
        "999ns", "1\u03bcs", "2ms", "3s"]
    assert bench_repeat(100) == 1_000_000 and bench_repeat(0) == 10_000_000
    assert bench_repeat(10**9) == 1000


def test_bench_probes_need_one_name():
    from ptrace_lang import providers
    from ptrace_lang.errors import CompileError
    from ptrace_lang.frontend import ast

    p = providers.get("bench")
    t, = p.expand(ast.AttachPoint("bench:loop", "bench", ["loop"]), providers.Options())
    assert (t.probe_name, t.target) == ("bench:loop", "loop")
    for parts, msg in (([], "bench probes must have a name"),
                       (["a", "b"], "bench probe type requires 1 argument, found 2")):
        with pytest.raises(CompileError, match=msg):
            p.expand(ast.AttachPoint("bench", "bench", parts), providers.Options())


@pytest.mark.parametrize("text,words", [
    ("/bin/echo 'a b'", ["/bin/echo", "'a", "b'"]),     # quotes stay as written
    ("/bin/echo a  b", ["/bin/echo", "a", "", "b"]),     # two spaces: an empty word between
    (" /bin/echo x", ["", "/bin/echo", "x"]),            # a leading space: an empty command
    ("/bin/echo x ", ["/bin/echo", "x"]),                # one trailing space: no last word
    ("/bin/echo x  ", ["/bin/echo", "x", ""]),
    ("/bin/echo\tx", ["/bin/echo\tx"]),                  # tabs do not split
    ("a \"$HOME\" >y", ["a", "\"$HOME\"", ">y"]),
])
def test_cmd_splits_on_single_spaces_as_bpftrace(text, words):
    assert parse_args(["-e", "x", "-c", text])["command"] == words


def test_empty_cmd_runs_nothing_as_bpftrace():
    assert parse_args(["-e", "x", "-c", ""])["command"] is None
    assert parse_args(["-e", "x", "-p", "1", "-c", ""])["pid"] == 1
