"""Run times of `perfsim calibrate` (quick and full) and `perfsim validate` (a benchmark, not a test).

    python benchmarks/hardware_times.py [--repeats 3] [--threads 1]

Each command runs as a fresh process (torch's import included, as a user sees it); the script
prints the median and the range of the wall times, and the machine's load before each run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _timed(cmd: list[str], cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    exe = [sys.executable, "-m", "perfsim.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        profile = os.path.join(tmp, "hardware_profiles", "host.yaml")
        t = str(args.threads)
        jobs = [
            ("calibrate --quick", exe + ["calibrate", "--quick", "--quiet", "--threads", t, "--out", profile]),
            ("calibrate", exe + ["calibrate", "--quiet", "--threads", t, "--out", profile]),
            ("validate mobilenet", exe + ["validate", "mobilenet", "--profile", profile, "--no-plots",
                                          "--out", os.path.join(tmp, "v")]),
            ("validate mobilenet_v1", exe + ["validate", "mobilenet_v1", "--profile", profile, "--no-plots",
                                             "--out", os.path.join(tmp, "v1")]),
            # the "validate of a 100 ms network under 30 s" (ResNet-50: ~100-150 ms a forward here)
            ("validate resnet50", exe + ["validate", "torchvision:resnet50", "--profile", profile, "--no-plots",
                                         "--out", os.path.join(tmp, "r50")]),
        ]
        print(f"{'command':24} {'median':>8} {'min':>8} {'max':>8}  load before")
        for name, cmd in jobs:
            times, loads = [], []
            for _ in range(args.repeats):
                loads.append(os.getloadavg()[0])
                times.append(_timed(cmd, tmp))
            print(f"{name:24} {statistics.median(times):>7.1f}s {min(times):>7.1f}s {max(times):>7.1f}s  "
                  f"{', '.join(f'{x:.1f}' for x in loads)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
