"""Validate perfsim against this machine: every zoo model and five torchvision networks, with a
profile `perfsim calibrate` wrote, before (peaks only: no efficiency, no overhead) and after.

    perfsim calibrate --threads 1                       # writes hardware_profiles/host.yaml
    python benchmarks/validate_zoo.py --profile hardware_profiles/host.yaml --threads 1

Writes benchmarks/host_validation.md and benchmarks/host_validation.csv (one row per model and variant).
Measure on a quiet machine: the script refuses to start when the load says the numbers would be
the load's (``--force`` to measure anyway, marked in the table).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ZOO = ["mobilenet", "mobilenet_v1", "clcnet_a", "clcnet_b", "clcnet_ap", "condensenet", "condensenext", "fastnet"]
TORCHVISION = ["torchvision:resnet18", "torchvision:mobilenet_v2", "torchvision:mobilenet_v3_large",
               "torchvision:efficientnet_b0", "torchvision:shufflenet_v2_x1_0"]
BEFORE = ("efficiency={}", "kernel_overhead={}")  # today's model on the calibrated peaks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="hardware_profiles/host.yaml")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--models", nargs="*", default=ZOO + TORCHVISION)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "host_validation" / "latest"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)

    import multiprocessing

    import pandas as pd

    from perfsim.host.measure import busy_warning
    rows = []
    # each validation in a fresh process, as `perfsim validate` runs: in one process that had measured
    # other networks before, the same network measured 4-7 % slower (docs/hardware.md)
    spawn = multiprocessing.get_context("spawn")
    for model in args.models:
        for variant, overrides in (("before", BEFORE), ("after", ())):
            warning = busy_warning(args.threads or os.cpu_count() or 1)
            if warning and not args.force:
                print(f"refusing to measure: {warning}", file=sys.stderr)
                return 2
            t0 = time.perf_counter()
            with spawn.Pool(1) as pool:
                row = pool.apply(_one, (model, args.profile, overrides, args.threads, args.repeats))
            rows.append({**row, "variant": variant, "busy": bool(warning), "wall_s": time.perf_counter() - t0})
            r = rows[-1]
            print(f"{r['model']:32} {variant:6} spearman {r['spearman']:.3f} error {r['error']:+.1%} "
                  f"(pred {r['predicted_ms']:.2f} ms, meas {r['measured_ms']:.2f} ms) worst {r['worst_op']} "
                  f"{r['worst_op_error']:+.0%}", file=sys.stderr)
    frame = pd.DataFrame(rows)[["model", "variant", "layers", "spearman", "error", "predicted_ms", "measured_ms",
                                "measured_iqr_ms", "median_abs_row_error", "worst_op", "worst_op_error", "load",
                                "busy", "wall_s"]]
    frame.to_csv(args.out + ".csv", index=False)
    lines = ["| model | layers | Spearman before → after | whole-network error before → after | "
             "measured (IQR) | worst op after (its error) |", "|---|---|---|---|---|---|"]
    for model, g in frame.groupby("model", sort=False):
        b, a = g[g.variant == "before"].iloc[0], g[g.variant == "after"].iloc[0]
        lines.append(f"| {model} | {a.layers} | {b.spearman:.2f} → **{a.spearman:.2f}** | {b.error:+.0%} → "
                     f"**{a.error:+.0%}** | {a.measured_ms:.2f} ms ({a.measured_iqr_ms:.2f}) | "
                     f"{a.worst_op} ({a.worst_op_error:+.0%}) |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


def _one(model: str, profile: str, overrides, threads, repeats) -> dict:
    from perfsim.host.validate import median_abs, validate
    v = validate(model, profile, overrides=overrides, threads=threads, repeats=repeats)
    worst = v.worst_op()
    return {"model": v.model, "layers": len(v.rows), "spearman": v.spearman, "error": v.error,
            "predicted_ms": v.predicted_s * 1e3, "measured_ms": v.measured_s * 1e3,
            "measured_iqr_ms": (v.measured_q3_s - v.measured_q1_s) * 1e3,
            "median_abs_row_error": median_abs([r.error for r in v.rows]), "worst_op": worst["op"],
            "worst_op_error": worst["error"], "load": v.load_before[0]}


if __name__ == "__main__":
    sys.exit(main())
