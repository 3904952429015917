"""Grouped convs over a grid, on this CPU: what a grouped-conv model must follow (docs/hardware.md).

    python benchmarks/grouped_grid.py [--out benchmarks/host_validation/grouped_grid.csv]

Kernel 1 or 3; 2-32 channels read and written per group; 4 or 32 groups at 7x7, 14x14, 28x28; one thread,
PyTorch eager float32, the median of 11 samples of >= 2 ms each after a 20 ms warm-up. 300 shapes, ~15 s.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path


def _median_s(module, x, samples: int = 11) -> float:
    import torch

    from perfsim.host.calibrate import _time  # the peaks' loop timer: a sample is the mean of calls lasting >= 2 ms
    with torch.no_grad():
        return _time(lambda: module(x), samples, 0.002).median_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "host_validation" / "grouped_grid.csv"))
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    rows = []
    for k in (1, 3):
        for cin in (2, 4, 8, 16, 32):
            for cout in (2, 4, 8, 16, 32):
                for groups in (4, 32):
                    for side in (7, 14, 28):
                        m = torch.nn.Conv2d(cin * groups, cout * groups, k, padding=k // 2, groups=groups,
                                            bias=False).eval()
                        s = _median_s(m, torch.randn(1, cin * groups, side, side))
                        rows.append({"kernel": k, "in_per_group": cin, "out_per_group": cout, "groups": groups,
                                     "side": side, "seconds": f"{s:.4g}"})
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} shapes -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
