"""Re-capture the golden outputs: `sudo python3 capture.py [name ...]` (needs bpftrace 0.17).

Each NAME.bt is run as `bpftrace NAME.bt` (`bpftrace -f json NAME.bt` for json_*) and its
stdout, byte for byte, is stored in NAME.out; with a NAME.cmd next to it, its line is passed
as `-c CMD` (stack_keys: its user-space addresses change from run to run, so after a re-capture
the frames in test_format.py must be updated). The tests rebuild the same maps by hand and
compare ptrace_lang's rendering (stats_style="old", the 0.17 flavour) with these files.
"""
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def capture(bt: pathlib.Path) -> None:
    cmd = ["bpftrace"] + (["-f", "json"] if bt.stem.startswith("json") else [])
    child = bt.with_suffix(".cmd")
    if child.exists():
        cmd += ["-c", child.read_text().strip()]
    cmd.append(str(bt))
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60, check=True).stdout
    bt.with_suffix(".out").write_bytes(out)
    print(f"{bt.stem}: {len(out)} bytes")


if __name__ == "__main__":
    names = sys.argv[1:]
    for path in sorted(HERE.glob("*.bt")):
        if not names or path.stem in names:
            capture(path)
