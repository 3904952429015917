"""How many of the networks people use lower, measured (issue 6, point 7). Not part of the test suite.

    python benchmarks/coverage.py                      # everything: ~1 h on one core
    python benchmarks/coverage.py --only tv:resnet50 timm:vit_tiny_patch16_224
    python benchmarks/coverage.py --reuse-sample       # keep the timm sample of the last run
    python benchmarks/coverage.py --resimulate         # only the simulator, for the rows it refused

Which models:
- torchvision: every classification model ``torchvision.models.list_models(module=torchvision.models)``
  returns, built with ``weights=None``;
- timm: a sample by a written rule. A model's family is the leading letters of its name
  (``resnet50d`` -> ``resnet``, ``vit_small_patch16_224`` -> ``vit``, ``tf_efficientnet_b0`` -> ``tf``);
  from each family the model with the fewest parameters (counted on the meta device: no memory, no
  init arithmetic; ties by name), ``pretrained=False``.

Input: each model's default input size (timm: ``pretrained_cfg["input_size"]``; torchvision: the
``image_size`` the model was built for, else the crop size of its default weights' transforms, else
224). Sides above ``--cap`` (640) are capped unless the model requires its size (``fixed_input_size``);
the table marks capped inputs.

Per model: lowered or not and the reason (one line), MACs against ``torch.utils.flop_counter`` run on
a separate plain forward (fast path off, math attention: the counter then sees attention as its
matmuls; on fake tensors where the forward allows, else on real zeros), params in rows against PyTorch's count, lowering time (warm: the second of two lowerings),
and the lowered graph simulated on ``edge_1mb`` (its latency, or the simulator's error).
One worker process, one thread (``torch.set_num_threads(1)``), a fresh worker every 20 models and a
timeout per model. Writes ``coverage.csv`` and ``coverage.md`` (summary, failures by reason, table)
beside this file.
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import re
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "coverage_timm_sample.json"
FIELDS = ["source", "model", "input", "capped", "lowered", "macs", "counter_macs", "macs_equal", "params_rows",
          "params_torch", "params_unused", "layers", "lower_s", "edge_1mb_latency_s", "reason"]


def _libs():
    from perfsim.frontends.thirdparty import import_timm, import_torchvision
    return import_torchvision(), import_timm()


def torchvision_models() -> list[str]:
    tv, _ = _libs()
    return sorted(tv.models.list_models(module=tv.models))


def _family(name: str) -> str:
    return re.match(r"[a-z]+", name).group(0)


def _meta_params(name: str) -> int | None:
    import torch
    _, timm = _libs()
    try:
        with torch.device("meta"):
            m = timm.create_model(name, pretrained=False)
        return sum(p.numel() for p in m.parameters())
    except Exception:
        return None


def timm_sample() -> list[str]:
    """The smallest model (by parameters, on the meta device) of every name-prefix family."""
    _, timm = _libs()
    best: dict[str, tuple[int, str]] = {}
    for name in timm.list_models():
        n = _meta_params(name)
        if n is None:
            continue
        fam = _family(name)
        if fam not in best or (n, name) < best[fam]:
            best[fam] = (n, name)
    return sorted(name for _, name in best.values())


def _build(source: str, name: str, cap: int):
    tv, timm = _libs()
    if source == "tv":
        m = tv.models.get_model(name, weights=None)
        side = getattr(m, "image_size", None)
        if not isinstance(side, int):
            try:
                side = tv.models.get_model_weights(name).DEFAULT.transforms().crop_size[0]
            except Exception:
                side = 224
        shape, fixed = (3, side, side), isinstance(getattr(m, "image_size", None), int)
    else:
        m = timm.create_model(name, pretrained=False)
        shape = tuple(m.pretrained_cfg.get("input_size", (3, 224, 224)))
        fixed = bool(m.pretrained_cfg.get("fixed_input_size", False))
    capped = not fixed and max(shape[1:]) > cap
    if capped:
        shape = (shape[0], min(shape[1], cap), min(shape[2], cap))
    return m.eval(), shape, capped


def _counter_macs(m, shape) -> int:
    """torch's flop counter on a plain forward (fast path off, math attention), on fake tensors (no
    arithmetic); a forward that fake tensors cannot run (it looks at values) runs on real zeros."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    torch.backends.mha.set_fastpath_enabled(False)
    for p in m.parameters():  # a view of a parameter made under no_grad trips the counter's module tracker
        p.requires_grad_(False)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as fake:
            x = fake.from_tensor(torch.zeros((1,) + tuple(shape)))
            with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
                m(x)
        return fc.get_total_flops() // 2
    except Exception:
        pass
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        m(torch.zeros((1,) + tuple(shape)))
    return fc.get_total_flops() // 2


def measure(spec: str, cap: int) -> dict:
    import torch
    torch.set_num_threads(1)
    from perfsim.frontends.lowering import lower
    source, name = spec.split(":", 1)
    row = dict.fromkeys(FIELDS, "")
    row.update(source=source, model=name)
    try:
        m, shape, capped = _build(source, name, cap)
    except Exception as e:
        return dict(row, lowered=False, reason=f"cannot build: {type(e).__name__}: {_line(e)}")
    row.update(input="x".join(map(str, shape)), capped=capped,
               params_torch=sum(p.numel() for p in m.parameters()))
    try:
        row["counter_macs"] = _counter_macs(m, shape)
    except Exception as e:
        return dict(row, lowered=False, reason=f"the model fails on its input: {_line(e)}")
    try:
        lower(m, shape)
        t = time.perf_counter()
        g = lower(m, shape)
        row["lower_s"] = round(time.perf_counter() - t, 3)
    except Exception as e:
        return dict(row, lowered=False, reason=f"{type(e).__name__}: {_line(e)}")
    rows_params = sum(layer.params for layer in g.layers)
    return dict(row, lowered=True, macs=g.macs, macs_equal=g.macs == row["counter_macs"], params_rows=rows_params,
                params_unused=row["params_torch"] - rows_params, layers=len(g.layers),
                edge_1mb_latency_s=_simulate(g))


def _simulate(graph) -> str:
    """The lowered graph through the simulator on edge_1mb: its latency, or why it does not run."""
    from perfsim.hardware.loader import load_profile
    from perfsim.sim.simulator import simulate
    try:
        return f"{simulate(graph, load_profile('edge_1mb')).summary['latency_s']:.4g}"
    except Exception as e:
        return f"{type(e).__name__}: {_line(e)}"


def resimulate(spec: str, cap: int) -> str:
    """Only the simulator cell of a model: build, lower once, simulate (no flop counter, no timing)."""
    import torch
    torch.set_num_threads(1)
    from perfsim.frontends.lowering import lower
    m, shape, _ = _build(*spec.split(":", 1), cap)
    return _simulate(lower(m, shape))


def rerun_simulator(cap: int, timeout_s: float, log) -> list[dict]:
    """Re-simulate the rows of coverage.csv whose simulator cell is an error; other rows are kept."""
    rows = read_csv()
    todo = [r for r in rows if r["lowered"] and str(r["edge_1mb_latency_s"])[:1].isalpha()]
    ctx = mp.get_context("spawn")
    for i, r in enumerate(todo):
        spec = f"{r['source']}:{r['model']}"
        with ctx.Pool(1) as pool:
            try:
                r["edge_1mb_latency_s"] = pool.apply_async(resimulate, (spec, cap)).get(timeout=timeout_s)
            except mp.TimeoutError:
                r["edge_1mb_latency_s"] = f"TimeoutError: simulated for more than {timeout_s:.0f} s"
        print(f"[{i + 1}/{len(todo)}] {spec}: {_sim_cell(r['edge_1mb_latency_s'])}", file=log, flush=True)
    return rows


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def run(specs: list[str], cap: int, timeout_s: float, log) -> list[dict]:
    ctx = mp.get_context("spawn")
    results: list[dict] = []
    pool = None
    for i, spec in enumerate(specs):
        if pool is None or i % 20 == 0:
            if pool is not None:
                pool.terminate()
            pool = ctx.Pool(1)
        try:
            row = pool.apply_async(measure, (spec, cap)).get(timeout=timeout_s)
        except mp.TimeoutError:
            pool.terminate()
            pool = None
            source, name = spec.split(":", 1)
            row = dict(dict.fromkeys(FIELDS, ""), source=source, model=name, lowered=False,
                       reason=f"timed out after {timeout_s:.0f} s")
        except Exception as e:  # the worker died (out of memory, a crash)
            pool.terminate()
            pool = None
            source, name = spec.split(":", 1)
            row = dict(dict.fromkeys(FIELDS, ""), source=source, model=name, lowered=False,
                       reason=f"worker failed: {type(e).__name__}: {_line(e)}")
        results.append(row)
        print(f"[{i + 1}/{len(specs)}] {spec}: {'ok' if row['lowered'] else row['reason']}", file=log, flush=True)
    if pool is not None:
        pool.terminate()
    return results


def _reason_kind(reason: str) -> str:
    """Group failures: the op kinds an UnsupportedOpError names, else the error's type."""
    ops = re.findall(r"(aten\.[\w.]+(?: \([^)]*\))?) ×", reason)
    if ops:
        return ", ".join(ops)
    return reason.split(":")[0]


def summary(results: list[dict]) -> list[str]:
    lines = []
    for source, label in (("tv", "torchvision"), ("timm", "timm sample")):
        rows = [r for r in results if r["source"] == source]
        if not rows:
            continue
        good = [r for r in rows if r["lowered"] and r["macs_equal"] is True]
        pct = 100 * len(good) / len(rows)
        lines.append(f"- **{label}**: {len(good)}/{len(rows)} lowered with MACs equal to the flop counter "
                     f"({pct:.1f} %)")
    lowered = [r for r in results if r["lowered"]]
    if lowered:
        times = sorted(r["lower_s"] for r in lowered)
        ran = [r for r in lowered if not str(r["edge_1mb_latency_s"])[:1].isalpha()]
        sim_errors = Counter(_sim_cell(r["edge_1mb_latency_s"]).split(" needs")[0] for r in lowered if r not in ran)
        lines.append(f"- lowering time (warm, one thread): median {times[len(times) // 2]} s, max {times[-1]} s")
        lines.append(f"- the lowered graphs through the simulator on edge_1mb: {len(ran)}/{len(lowered)} run"
                     + "".join(f"; {n} × {k}" for k, n in sim_errors.most_common()))
    failures = Counter(_reason_kind(r["reason"]) for r in results if not r["lowered"])
    unequal = [r for r in results if r["lowered"] and r["macs_equal"] is not True]
    if unequal:
        failures["lowered, MACs differ from the counter"] = len(unequal)
    if failures:
        lines.append("")
        lines.append("Failures by reason:")
        lines += [f"- {n} × {k}" for k, n in failures.most_common()]
    return lines


def write(results: list[dict], cap: int) -> None:
    with open(HERE / "coverage.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(results)
    md = ["# Lowering coverage (benchmarks/coverage.py)", "",
          f"Generated {time.strftime('%Y-%m-%d')} with torch {_versions()}. Rule and method: the script's "
          f"docstring; input sides capped at {cap} (marked *). `unused`: parameters the forward never reads "
          "(counted in the model's total, in no row).", ""]
    md += summary(results)
    md += ["", "| source | model | input | lowered | MACs | counter MACs | params in rows | params | unused | "
           "layers | lower s | edge_1mb latency s | reason |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        inp = f"{r['input']}{'*' if r['capped'] else ''}"
        ok = "yes" if r["lowered"] and r["macs_equal"] is True else "MACs differ" if r["lowered"] else "no"
        md.append(f"| {r['source']} | {r['model']} | {inp} | {ok} | {_n(r['macs'])} | {_n(r['counter_macs'])} | "
                  f"{_n(r['params_rows'])} | {_n(r['params_torch'])} | {_n(r['params_unused'])} | {r['layers']} | "
                  f"{r['lower_s']} | {_sim_cell(r['edge_1mb_latency_s'])} | {r['reason'].replace('|', '/')} |")
    (HERE / "coverage.md").write_text("\n".join(md) + "\n", encoding="utf-8")


def _sim_cell(value) -> str:
    """The edge_1mb cell: the latency, or the simulator's error in a few words."""
    text = str(value)
    m = re.search(r"\((\w+)\) cannot run .* smallest SRAM that runs it is (\d+) B", text)
    if m:
        return f"does not fit: a {m.group(1)} row needs {int(m.group(2)):,} B"
    return text.split(":")[0] if text[:1].isalpha() else text


def read_csv() -> list[dict]:
    """The last run's rows, typed as ``measure`` returns them."""
    rows = []
    with open(HERE / "coverage.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            for k in ("macs", "counter_macs", "params_rows", "params_torch", "params_unused", "layers"):
                r[k] = int(r[k]) if r[k] else ""
            r["lower_s"] = float(r["lower_s"]) if r["lower_s"] else ""
            for k in ("lowered", "macs_equal", "capped"):
                r[k] = r[k] == "True"
            rows.append(r)
    return rows


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def _versions() -> str:
    from importlib.metadata import version
    return ", ".join(f"{p} {version(p)}" for p in ("torch", "torchvision", "timm"))[len("torch "):]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="source:name, e.g. tv:resnet50 timm:vit_tiny_patch16_224")
    ap.add_argument("--reuse-sample", action="store_true", help=f"read the timm sample from {SAMPLE.name}")
    ap.add_argument("--cap", type=int, default=640)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--from-csv", action="store_true", help="rewrite coverage.md from coverage.csv")
    ap.add_argument("--resimulate", action="store_true",
                    help="re-run only the simulator for the rows of coverage.csv it refused, then rewrite both files")
    args = ap.parse_args(argv)
    if args.resimulate:
        write(rerun_simulator(args.cap, args.timeout, sys.stdout), args.cap)
        return 0
    if args.from_csv:
        write(read_csv(), args.cap)
        return 0
    if args.only:
        specs = args.only
    else:
        if args.reuse_sample and SAMPLE.is_file():
            sample = json.loads(SAMPLE.read_text())
        else:
            sample = timm_sample()
            SAMPLE.write_text(json.dumps(sample, indent=0) + "\n")
        specs = [f"tv:{n}" for n in torchvision_models()] + [f"timm:{n}" for n in sample]
    results = run(specs, args.cap, args.timeout, sys.stdout)
    if not args.only:
        write(results, args.cap)
    print("\n".join(summary(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
