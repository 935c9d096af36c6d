"""Listing logic that needs no kernel: patterns, available_filter_functions, module BTF.

The kernel tests (tests/kernel/test_listing.py) run against this machine, whose kernel may not
let us read available_filter_functions and has no modules; here both are synthesized."""
from __future__ import annotations

import pytest

from ptrace_lang import listing
from ptrace_lang.btf import BTF
from test_btf import Enc


def _kernel():
    """A vmlinux BTF and one module's split BTF with functions and raw tracepoints."""
    base = Enc()
    b_int = base.int_("int", 4, signed=True)
    b_long = base.int_("long", 8, signed=True)
    b_file = base.composite("struct", "file", 8, [("f", b_int, 0, 0)])
    void_p = base.ptr(0)
    p_read = base.func_proto(b_long, [("file", base.ptr(b_file)), ("count", b_long)])
    base.add("func", "vfs_read", p_read)
    p_void = base.func_proto(0, [("x", b_int)])
    base.add("func", "do_nothing", p_void)
    base.add("func", "helper.part.0", p_void)
    stub = base.func_proto(0, [("__data", void_p), ("prev", base.ptr(b_file)), ("cpu", b_int)])
    base.add("func", "__probestub_sched_switch", stub)
    tp = base.func_proto(0, [("", void_p), ("", b_long)])
    base.add("typedef", "btf_trace_sys_enter", base.ptr(tp))
    base.add("typedef", "btf_trace_sched_switch", base.ptr(stub))
    mod = Enc(base)
    p_mod = mod.func_proto(b_int, [("dev", b_int)])
    mod.add("func", "mod_probe", p_mod)
    mod.add("func", "vfs_read", p_mod)          # a name whose string lives in the base
    mstub = mod.func_proto(0, [("__data", void_p), ("dev", b_int)])
    mod.add("func", "__probestub_mod_event", mstub)
    vml = BTF.from_bytes(base.blob())
    return vml, BTF.from_bytes(mod.blob(), base=vml)


def _lister(traceable_text: str | None, verbose=False):
    vml, mod = _kernel()
    lister = listing._Lister(verbose)
    lister._btf = [listing._BtfIndex(vml, "vmlinux"), listing._BtfIndex(mod, "mymod")]
    if traceable_text is not None:
        lister._traceable = listing.parse_traceable(traceable_text)
    return lister


AFF = """vfs_read
do_nothing
helper.part.0
__ftrace_invalid_address___64
mod_probe [mymod]
vfs_read [mymod]
not_in_btf [mymod]
"""


def test_btf_index_of_vmlinux_and_a_module():
    lister = _lister(None)
    vml, mod = lister.btfs()
    assert set(vml.funcs) == {"vfs_read", "do_nothing", "helper.part.0",
                              "__probestub_sched_switch"}
    assert set(vml.rawtps) == {"sched_switch", "sys_enter"}
    assert vml.rawtps["sys_enter"] is None and vml.rawtps["sched_switch"] is not None
    assert set(mod.funcs) == {"mod_probe", "vfs_read", "__probestub_mod_event"}
    assert set(mod.rawtps) == {"mod_event"}


def test_parse_available_filter_functions():
    got = listing.parse_traceable(AFF)
    assert got == {"vmlinux": ["do_nothing", "helper.part.0", "vfs_read"],
                   "mymod": ["mod_probe", "not_in_btf", "vfs_read"]}


def test_kprobes_from_available_filter_functions():
    lister = _lister(AFF)
    assert lister.run("kprobe:*") == ["kprobe:do_nothing", "kprobe:mod_probe",
                                      "kprobe:not_in_btf", "kprobe:vfs_read"]
    assert lister.run("kprobe:mymod:*") == ["kprobe:mymod:mod_probe", "kprobe:mymod:not_in_btf",
                                            "kprobe:mymod:vfs_read"]
    assert lister.run("k:*:vfs_read") == ["kprobe:mymod:vfs_read", "kprobe:vmlinux:vfs_read"]
    assert lister.run("kretprobe:vfs_read") == ["kretprobe:vfs_read"]
    assert lister.warnings == [] or all("kprobe support" in w for w in lister.warnings)


def test_fentry_is_btf_and_traceable():
    lister = _lister(AFF, verbose=True)
    assert lister.run("fentry:*") == [
        "fentry:mymod:mod_probe", "    int dev", "    int retval",
        "fentry:mymod:vfs_read", "    int dev", "    int retval",
        "fentry:vmlinux:do_nothing", "    int x",                  # void: no retval line
        "fentry:vmlinux:vfs_read", "    struct file * file", "    long count", "    long retval"]
    lister = _lister(AFF)
    assert lister.run("f:vfs_read") == ["fentry:mymod:vfs_read", "fentry:vmlinux:vfs_read"]
    assert lister.run("kretfunc:vmlinux:*") == ["fexit:vmlinux:do_nothing",
                                                "fexit:vmlinux:vfs_read"]


def test_without_available_filter_functions_btf_stands_in(monkeypatch):
    from ptrace_lang.kernel import tracefs

    def no_tracefs():
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tracefs, "tracefs_root", no_tracefs)
    lister = _lister(None)
    assert lister.run("kprobe:mymod:*") == ["kprobe:mymod:__probestub_mod_event",
                                            "kprobe:mymod:mod_probe", "kprobe:mymod:vfs_read"]
    assert lister.run("fentry:vmlinux:vfs_read") == ["fentry:vmlinux:vfs_read"]
    assert any("available_filter_functions (Operation not permitted)" in w
               for w in lister.warnings)


def test_rawtracepoints_with_arguments():
    lister = _lister(AFF, verbose=True)
    assert lister.run("rawtracepoint:*") == [
        "rawtracepoint:mymod:mod_event", "    int dev",
        "rawtracepoint:vmlinux:sched_switch", "    struct file * prev", "    int cpu",
        "rawtracepoint:vmlinux:sys_enter", "    long arg0"]     # typedef only: unnamed


@pytest.mark.parametrize("type_pat, want", [
    ("t", ["tracepoint"]), ("TRACEPOINT", ["tracepoint"]), ("u", ["uprobe"]), ("U", ["usdt"]),
    ("kfunc", ["fentry"]), ("kretfunc", ["fexit"]), ("rt", ["rawtracepoint"]),
    ("interval", ["interval"]), ("i", ["interval"]), ("p", ["profile"]), ("BEGIN", []),
    ("*", ["fentry", "hardware", "iter", "kprobe", "rawtracepoint", "software", "tracepoint"]),
    ("k*", ["kprobe"]),
])
def test_provider_names_and_aliases(type_pat, want):
    assert listing._provider_types(type_pat, None) == want


def test_bad_provider_is_an_error():
    with pytest.raises(listing.ListingError, match="Invalid probe type: 'sched'"):
        listing._provider_types("sched", None)


def test_interval_and_profile_list_their_units_when_named():
    # bpftrace 0.26 lists interval:hz: ... ; `-l` alone (a wildcard provider) does not
    lister = listing._Lister(False)
    assert lister.run("interval:*") == ["interval:hz:", "interval:ms:", "interval:s:",
                                        "interval:us:"]
    assert lister.run("p:h*") == ["profile:hz:"]
    assert not any(x.startswith(("interval", "profile")) for x in lister.run("*:hz"))


def test_invalid_characters_in_a_pattern():
    with pytest.raises(listing.ListingError, match="invalid character '{' in the search "
                                                   "pattern 'tracepoint:sys{x'"):
        listing._Lister(False).run("tracepoint:sys{x")


def test_a_binary_as_written_and_a_process_objects(tmp_path, monkeypatch):
    import os
    import shutil
    import sys
    exe = os.path.realpath(sys.executable)
    shutil.copy(exe, tmp_path / "py1")
    monkeypatch.chdir(tmp_path)
    lines = listing._Lister(False).run("uprobe:./py1:main")
    assert lines in (["uprobe:./py1:main"], [])
    lines = listing._Lister(False).run("uprobe:./py?:main")
    assert lines in (["uprobe:./py1:main"], [])
    # -p: every object the process maps, uprobe and usdt providers included
    lines = listing._Lister(False, pid=os.getpid()).run("uprobe:*:getpid")
    assert any(x.startswith("uprobe:/") and "libc.so" in x and x.endswith(":getpid")
               for x in lines), lines
    assert "uprobe" in listing._provider_types("*", None, pid_given=True)


def test_the_listed_types_are_the_providers_own():
    # what -l lists of each type is the provider's to say: no list of type names in listing
    from ptrace_lang import listing, providers

    ps = providers.all_providers()
    assert {p.listed for p in ps} <= {"", "kernel", "user", "named"}
    assert set(listing._types()) == {p.name for p in ps if p.listed}
    assert listing._provider_types("*", None) == sorted(p.name for p in ps if p.listed == "kernel")
    assert listing._provider_types("u", None) == ["uprobe"]
    assert listing._provider_types("U", None) == ["usdt"]
    assert listing._provider_types("BEGIN", None) == [] and listing._provider_types("w", None) == []
    assert listing._lister_of("kretprobe") == "kprobe" and listing._lister_of("uprobe") == "uprobe"


def test_info_checks_what_the_providers_name():
    # --info's probe-type lines come from the providers (Provider.kernel_feature)
    from ptrace_lang import info, providers

    named = {p.kernel_feature for p in providers.all_providers() if p.kernel_feature}
    assert named and named <= set(info.feature_checks())
