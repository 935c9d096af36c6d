"""The classic kprobe-based tools (tools/*.bt) in the guest: one check per tool, appended to
guest_batch.CHECKS. Each check runs the tool as a user would, with a workload that makes it
print something real; tests/vm/test_vm_tools.py judges the output on the host.

The workloads are shell scripts run after the tool attached (held, then released like every
workload of the batch: the pid stays the same through the ``exec``s, so the host can look for
it in the output). What they need that a fresh guest lacks they set up themselves: the loopback
interface up, the cgroup2 file system mounted, a loop device, swap on it, an md array, an XFS
file system (when the host has mkfs.xfs: the guest runs the host's programs).
"""
from __future__ import annotations



def loop(size: str, img: str) -> str:
    """Shell lines: a loop device backed by a file on the guest's tmpfs, its path in $L."""
    return f"truncate -s {size} {img}\nL=$(losetup -f --show {img})\n"


SH = ["sh", "-c"]


def sh(script: str) -> list[str]:
    return SH + ["set -e\n" + script]


# -------------------------------------------------------------------- the workloads

DD = ["dd", "if=/dev/zero", "of=/dev/null", "bs=4567", "count=7"]

# dd's 7 reads and writes, then a pause so that vfsstat's per-second print comes after them
DD_PAUSE = sh("dd if=/dev/zero of=/dev/null bs=4567 count=7 2>/dev/null\nsleep 1.3")

# swap on a loop device; a process in a memory cgroup of 24 MiB writes 48 MiB of its own
# anonymous memory (the kernel swaps out what does not fit), then reads it all back: swap-ins
CGROUP = """grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
"""
SWAP = sh(f"""
{loop("96M", "/tmp/ptrace-swap.img")}mkswap "$L" >/dev/null
swapon "$L"
{CGROUP}mkdir -p /sys/fs/cgroup/ptrace-swap
echo 24M > /sys/fs/cgroup/ptrace-swap/memory.max
echo $$ > /sys/fs/cgroup/ptrace-swap/cgroup.procs
exec python3 -c '
import mmap
n, chunk = 48 << 20, b"x" * (1 << 20)
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE)
for i in range(0, n, len(chunk)):
    m[i:i + len(chunk)] = chunk
assert m[::4096] == b"x" * (n // 4096)
'
""")

# dd in a memory cgroup of 32 MiB without swap asks for a 64 MiB buffer: the OOM killer kills it
OOM = sh(f"""
{CGROUP}mkdir -p /sys/fs/cgroup/ptrace-oom
echo 32M > /sys/fs/cgroup/ptrace-oom/memory.max
echo 0 > /sys/fs/cgroup/ptrace-oom/memory.swap.max
echo $$ > /sys/fs/cgroup/ptrace-oom/cgroup.procs
exec dd if=/dev/zero of=/dev/null bs=64M count=1
""")

# 32 direct 4 KiB writes to a loop device: 32 requests through blk-mq
BIO = sh(f"""
{loop("8M", "/tmp/ptrace-bio.img")}exec dd if=/dev/zero of="$L" bs=4k count=32 oflag=direct
""")

# an md array (linear, one loop device, no superblock: set up through sysfs, no mdadm needed),
# then a write and fsync on it: the flush reaches md_flush_request()
MD = sh(f"""
{loop("16M", "/tmp/ptrace-md.img")}echo md99 > /sys/module/md_mod/parameters/new_array
cd /sys/block/md99/md
echo none > metadata_version
echo linear > level
echo 1 > raid_disks
cat /sys/block/${{L#/dev/}}/dev > new_dev
echo 0 > dev-${{L#/dev/}}/slot
echo 16384 > dev-${{L#/dev/}}/size
echo active > array_state
cd /
exec dd if=/dev/zero of=/dev/md99 bs=4k count=1 conv=fsync
""")

# an XFS file system on a loop device: open, write, fsync, read (mkfs.xfs from the host's
# xfsprogs; without it the tool is only attached)
XFS = sh("""
if ! command -v mkfs.xfs >/dev/null; then echo "mkfs.xfs:" "not found"; exit 0; fi
truncate -s 300M /tmp/ptrace-xfs.img
mkfs.xfs -q /tmp/ptrace-xfs.img
mkdir -p /mnt/ptrace-xfs
mount -o loop /tmp/ptrace-xfs.img /mnt/ptrace-xfs
dd if=/dev/zero of=/mnt/ptrace-xfs/f bs=4k count=8 conv=fsync 2>/dev/null
exec cat /mnt/ptrace-xfs/f > /dev/null
""")

# a new name created under /tmp: lookup_fast() finds "tmp" in the dcache, d_lookup() misses the
# new name
DCACHE = ["touch", "/tmp/ptrace-dcsnoop-new"]

# capable(CAP_SYS_CHROOT)
CHROOT = ["chroot", "/", "/bin/true"]

# TCP over loopback, printing the ports: a connection that sends 300000 bytes and gets 100000
# back, then closes; a listener with a full accept queue (backlog 0, one connection queued)
# drops the SYN of a second connection, which is sent again after the 1 s initial RTO
TCP = sh("""
ip link set lo up
exec python3 -c '
import socket, time
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(4)
c = socket.create_connection(srv.getsockname())
s, _ = srv.accept()
print("server", srv.getsockname()[1], "client", c.getsockname()[1], flush=True)
c.sendall(b"x" * 300000)
got = 0
while got < 300000:
    got += len(s.recv(65536))
s.sendall(b"y" * 100000)
got = 0
while got < 100000:
    got += len(c.recv(65536))
c.close()
s.close()
srv.close()
full = socket.socket()
full.bind(("127.0.0.1", 0))
full.listen(0)
a = socket.create_connection(full.getsockname())
b = socket.socket()
b.setblocking(False)
b.connect_ex(full.getsockname())
print("full", full.getsockname()[1], "queued", a.getsockname()[1], "dropped", b.getsockname()[1],
      flush=True)
time.sleep(1.6)
'
""")

# unix stream socket data: the receiver reads "ptrace-undump\\n"
UNIX = ["python3", "-c", "import socket\na, b = socket.socketpair()\n"
        "a.sendall(b'ptrace-undump\\n')\nassert b.recv(100) == b'ptrace-undump\\n'\n"]


# /proc/loadavg before and after two of loads' per-second lines
LOADAVG = sh("cat /proc/loadavg\nsleep 2.2\ncat /proc/loadavg")


def tool(name: str) -> list[str]:
    return [f"tools/{name}.bt"]


TOOL_CHECKS = [
    ("tool_vfscount", tool("vfscount"), [DD]),
    ("tool_vfsstat", tool("vfsstat"), [DD_PAUSE]),
    ("tool_capable", tool("capable"), [CHROOT]),
    ("tool_swapin", tool("swapin"), [SWAP]),
    ("tool_oomkill", tool("oomkill"), [OOM]),
    ("tool_biolatency_kp", tool("biolatency-kp"), [BIO]),
    ("tool_mdflush", tool("mdflush"), [MD]),
    ("tool_xfsdist", tool("xfsdist"), [XFS]),
    ("tool_dcsnoop", tool("dcsnoop"), [DCACHE]),
    ("tool_tcpconnect", tool("tcpconnect"), [TCP]),
    ("tool_tcpaccept", tool("tcpaccept"), [TCP]),
    ("tool_tcplife", tool("tcplife"), [TCP]),
    ("tool_tcpretrans", tool("tcpretrans"), [TCP]),
    ("tool_tcpsynbl", tool("tcpsynbl"), [TCP]),
    ("tool_undump", tool("undump"), [UNIX]),
    # not a kprobe tool, but kaddr("avenrun") needs a data symbol in /proc/kallsyms
    # (CONFIG_KALLSYMS_ALL), which the development kernel lacks and Debian's has
    ("tool_loads", tool("loads"), [LOADAVG]),
]
