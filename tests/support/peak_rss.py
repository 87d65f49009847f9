"""Runs a command and writes its own peak resident memory (KiB) to the file named first.

Why not `wait4` from the test itself: on Linux a process started with vfork/posix_spawn (as
Rust's `Command` does) begins with its parent's high-water mark in `ru_maxrss`, and a test
process that has run other tests can hold a GiB. Started from this small process, the child's
figure is its own. Usage: peak_rss.py OUT_FILE PROGRAM [ARGS...]
"""

import os
import sys

out, argv = sys.argv[1], sys.argv[2:]
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
