"""iter: — BPF iterators over kernel objects: ``iter:task``, ``iter:task_file``, ``iter:task_vma``.

The program (BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, bound to the ``bpf_iter_<name>`` BTF
function) runs once per object when the iterator is read: after attaching, the runtime creates
an iterator from the link and reads it to its end, then the run ends (as bpftrace's iter
probes do; with other probes in the script, those keep running). ``ctx`` is the iterator's
context, typed from BTF: ``ctx->task`` (``struct task_struct *``), ``ctx->file``, ``ctx->fd``,
``ctx->vma``; ``ctx->meta`` is the seq_file meta data. The iterator's last call, made with no
object, is skipped before the probe's code runs.
"""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, register, substitute_positional

ITERS = ("task", "task_file", "task_vma")
BPF_TRACE_ITER = 28


class Iter(Provider):
    name = "iter"
    aliases = ("it",)
    prog_type_name = "BPF_PROG_TYPE_TRACING"
    builtins = frozenset({"ctx"})
    runs = "once"
    listed = "kernel"

    def expand(self, ap, opts):
        from ptrace_lang.providers.fentry import functions, proto_fields
        from ptrace_lang.sema.types import ArgsT

        parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
        if len(parts) != 1 or not parts[0]:
            raise CompileError("iter probe must be written iter:" + "|".join(ITERS), ap.span)
        what = parts[0]
        if any(c in what for c in "*?["):
            raise CompileError("iter probes do not take wildcards", ap.span)
        if what not in ITERS:
            raise CompileError(f"iter:{what}: unknown iterator (known: {', '.join(ITERS)})", ap.span)
        indexes = functions(opts).indexes()
        fid = indexes[0].funcs.get("bpf_iter_" + what) if indexes else None
        if fid is None:
            raise CompileError(f"iter:{what} is not available: the kernel's BTF has no "
                               f"bpf_iter_{what}", ap.span)
        btf = indexes[0].btf
        # bpf_iter_<name>(meta, task, ...): the context struct bpf_iter__<name>, one u64 slot
        # per member
        fields, _ = proto_fields(btf, btf.get(btf.get(fid).proto).params)
        return [Target(self.name, f"iter:{what}", what, share_key=what,
                       args=ArgsT(f"bpf_iter__{what}", fields), btf={"id": fid})]

    def program_attrs(self, target):
        return {"expected_attach_type": BPF_TRACE_ITER, "attach_btf_id": target.btf["id"]}

    def lowering_options(self, target):
        return {"ctx_guard": 8}       # the task (every iterator here has it second)

    def attach(self, target, prog_fd, cookie):
        from ptrace_lang.kernel import tracing

        return [tracing.iter_link(prog_fd)]


register(Iter())
