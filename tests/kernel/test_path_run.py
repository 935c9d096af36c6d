"""path(): the full path of a struct path, by bpf_d_path, in an iter:task_file probe (the
kernel allows the helper there and in allow-listed fentry/fexit functions)."""
from __future__ import annotations

import os
import tempfile

from runner import run


def test_path_of_every_open_file_of_a_process():
    d = tempfile.mkdtemp(prefix="ptrace-path-")
    name = os.path.join(d, "some-file.txt")
    with open(name, "w") as f:
        r = run("-e", 'iter:task_file /ctx->task->pid == $1/ '
                      '{ printf("%d %s\\n", ctx->fd, path(&ctx->file->f_path, 256)); }',
                str(os.getpid()))
        assert r.rc == 0, r.err
        lines = dict(line.split(" ", 1) for line in r.out.splitlines() if " " in line)
        assert lines.get(str(f.fileno())) == name, r.out
        assert "WARNING" not in r.err, r.err
    os.unlink(name)
    os.rmdir(d)
