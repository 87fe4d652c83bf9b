"""Run one command and report its wall time, CPU time and peak RSS as JSON.

Usage: ``python _rusage_wrapper.py REPORT.json -- ARGV...``. Run as a fresh process per measurement,
so ``RUSAGE_CHILDREN`` holds exactly this command's process tree (see ``bench/harness.py``).
Kept free of imports from the project so it costs the same for every scenario.
"""

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    report, separator, *argv = sys.argv[1:]
    if separator != "--" or not argv:
        print("usage: _rusage_wrapper.py REPORT.json -- ARGV...", file=sys.stderr)
        return 2
    start = time.perf_counter()
    returncode = subprocess.call(argv)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    # ru_maxrss is KiB on Linux, bytes on macOS.
    maxrss = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    with open(report, "w") as fh:
        json.dump({"returncode": returncode, "wall_s": wall,
                   "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_bytes": maxrss}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
