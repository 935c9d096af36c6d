#!/usr/bin/env python3
"""The second-kernel tier: boot Debian's linux-image 6.1 under qemu and run tests/vm/guest_batch.py.

The development kernel has no kprobes; Debian 6.1's has kprobes, kretprobes, fentry/fexit and
BTF. This boots it in software emulation (TCG) with the host's ``/`` shared read-only over 9p
(the very same Python, packages and checkout), a tmpfs overlay for writes, and runs the whole
batch of checks in ONE boot (see docs/vm.md and ../shared/reference/kernel-vm.md).

    tests/vm/run_vm.py --setup     install qemu-system-x86 and busybox-static (apt), download and
                                   unpack the newest linux-image-6.1.0-N-amd64 into the cache
    tests/vm/run_vm.py --status    say whether the tier can run here, and why not
    tests/vm/run_vm.py             boot once, run the batch, print the console and a summary
    tests/vm/run_vm.py -k NAME     only the checks whose name contains NAME

Only ``--setup`` installs or downloads anything; the tests (tests/vm/test_vm.py) never do.
Cache: $PTRACE_VM_CACHE, else /var/cache/ptrace-vm (root) or ~/.cache/ptrace-lang/vm.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))       # the checkout the guest runs

APT_PACKAGES = ("qemu-system-x86", "busybox-static", "cpio")
# for the tools' checks (tests/vm/guest_tools.py): mkfs.xfs makes an XFS file system for xfsdist;
# installed by --setup when missing, the checks make do without it
OPTIONAL_PACKAGES = {"xfsprogs": "mkfs.xfs"}
QEMU = "qemu-system-x86_64"
# loaded in this order by the initramfs (virtio PCI transport, 9p over virtio, overlayfs)
MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
           "netfs", "fscache", "9pnet", "9pnet_virtio", "9p", "overlay")
# loaded after those when the kernel package has them (the tools' checks need them: loop devices
# for swap, md and XFS; crc32c for libcrc32c, which xfs needs; md with its linear personality)
EXTRA_MODULES = ("loop", "crc32c_generic", "libcrc32c", "xfs", "md_mod", "linear")
KERNEL_PACKAGE_RE = re.compile(r"^linux-image-(6\.1\.0-(\d+)-amd64)$")
BOOT_TIMEOUT = 600           # seconds for one whole boot + batch + power-off (~3.5 min; more on busy CPUs)
MARK = "PTRACE-VM"


def log(msg: str) -> None:
    print(f"run_vm: {msg}", file=sys.stderr, flush=True)


def loud(msg: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\nrun_vm: {msg}\n{bar}\n", file=sys.stderr, flush=True)


def cache_dir() -> str:
    if os.environ.get("PTRACE_VM_CACHE"):
        return os.environ["PTRACE_VM_CACHE"]
    if os.geteuid() == 0:
        return "/var/cache/ptrace-vm"
    return os.path.join(os.path.expanduser("~"), ".cache", "ptrace-lang", "vm")


def kernel_dir() -> str:
    return os.path.join(cache_dir(), "kernel")


def manifest() -> dict | None:
    try:
        with open(os.path.join(kernel_dir(), "manifest.json")) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    files = [m.get("vmlinuz", "")] + [os.path.join(kernel_dir(), "modules", f"{n}.ko")
                                      for n in cached_modules(m)]
    return m if all(os.path.isfile(f) for f in files) else None


def cached_modules(m: dict | None) -> list[str]:
    """The MODULES the cached kernel has as modules, in load order (a newer kernel, e.g. a
    6.12 one in another PTRACE_VM_CACHE, has some of them built in, and fscache inside netfs)."""
    return list((m or {}).get("modules", MODULES))


# ------------------------------------------------------------------------------------------
# setup (the only part that installs or downloads)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, **kw)


def is_static_elf(path: str) -> bool:
    """An ELF executable without a PT_INTERP program header (runs without a loader)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return False
            phoff = int.from_bytes(head[0x20:0x28], "little")
            phentsize = int.from_bytes(head[0x36:0x38], "little")
            phnum = int.from_bytes(head[0x38:0x3A], "little")
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return not any(int.from_bytes(table[i:i + 4], "little") == 3
                   for i in range(0, len(table), phentsize))


def find_busybox() -> str | None:
    for p in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox") or ""):
        if p and is_static_elf(p):
            return p
    return None


def install_packages() -> bool:
    if shutil.which(QEMU) and find_busybox():
        log(f"{QEMU} and a static busybox are installed")
        return True
    if os.geteuid() != 0:
        loud("setup needs root to install " + " ".join(APT_PACKAGES))
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = _run(["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES], env=env)
    if r.returncode != 0:
        log("apt-get install failed; updating the package lists and trying again")
        _run(["apt-get", "update"], env=env)
        r = _run(["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES], env=env)
    ok = r.returncode == 0 and shutil.which(QEMU) and find_busybox()
    if not ok:
        loud("could not install " + " ".join(APT_PACKAGES) + " (apt-get exit status "
             f"{r.returncode}): the VM tier will be skipped")
    return bool(ok)


def install_optional_packages() -> None:
    """Packages some checks use when present (a failure only leaves those checks with less)."""
    missing = [pkg for pkg, cmd in OPTIONAL_PACKAGES.items() if not shutil.which(cmd)]
    if not missing or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = _run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)
    if r.returncode != 0:
        log(f"could not install {' '.join(missing)} (optional: the checks that use them do less)")


def kernel_candidates() -> list[str]:
    """linux-image-6.1.0-N-amd64 packages apt can fetch, newest first."""
    try:
        out = subprocess.run(["apt-cache", "pkgnames", "linux-image-6.1.0-"], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    names = [(int(m.group(2)), m.group(0)) for m in map(KERNEL_PACKAGE_RE.match, out.split()) if m]
    out = []
    for _, name in sorted(names, reverse=True):
        pol = subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True).stdout
        m = re.search(r"Candidate:\s*(\S+)", pol)
        if m and m.group(1) != "(none)":
            out.append(name)
    return out


def fetch_kernel(deb: str | None = None) -> bool:
    if deb is None and manifest() is not None:
        if manifest().get("extra_wanted") == list(EXTRA_MODULES):
            log(f"kernel already cached: {manifest()['package']} in {kernel_dir()}")
            return True
        log(f"kernel cached without the extra modules ({', '.join(EXTRA_MODULES)}): fetching again")
    os.makedirs(cache_dir(), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="dl-") as tmp:
        if deb is None:
            cands = kernel_candidates()
            if not cands and os.geteuid() == 0:
                _run(["apt-get", "update"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
                cands = kernel_candidates()
            if not cands:
                loud("no linux-image-6.1.0-N-amd64 package is known to apt (Debian 12's main "
                     "archive carries them): the VM tier will be skipped")
                return False
            os.chmod(tmp, 0o755)      # (apt downloads as root, unsandboxed, with a notice)
            for name in cands[:3]:
                r = _run(["apt-get", "download", name], cwd=tmp)
                debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
                if r.returncode == 0 and debs:
                    deb = os.path.join(tmp, debs[0])
                    break
            else:
                loud(f"could not download any of {', '.join(cands[:3])}: the VM tier will be skipped")
                return False
        unpacked = os.path.join(tmp, "x")
        r = _run(["dpkg-deb", "-x", deb, unpacked])
        if r.returncode != 0:
            loud(f"dpkg-deb -x {deb} failed: the VM tier will be skipped")
            return False
        return _install_kernel(deb, unpacked)


def _install_kernel(deb: str, unpacked: str) -> bool:
    boot = os.path.join(unpacked, "boot")
    vmlinuz = sorted(f for f in os.listdir(boot) if f.startswith("vmlinuz-")) if os.path.isdir(boot) else []
    mods_root = os.path.join(unpacked, "lib", "modules")
    releases = os.listdir(mods_root) if os.path.isdir(mods_root) else []
    if not vmlinuz or len(releases) != 1:
        loud(f"{deb} has no boot/vmlinuz-* or lib/modules/<release>: not a kernel image package")
        return False
    release = releases[0]
    found = {}
    for dirpath, _, files in os.walk(os.path.join(mods_root, release)):
        for f in files:
            for suffix in (".ko", ".ko.xz", ".ko.zst"):
                name = f[:-len(suffix)].replace("-", "_")     # md-mod.ko is md_mod
                if f.endswith(suffix) and name in MODULES + EXTRA_MODULES:
                    found[name] = os.path.join(dirpath, f)
    try:
        with open(os.path.join(mods_root, release, "modules.builtin")) as f:
            builtin = {os.path.basename(line.strip()).split(".ko")[0] for line in f}
    except OSError:
        builtin = set()
    merged = {"fscache"} if "netfs" in found else set()     # (6.12: fscache lives in netfs)
    missing = [m for m in MODULES if m not in found and m not in builtin and m not in merged]
    if missing:
        loud(f"{deb} lacks the modules {', '.join(missing)}: the VM tier will be skipped")
        return False
    new = kernel_dir() + ".new"
    shutil.rmtree(new, ignore_errors=True)
    os.makedirs(os.path.join(new, "modules"))
    shutil.copy(os.path.join(boot, vmlinuz[-1]), os.path.join(new, "vmlinuz"))
    config = [f for f in os.listdir(boot) if f.startswith("config-")]
    if config:
        shutil.copy(os.path.join(boot, config[0]), os.path.join(new, "config"))
    for name, path in found.items():
        dest = os.path.join(new, "modules", f"{name}.ko")
        if path.endswith(".xz"):
            import lzma
            with lzma.open(path) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        elif path.endswith(".zst"):
            r = subprocess.run(["zstd", "-dqf", path, "-o", dest])
            if r.returncode != 0:
                loud(f"cannot decompress {path} (zstd): the VM tier will be skipped")
                return False
        else:
            shutil.copy(path, dest)
    m = {"package": os.path.basename(deb), "release": release,
         "modules": [n for n in MODULES if n in found],
         "extra_modules": [n for n in EXTRA_MODULES if n in found], "extra_wanted": list(EXTRA_MODULES),
         "vmlinuz": os.path.join(kernel_dir(), "vmlinuz"), "fetched": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(os.path.join(new, "manifest.json"), "w") as f:
        json.dump(m, f, indent=1)
    shutil.rmtree(kernel_dir(), ignore_errors=True)
    os.rename(new, kernel_dir())
    log(f"kernel {release} ({m['package']}) cached in {kernel_dir()}")
    return True


def setup(deb: str | None = None) -> int:
    t0 = time.monotonic()
    ok_pkgs = install_packages()
    install_optional_packages()
    ok_kernel = fetch_kernel(deb)
    reason = unavailable()
    if reason:
        loud(f"VM tier setup incomplete: {reason}")
        return 1
    log(f"VM tier ready ({time.monotonic() - t0:.1f}s): {manifest()['release']}, "
        f"cache {cache_dir()}")
    return 0 if ok_pkgs and ok_kernel else 1


def unavailable() -> str | None:
    """Why the VM tier cannot run here (None: it can)."""
    if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
        return "the VM tier boots an x86-64 Debian kernel; this is not an x86-64 Linux machine"
    if not shutil.which(QEMU):
        return f"{QEMU} is not installed (tests/vm/run_vm.py --setup installs qemu-system-x86)"
    if not find_busybox():
        return "no static busybox (tests/vm/run_vm.py --setup installs busybox-static)"
    if manifest() is None:
        return (f"no Debian 6.1 kernel in {kernel_dir()} (tests/vm/run_vm.py --setup downloads "
                "linux-image-6.1.0-N-amd64; it failed or was not run)")
    return None


# ------------------------------------------------------------------------------------------
# the initramfs


def _cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 0, rdev=(0, 0)) -> bytes:
    nb = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0]
    head = b"070701" + b"".join(b"%08X" % v for v in fields) + nb
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def cpio_newc(entries: list[tuple]) -> bytes:
    """A newc archive of (name, mode, data[, (rdev major, minor)]) entries."""
    out = [_cpio_entry(e[0], e[1], e[2], i + 1, e[3] if len(e) > 3 else (0, 0))
           for i, e in enumerate(entries)]
    out.append(_cpio_entry("TRAILER!!!", 0))
    return b"".join(out)


INIT = r"""#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /hostroot /rw /newroot
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
echo "@MARK@: init: kernel $($B uname -r), $($B nproc) cpus, uptime $($B cut -d' ' -f1 /proc/uptime)s"
for m in @MODULES@; do
    $B insmod /modules/$m.ko || echo "@MARK@: insmod $m failed"
done
for m in @EXTRA_MODULES@; do
    $B insmod /modules/$m.ko || echo "@MARK@: insmod $m failed (extra module)"
done
if ! $B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /hostroot; then
    $B mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /hostroot ||
        echo "@MARK@: cannot mount the host's / (9p)"
fi
$B mount -t tmpfs -o size=1g tmpfs /rw
$B mkdir -p /rw/upper /rw/work
$B mount -t overlay overlay -o lowerdir=/hostroot,upperdir=/rw/upper,workdir=/rw/work /newroot ||
    echo "@MARK@: cannot mount the overlay"
for d in proc sys dev; do $B mount -o move /$d /newroot/$d; done
$B mkdir -p /newroot/vmresults
$B mount -t 9p -o trans=virtio,version=9p2000.L results /newroot/vmresults ||
    echo "@MARK@: no results share (results only on the console)"
$B cp /batch.sh /newroot/ptrace-vm-batch.sh
echo "@MARK@: root ready, uptime $($B cut -d' ' -f1 /newroot/proc/uptime)s"
$B chroot /newroot /bin/sh /ptrace-vm-batch.sh
echo "@MARK@: batch exit status $?"
$B sync
echo "@MARK@: power off, uptime $($B cut -d' ' -f1 /newroot/proc/uptime)s"
$B poweroff -f
echo o > /newroot/proc/sysrq-trigger
"""

BATCH = r"""
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t tracefs nodev /sys/kernel/tracing || echo "@MARK@: cannot mount tracefs"
mount -t debugfs nodev /sys/kernel/debug 2>/dev/null
ulimit -n 65536 2>/dev/null
cd @ROOT@ || exit 99
export PYTHONPATH=@ROOT@ PTRACE_NO_CACHE=1 PY=@PY@
@COMMAND@
echo "@MARK@: guest command exit status $?"
"""
GUEST_BATCH = "@PY@ @ROOT@/tests/vm/guest_batch.py --python @PY@ --out /vmresults/results.json @ARGS@"


def _q(s: str) -> str:
    import shlex
    return shlex.quote(s)


def build_initramfs(path: str, python: str, batch_args: list[str], command: str | None = None) -> None:
    kd = kernel_dir()
    busybox = find_busybox()
    with open(busybox, "rb") as f:
        bb = f.read()
    mods = cached_modules(manifest())
    extra = [n for n in EXTRA_MODULES if os.path.isfile(os.path.join(kd, "modules", f"{n}.ko"))]
    init = (INIT.replace("@MARK@", MARK).replace("@MODULES@", " ".join(mods))
            .replace("@EXTRA_MODULES@", " ".join(extra)))
    batch = (BATCH.replace("@COMMAND@", command or GUEST_BATCH).replace("@MARK@", MARK).replace("@ROOT@", _q(ROOT)).replace("@PY@", _q(python))
             .replace("@ARGS@", " ".join(map(_q, batch_args))))
    entries = [("bin", 0o40755, b""), ("dev", 0o40755, b""), ("modules", 0o40755, b""),
               ("dev/console", 0o20600, b"", (5, 1)), ("bin/busybox", 0o100755, bb),
               ("bin/sh", 0o120777, b"busybox"), ("init", 0o100755, init.encode()),
               ("batch.sh", 0o100644, batch.encode())]
    for m in mods + extra:
        with open(os.path.join(kd, "modules", f"{m}.ko"), "rb") as f:
            entries.append((f"modules/{m}.ko", 0o100644, f.read()))
    with open(path, "wb") as f:
        f.write(cpio_newc(entries))


# ------------------------------------------------------------------------------------------
# one boot


def _die_with_parent() -> None:
    """(in the qemu child) SIGKILL when the process that started qemu dies."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)      # PR_SET_PDEATHSIG


def died_before_init(console: str) -> bool:
    """True when the guest kernel panicked before the initramfs's init printed its first line
    (nothing of ours ran: a retry is fair)."""
    return f"{MARK}: init:" not in console and "Kernel panic" in console


def boot(python: str = sys.executable, batch_args: list[str] | None = None,
         timeout: float = BOOT_TIMEOUT, echo: bool = False, command: str | None = None) -> dict:
    """Boot the guest once and run the batch. Returns {"console", "results" (guest_batch's JSON
    or None), "qemu_rc", "boot_secs", "timed_out", "kernel"}."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    m = manifest()
    with tempfile.TemporaryDirectory(prefix="ptrace-vm-") as tmp:
        initrd = os.path.join(tmp, "initramfs.cpio")
        build_initramfs(initrd, python, batch_args or [], command)
        results_dir = os.path.join(tmp, "results")
        os.mkdir(results_dir)
        # thread=single: one host thread runs both vCPUs in turn. Multi-threaded TCG can let a
        # vCPU run a stale translation of kernel text that another vCPU is patching with
        # text_poke_bp (a static key, a kprobe, a BPF trampoline): the guest then dies of an
        # "Oops: int3" (seen once in CI on 6.12, in sched_clock_cpu at boot, on a busy host)
        cmd = [QEMU, "-accel", "tcg,thread=single", "-m", "2048", "-smp", "2", "-nographic", "-no-reboot", "-nodefaults",
               "-serial", "stdio", "-monitor", "none", "-net", "none",
               "-kernel", m["vmlinuz"], "-initrd", initrd,
               "-append", "console=ttyS0 loglevel=1 quiet panic=-1 no_timer_check mitigations=off rdinit=/init",
               "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
               "-virtfs", f"local,path={results_dir},mount_tag=results,security_model=none,multidevs=remap"]
        log(f"booting {m['release']} ({m['package']}) under qemu (TCG): the batch of "
            "tests/vm/guest_batch.py")
        t0 = time.monotonic()
        lines: list[str] = []
        timed_out = False
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        import threading

        def reader():
            for raw in p.stdout:
                line = raw.decode("utf-8", "replace").replace("\r", "")
                lines.append(f"[{time.monotonic() - t0:6.1f}] {line}" if echo else line)
                if echo:
                    sys.stdout.write(lines[-1])
                    sys.stdout.flush()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            p.kill()
            rc = p.wait()
        except BaseException:
            p.kill()
            p.wait()
            raise
        th.join(10)
        secs = time.monotonic() - t0
        results = None
        try:
            with open(os.path.join(results_dir, "results.json")) as f:
                results = json.load(f)
        except (OSError, ValueError):
            pass
    console = "".join(lines)
    if results is None:       # no results share: guest_batch printed them on the console
        for line in console.splitlines():
            i = line.find("PTRACE-VM-JSON ")
            if i >= 0:
                try:
                    results = json.loads(line[i + len("PTRACE-VM-JSON "):])
                except ValueError:
                    pass
    return {"console": console, "results": results, "qemu_rc": rc, "boot_secs": round(secs, 1),
            "timed_out": timed_out, "kernel": m["release"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--setup", action="store_true", help="install qemu/busybox, fetch the kernel")
    ap.add_argument("--deb", help="with --setup: use this linux-image .deb instead of downloading")
    ap.add_argument("--status", action="store_true", help="say whether the tier can run here")
    ap.add_argument("-k", dest="only", help="run only the checks whose name contains this")
    ap.add_argument("--timeout", type=float, default=BOOT_TIMEOUT)
    ap.add_argument("--shell", metavar="CMD", help="run this shell command in the guest instead "
                    "of the batch (in the checkout, PYTHONPATH set, $PY: the interpreter; debugging)")
    a = ap.parse_args()
    if a.setup:
        return setup(a.deb)
    reason = unavailable()
    if a.status:
        print(f"VM tier: {'cannot run: ' + reason if reason else 'ready'} (cache {cache_dir()})")
        return 1 if reason else 0
    if reason:
        loud(f"VM tier cannot run: {reason}")
        return 2
    r = boot(batch_args=["-k", a.only] if a.only else [], timeout=a.timeout, echo=True,
             command=a.shell)
    print(f"\nrun_vm: boot + batch + power-off: {r['boot_secs']}s, qemu exit status {r['qemu_rc']}"
          + (" (TIMED OUT)" if r["timed_out"] else ""))
    res = r["results"]
    if a.shell:
        return 0
    if res is None:
        print("run_vm: no results from the guest (see the console above)")
        return 1
    print(f"run_vm: guest kernel {res['kernel']}, kprobe PMU: {res['kprobe_pmu']}, "
          f"kprobe_multi: {res.get('kprobe_multi', '?')}, "
          f"batch {res['batch_secs']}s")
    for name, c in res["checks"].items():
        print(f"  {name:24} rc={c['rc']}  attach {c['attach_secs']:5.1f}s  total {c['secs']:5.1f}s"
              + (f"  stop {c['stop_secs']:5.2f}s" if "stop_secs" in c else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
