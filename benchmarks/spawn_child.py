"""Tiny launcher: run a command as its child and record that child's wall time and rusage."""

# Usage: python -I -S spawn_child.py RESULT_FILE -- COMMAND [ARGS...]
#
# Why a separate launcher: at exec the kernel folds the old address space's RSS high-water
# mark into the new program's ru_maxrss. A child forked straight from the harness therefore
# reports at least the harness's own peak RSS (which grows while it reads large outputs).
# Spawned from this small, fresh process, the command's ru_maxrss floor is this launcher's
# few megabytes instead. Keep it import-light for that reason: os, sys and time only.

import os
import sys
import time


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.stderr.write("usage: spawn_child.py RESULT_FILE -- COMMAND [ARGS...]\n")
        return 2
    result, argv = sys.argv[1], sys.argv[3:]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    with open(result, "w", encoding="ascii") as fh:
        fh.write(
            f"{wall!r} {usage.ru_utime!r} {usage.ru_stime!r} {usage.ru_maxrss} "
            f"{os.waitstatus_to_exitcode(status)}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
