"""ptrace-lang: a bpftrace-dialect tracing language compiled straight to eBPF."""

__version__ = "0.1.0"
