"""Honest generalisation (issue 20): measure networks once, then predict them offline with any profile,
and fit the in-context part of a calibration on some families while validating on the others.

    python benchmarks/holdout.py measure --threads 1 --runs 2       # ~15 min on a quiet machine
    python benchmarks/holdout.py report --profile hardware_profiles/host.yaml --threads 1

``measure`` runs each network in a fresh process (as ``perfsim validate`` does): the module on a seeded
random input, every ATen call timed inside the capture (``perfsim.host.measure.time_module``), the plain
forward timed beside it, ``--runs`` times in separate processes (their spread is the run-to-run spread
of this machine). It stores, per network and run, each call's (target, module path, op) and its median
and quartiles, and the whole forward's, in ``benchmarks/host_validation/measured-<T>t.json.gz``.

``report`` lowers each network on the measured input (the graph perfsim predicts; its calls are the
measured ones, as ``perfsim validate`` lines them up) and
predicts it with the profile: per network its family, the Spearman rank correlation of predicted and
measured time across rows, the whole-network error, and the measured spread (the run-to-run range of the
whole forward, and its quartiles), as calibrated (the profile's own in-context fit on calibrate's
synthetic networks) and **held out**: the in-context fit (``perfsim.host.context``: per label a factor and
an overhead, and ``first_touch``) refitted on the calls of every *other* family's networks, the isolated
micro-benchmark fit (``calibration.fits``) kept, then the family predicted. It writes
``benchmarks/host_validation/holdout-<T>t.md`` and ``.csv``, and says how many numbers the calibration
fits and how many measurements support them.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "host_validation"

# Networks no fit of perfsim's was tuned on but the zoo and the five torchvision networks of runs 1-45,
# by family (a family is held out whole: its members share the kernels that would leak from one to another)
FAMILIES: dict[str, list[str]] = {
    "resnet": ["torchvision:resnet18", "torchvision:resnet50", "torchvision:resnext50_32x4d"],
    "densenet": ["torchvision:densenet121", "condensenet", "condensenext"],
    "mobilenet": ["mobilenet", "mobilenet_v1", "torchvision:mobilenet_v2", "torchvision:mobilenet_v3_large",
                  "torchvision:mnasnet1_0"],
    "efficient": ["torchvision:efficientnet_b0", "torchvision:regnet_y_400mf"],
    "grouped": ["torchvision:shufflenet_v2_x1_0", "clcnet_a", "clcnet_b"],
    "plain": ["fastnet", "torchvision:vgg11", "torchvision:googlenet"],
    "vit": ["torchvision:vit_b_16", "timm:deit_tiny_patch16_224", "timm:vit_small_patch16_224"],
    "hierarchical": ["torchvision:swin_t", "timm:pvt_v2_b0"],
    "hybrid": ["timm:mobilevit_xxs", "torchvision:convnext_tiny", "timm:levit_128s", "timm:efficientformer_l1"],
}
FAMILY_OF = {m: f for f, ms in FAMILIES.items() for m in ms}
INPUT_SHAPE: dict[str, tuple[int, ...]] = {}  # (C, H, W) of a model that needs one (a file.py:factory)
SEED = 0


def _options(model: str):
    from perfsim.frontends.sources import ModelOptions
    return ModelOptions(input_shape=INPUT_SHAPE.get(model))


def _data_file(threads: int) -> Path:
    return HERE / f"measured-{threads}t.json.gz"


# --------------------------------------------------------------------------
# measure
# --------------------------------------------------------------------------


def _measure_one(model: str, threads: int, repeats: int, allocator: str) -> dict:
    """One network in this (fresh) process: its calls and the whole forward, timed as validate times them."""
    from perfsim.frontends.lowering import lower_traced
    from perfsim.frontends.sources import ModelSource, build_module
    from perfsim.host.measure import random_input, time_module
    module, shape, source = build_module(ModelSource.parse(model), _options(model))
    x = random_input((1,) + shape, SEED)
    traced = lower_traced(module, (1,) + shape, name=source.label, input=x)  # as validate: the input timed
    t0 = time.perf_counter()
    times = time_module(module, (1,) + shape, threads=threads, warmup=2, repeats=repeats, allocator=allocator,
                        input=x)
    same = [(c.target, c.path) for c in times.calls] == [(c.target, c.path) for c in traced.calls]
    return {"model": model, "threads": threads, "input_shape": list(shape), "allocator": times.allocator,
            "lines_up": same, "seconds": time.perf_counter() - t0,
            "whole": [times.whole.median_s, times.whole.q1_s, times.whole.q3_s], "probe": times.probe_s,
            "load": [times.load_before[0], times.load_after[0]],
            "subnormal": [list(found) for found in times.subnormal],  # (call, read, written): measure.subnormals
            "calls": [[c.target, c.path, op, s.median_s, s.q1_s, s.q3_s]
                      for c, op, s in zip(times.calls, traced.call_ops if same else [None] * len(times.calls),
                                          times.call_s)]}


def measure(args) -> int:
    import multiprocessing

    from perfsim.host.measure import busy_warning
    path = _data_file(args.threads)
    records = _load(path) if path.exists() and not args.fresh else []
    done = {(r["model"], r["run"]) for r in records}
    spawn = multiprocessing.get_context("spawn")
    models = args.models or list(FAMILY_OF)
    for run in range(args.runs):
        for model in models:
            if (model, run) in done:
                continue
            warning = busy_warning(args.threads)
            if warning and not args.force:
                print(f"refusing to measure: {warning}", file=sys.stderr)
                return 2
            with spawn.Pool(1) as pool:
                rec = pool.apply(_measure_one, (model, args.threads, args.repeats, args.allocator))
            rec.update(run=run, family=FAMILY_OF.get(model, "other"), busy=bool(warning))
            records.append(rec)
            _save(path, records)
            print(f"run {run} {model:36} {rec['whole'][0] * 1e3:8.2f} ms  lines up {rec['lines_up']}  "
                  f"({rec['seconds']:.0f} s)", file=sys.stderr)
    return 0


def _load(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def _save(path: Path, records: list[dict]) -> None:
    from perfsim.files import write_atomic
    write_atomic(path, gzip.compress(json.dumps(records).encode("utf-8"), mtime=0))


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def _traced(model: str):
    from perfsim.frontends.lowering import lower_traced
    from perfsim.frontends.sources import ModelSource, build_module
    from perfsim.host.measure import random_input
    module, shape, source = build_module(ModelSource.parse(model), _options(model))
    return lower_traced(module, (1,) + shape, name=source.label, input=random_input((1,) + shape, SEED))


class Network:
    """A measured network: its graph, and per run each row's measured time (the sum of its calls' medians)."""

    def __init__(self, model: str, records: list[dict]):
        self.model, self.family = model, FAMILY_OF.get(model, records[0]["family"])
        self.traced = _traced(model)
        self.records = [r for r in records if r["lines_up"]]
        self.scale = [1.0] * len(self.records)  # per run, what its times are multiplied by (``at_speed``)
        self.ops = {op.name: op for op in self.traced.graph.ops}
        self.row_of = {name: i for i, layer in enumerate(self.traced.graph.layers) for name in layer.ops}

    @property
    def usable(self) -> bool:
        return bool(self.records) and [c[2] for c in self.records[0]["calls"]] == list(self.traced.call_ops)

    @property
    def has_probe(self) -> bool:
        return all(r.get("probe") for r in self.records)

    def at_speed(self, reference_s: float | None) -> None:
        """Read every run at the speed probe ``reference_s`` (its times x ``reference_s`` / its own probe), as
        calibrate reads its synthetic networks; None: as measured."""
        self.scale = [reference_s / r["probe"] if reference_s else 1.0 for r in self.records]

    def whole(self) -> list[float]:
        return [r["whole"][0] * k for r, k in zip(self.records, self.scale)]

    def call_medians(self) -> list[float]:
        """Each call's median over the runs (the median of the runs' medians)."""
        per_run = [[c[3] * k for c in r["calls"]] for r, k in zip(self.records, self.scale)]
        return [sorted(v)[len(v) // 2] for v in zip(*per_run)]

    def rows_measured(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for (target, path, op, *_), t in zip(self.records[0]["calls"], self.call_medians()):
            if op in self.row_of:
                out[self.row_of[op]] = out.get(self.row_of[op], 0.0) + t
        return out


def predict(net: Network, profile) -> dict:
    from perfsim.host.validate import spearman
    from perfsim.sim.simulator import simulate
    result = simulate(net.traced.graph, profile)
    measured = net.rows_measured()
    rows = sorted(measured)
    whole = net.whole()
    mid = sorted(whole)[len(whole) // 2]
    q1 = sorted(r["whole"][1] * k for r, k in zip(net.records, net.scale))[len(net.records) // 2]
    q3 = sorted(r["whole"][2] * k for r, k in zip(net.records, net.scale))[len(net.records) // 2]
    error = (result.latency_s - mid) / mid
    spread = (max(whole) - min(whole)) / mid if len(whole) > 1 else math.nan
    return {"model": net.model, "family": net.family, "rows": len(rows),
            "spearman": spearman([result.rows[i].t_total_s for i in rows], [measured[i] for i in rows]),
            "error": error, "predicted_ms": result.latency_s * 1e3, "measured_ms": mid * 1e3,
            "runs": len(whole), "run_spread": spread, "iqr": (q3 - q1) / mid,
            "within_spread": abs(error) <= max(spread if not math.isnan(spread) else 0.0, (q3 - q1) / mid)}


def context_calls(nets: list[Network], isolated) -> dict:
    """Every call of ``nets`` as ``perfsim.host.context`` samples the synthetic networks' calls."""
    from math import prod

    from perfsim.host.context import ContextCall, _label, _predicted
    from perfsim.sim.simulator import simulate
    out: dict = {}
    for net in nets:
        rows = simulate(net.traced.graph, isolated).rows
        for (target, path, op_name, *_), t in zip(net.records[0]["calls"], net.call_medians()):
            op = net.ops.get(op_name) if op_name else None
            if op is None or op_name not in net.row_of or t <= 0:
                continue
            label, tiled = _label(op, isolated), rows[net.row_of[op_name]].tiles > 1
            out_bytes = -(-prod(op.out_shape) * isolated.formats.activation_bits // 8)
            area = op.kernel[0] * op.kernel[1] if op.kernel else 0
            out.setdefault((label, tiled), []).append(ContextCall(t, *_predicted(op, label, isolated, tiled),
                                                                  out_bytes, area))
    return out


def isolated_profile(profile):
    """The calibration before its in-context fit: the micro-benchmarks' own efficiencies and overheads."""
    fits = profile.calibration.fits
    return profile.with_fields(efficiency={k: f.efficiency for k, f in fits.items()},
                               kernel_overhead={k: f.overhead_s for k, f in fits.items()}, first_touch=0.0)


def held_out(nets: list[Network], family: str, profile):
    """The profile with its in-context fit redone on every network but ``family``'s."""
    from perfsim.host.context import apply_fits, context_fits
    isolated = isolated_profile(profile)
    fits, (first_touch, _) = context_fits(context_calls([n for n in nets if n.family != family], isolated))
    return apply_fits(isolated, fits, first_touch)


def count_parameters(profile) -> tuple[int, int]:
    """(numbers the calibration fits, measurements behind them)."""
    k = profile.kernels
    n = len(k.overhead) + sum(_numbers(v) for v in k.efficiency.values()) + len(k.tiled_efficiency) + len(k.row_block)
    n += 4 + (k.first_touch > 0)  # the two peaks, SRAM size, bandwidth
    measured = sum(m.n for m in profile.calibration.measurements.values()) if profile.calibration else 0
    return n, measured


def _numbers(entry) -> int:
    if isinstance(entry, float):
        return 1
    if isinstance(entry, dict):
        return sum(_numbers(v) for v in entry.values())
    return 2 + sum(1 + 2 * len(kern.channels) ** 2 for kern in entry.kernels.values())  # a grouped model


def report(args) -> int:
    import pandas as pd

    from perfsim.hardware.loader import load_profile
    profile = load_profile(args.profile)
    records = _load(_data_file(args.threads))
    by_model: dict[str, list[dict]] = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    nets = [Network(m, rs) for m, rs in by_model.items() if not args.models or m in args.models]
    skipped = [n.model for n in nets if not n.usable]
    nets = [n for n in nets if n.usable]
    probe = profile.calibration.measurements.get("speed_probe") if profile.calibration else None
    reference = probe.value if probe and all(n.has_probe for n in nets) else None
    rows = {n.model: {} for n in nets}
    for speed in ([None, reference] if reference else [None]):
        tag = "" if speed is None else "speed_"
        for net in nets:
            net.at_speed(speed)
        for family in dict.fromkeys(n.family for n in nets):
            out = held_out(nets, family, profile)
            for net in (n for n in nets if n.family == family):
                cal, hold = predict(net, profile), predict(net, out)
                rows[net.model].update({f"{tag}{k}": v for k, v in cal.items()
                                        if not tag or k not in ("model", "family", "rows")} | {
                    f"{tag}held_out_spearman": hold["spearman"], f"{tag}held_out_error": hold["error"],
                    f"{tag}held_out_within_spread": hold["within_spread"]})
                print(f"{tag}{net.model:36} {family:12} rho {cal['spearman']:.2f} err {cal['error']:+.0%} | held out "
                      f"rho {hold['spearman']:.2f} err {hold['error']:+.0%} | spread {cal['run_spread']:.0%}",
                      file=sys.stderr)
    frame = pd.DataFrame(list(rows.values()))
    out = HERE / f"holdout-{args.threads}t"
    frame.to_csv(str(out) + ".csv", index=False, float_format="%.6g")
    n_fit, n_meas = count_parameters(profile)
    text = _markdown(frame, args, n_fit, n_meas, skipped)
    Path(str(out) + ".md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def _ok(rho, err) -> bool:
    return rho >= 0.9 and abs(err) <= 0.2


def _table(frame, tag: str) -> list[str]:
    lines = ["| network | family | rows | ρ | error | ρ held out | error held out | run-to-run spread | IQR | "
             "error inside spread |", "|---|---|---|---|---|---|---|---|---|---|"]
    records = frame.to_dict("records")
    for r in records:
        lines.append(f"| {r['model']} | {r['family']} | {r['rows']} | {r[tag + 'spearman']:.2f} | "
                     f"{r[tag + 'error']:+.0%} | {r[tag + 'held_out_spearman']:.2f} | {r[tag + 'held_out_error']:+.0%} | "
                     f"{r[tag + 'run_spread']:.0%} | {r[tag + 'iqr']:.0%} | {'yes' if r[tag + 'within_spread'] else 'no'} |")
    cal = sum(_ok(r[tag + "spearman"], r[tag + "error"]) for r in records)
    hold = sum(_ok(r[tag + "held_out_spearman"], r[tag + "held_out_error"]) for r in records)
    return lines + ["", f"Both targets (ρ ≥ 0.9, error within ±20 %): as calibrated {cal}/{len(records)}, with the "
                        f"in-context fit held out per family {hold}/{len(records)}."]


def _markdown(frame, args, n_fit: int, n_meas: int, skipped: list[str]) -> str:
    lines = [f"# Held-out validation, {args.threads} thread(s): `python benchmarks/holdout.py report "
             f"--profile {args.profile} --threads {args.threads}`", "",
             f"The calibration fits {n_fit} numbers from {n_meas} timed samples (the medians of `calibration."
             "measurements`: peaks, memory, per-label micro-benchmarks, the synthetic networks in context).", "",
             "## As measured", "", *_table(frame, "")]
    if "speed_error" in frame:
        lines += ["", "## At the calibration's speed", "",
                  "Each run's times multiplied by the calibration's speed probe over the run's own (a 256x256 GEMM "
                  "timed before every round, `perfsim.host.measure.speed_probe`), the held-out fit redone on "
                  "those: the model's error apart from the machine's speed moving between calibrate and the "
                  "measurement.", "", *_table(frame, "speed_")]
    if skipped:
        lines += ["", f"Not predicted (their calls do not line up with the zeros capture): {', '.join(skipped)}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--runs", type=int, default=2)
    m.add_argument("--repeats", type=int, default=8)
    m.add_argument("--allocator", default="keep")
    m.add_argument("--models", nargs="*")
    m.add_argument("--fresh", action="store_true", help="start the data file again")
    m.add_argument("--force", action="store_true", help="measure on a busy machine (marked)")
    r = sub.add_parser("report")
    r.add_argument("--profile", required=True)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--models", nargs="*")
    args = ap.parse_args(argv)
    return measure(args) if args.cmd == "measure" else report(args)


if __name__ == "__main__":
    sys.exit(main())
