"""Signal names and numbers (x86-64 numbering): the names ``signal()`` accepts and
``signal_name()`` prints. Plain data, shared by the compiler (sema, codegen) and the runtime."""
from __future__ import annotations

SIGNALS = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGIOT": 6,
    "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12,
    "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGSTKFLT": 16, "SIGCHLD": 17, "SIGCONT": 18,
    "SIGSTOP": 19, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22, "SIGURG": 23, "SIGXCPU": 24,
    "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27, "SIGWINCH": 28, "SIGIO": 29, "SIGPOLL": 29,
    "SIGPWR": 30, "SIGSYS": 31,
}

# What signal_name(n) prints (bpftrace 0.26: strsignal(3)'s descriptions, glibc's words): the
# number taken as an int32; 34..64 the real-time signals counted from SIGRTMIN; "N/A" for a
# number below 0 or above 64.
SIGNAL_TEXTS = (
    "Unknown signal 0", "Hangup", "Interrupt", "Quit", "Illegal instruction",
    "Trace/breakpoint trap", "Aborted", "Bus error", "Floating point exception", "Killed",
    "User defined signal 1", "Segmentation fault", "User defined signal 2", "Broken pipe",
    "Alarm clock", "Terminated", "Stack fault", "Child exited", "Continued", "Stopped (signal)",
    "Stopped", "Stopped (tty input)", "Stopped (tty output)", "Urgent I/O condition",
    "CPU time limit exceeded", "File size limit exceeded", "Virtual timer expired",
    "Profiling timer expired", "Window changed", "I/O possible", "Power failure",
    "Bad system call", "Unknown signal 32", "Unknown signal 33",
) + tuple(f"Real-time signal {i}" for i in range(31))


# the size of signal_name()'s string value (the longest text and its NUL)
SIGNAL_TEXT_SIZE = max(len(t) for t in SIGNAL_TEXTS) + 1
# SIGNAL_TEXTS[REALTIME_FIRST + k] is "Real-time signal k" (k < 31): written from k's digits
REALTIME_FIRST = 34
REALTIME_PREFIX = "Real-time signal "


def signal_text(n: int) -> str:
    """signal_name(n)'s text for the 64-bit value ``n``."""
    n &= 0xFFFFFFFF
    if n >= 1 << 31:
        n -= 1 << 32
    return SIGNAL_TEXTS[n] if 0 <= n < len(SIGNAL_TEXTS) else "N/A"

# SIGUSR1s that reached the command before its session took the signal over (cli.main's early
# handler): the session acts on them once running, as on one received then.
PENDING_USR1: list = []
