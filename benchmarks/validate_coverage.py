"""How many of the networks `perfsim run` lowers `perfsim validate` can check on this CPU (issue 21).
Not part of the test suite; mirrors benchmarks/coverage.py (the lowering coverage table).

    python benchmarks/validate_coverage.py                       # everything: see validate_coverage.md for the time
    python benchmarks/validate_coverage.py --only tv:resnet18 timm:levit_128s   # these again, rows replaced
    python benchmarks/validate_coverage.py --from-csv            # rewrite validate_coverage.md from the CSV

Which models: every torchvision classification model and the timm sample of benchmarks/coverage.py
(``coverage_timm_sample.json``), at the input ``coverage.csv`` lowered them at (the model's default, sides
capped at 640 where coverage.py capped them: passed as ``--input-shape``). Models that ``coverage.csv``
says ``perfsim run`` does not lower are out of scope, counted apart.

Each model is ``perfsim.host.validate.validate`` with the committed calibrated profile
(``host_validation/host-1thread-run41.yaml``), one thread, ``--repeats 3 --warmup 1`` by default, in a
fresh spawned worker (as ``perfsim validate`` runs: a network measured after others in one process
measures slower, docs/hardware.md), with a timeout (``--timeout``): past it the model is "too slow".
A validation that raises perfsim's ``InputError`` is "refused" with its one line; any other exception
is "failed" (a fault of perfsim's). Rows are appended to ``validate_coverage.csv`` as they finish, so a
stopped run resumes where it was (models already in the CSV are skipped unless named by ``--only``).
Writes ``validate_coverage.md`` (summary, refusals by reason, the table) beside this file.
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "coverage_timm_sample.json"
LOWERING = HERE / "coverage.csv"
CSV = HERE / "validate_coverage.csv"
MD = HERE / "validate_coverage.md"
PROFILE = HERE / "host_validation" / "host-1thread-run41.yaml"
FIELDS = ["source", "model", "input", "status", "spearman", "error", "predicted_ms", "measured_ms", "rows",
          "captured_calls", "timed_calls", "matched_calls", "unattributed_share", "unmatched_share", "unmatched_ms",
          "rows_unmatched", "rounds_differing", "graph_same", "zeros_rows", "zeros_macs", "measured_rows",
          "measured_macs", "zeros_error", "worst_op", "others_cpus", "seconds", "reason"]
LIBRARY = {"tv": "torchvision", "timm": "timm"}
BUSY = 0.5  # other processes' CPUs during a model above which its timings are marked as disturbed


def lowering_rows() -> dict[str, dict]:
    """coverage.csv's rows by "source:model"."""
    with open(LOWERING, newline="", encoding="utf-8") as f:
        return {f"{r['source']}:{r['model']}": r for r in csv.DictReader(f)}


def specs() -> list[str]:
    from perfsim.frontends.thirdparty import import_torchvision
    tv = import_torchvision()
    sample = json.loads(SAMPLE.read_text())
    return [f"tv:{n}" for n in sorted(tv.models.list_models(module=tv.models))] + [f"timm:{n}" for n in sample]


def _line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text or type(e).__name__)[:300]


def measure(spec: str, input_shape: str, capped: bool, profile: str, repeats: int, warmup: int) -> dict:
    """One model validated (in a spawned worker): its row, and the worker's CPU time, start-up included."""
    return dict(_measure(spec, input_shape, capped, profile, repeats, warmup), worker_cpu_s=time.process_time())


def _measure(spec: str, input_shape: str, capped: bool, profile: str, repeats: int, warmup: int) -> dict:
    import torch
    torch.set_num_threads(1)
    from perfsim.errors import InputError
    from perfsim.frontends.sources import ModelOptions, parse_shape
    from perfsim.host.validate import format_validation, validate
    source, name = spec.split(":", 1)
    row = dict(dict.fromkeys(FIELDS, ""), source=source, model=name, input=input_shape + ("*" if capped else ""))
    options = ModelOptions(input_shape=parse_shape(input_shape) if capped else None)
    try:
        v = validate(f"{LIBRARY[source]}:{name}", profile, options=options, threads=1, warmup=warmup, repeats=repeats)
    except InputError as e:
        return dict(row, status="refused", reason=_line(e))
    except Exception as e:
        return dict(row, status="failed", reason=f"{type(e).__name__}: {_line(e)}")
    format_validation(v)  # the text and the JSON must render too
    json.dumps(v.to_dict())
    g = v.graph
    timed = v.rows_measured_s + v.unattributed_s + v.unmatched_s
    return dict(row, status="validated", spearman=_r(v.spearman, 3), error=_r(v.error, 4),
                predicted_ms=_r(v.predicted_s * 1e3, 3), measured_ms=_r(v.measured_s * 1e3, 3), rows=len(v.rows),
                captured_calls=v.captured_calls, timed_calls=v.timed_calls, matched_calls=v.matched_calls,
                unattributed_share=_r(v.unattributed_s / timed if timed else 0.0, 4),
                unmatched_share=_r(v.unmatched_share, 4), unmatched_ms=_r(v.unmatched_s * 1e3, 3),
                rows_unmatched=v.rows_unmatched, rounds_differing=v.rounds_differing,
                graph_same="" if g.same_ops is None else g.same_ops, zeros_rows=_n(g.zeros_rows),
                zeros_macs=_n(g.zeros_macs), measured_rows=g.rows, measured_macs=g.macs,
                zeros_error=g.zeros_error[:200], worst_op=v.worst_op()["op"])


def _r(x: float, digits: int):
    return "" if x != x else round(x, digits)  # nan (Spearman over < 3 rows): empty


def _n(x):
    return "" if x is None else x


def _busy_s() -> float | None:
    """CPU-seconds all processes have spent busy so far (/proc/stat), None where there is none."""
    from perfsim.host.measure import _cpu_times
    t = _cpu_times()
    return None if t is None else t[0] / os.sysconf("SC_CLK_TCK")


def run(todo: list[str], lowering: dict[str, dict], args, log) -> None:
    ctx = mp.get_context("spawn")
    for i, spec in enumerate(todo):
        low = lowering.get(spec, {})
        shape, capped = low.get("input") or "3x224x224", low.get("capped") == "True"
        busy0, t0 = _busy_s(), time.perf_counter()
        pool = ctx.Pool(1)
        try:
            row = pool.apply_async(measure, (spec, shape, capped, args.profile, args.repeats, args.warmup)
                                   ).get(timeout=args.timeout)
        except mp.TimeoutError:
            source, name = spec.split(":", 1)
            row = dict(dict.fromkeys(FIELDS, ""), source=source, model=name, input=shape, status="too slow",
                       reason=f"not done in {args.timeout:.0f} s")
        except Exception as e:  # the worker died (out of memory, a crash)
            source, name = spec.split(":", 1)
            row = dict(dict.fromkeys(FIELDS, ""), source=source, model=name, input=shape, status="failed",
                       reason=f"worker failed: {type(e).__name__}: {_line(e)}")
        finally:
            pool.terminate()
            pool.join()
        wall, busy1, own = time.perf_counter() - t0, _busy_s(), row.pop("worker_cpu_s", None)
        if None not in (busy0, busy1, own):  # CPUs' worth of other processes' work while this model ran
            row["others_cpus"] = round(max(0.0, (busy1 - busy0 - own) / wall), 2)
        row["seconds"] = round(wall, 1)
        _save(row)
        detail = (f"spearman {row['spearman']} error {row['error']} unmatched {row['unmatched_share']} "
                  f"graph_same {row['graph_same']}" if row["status"] == "validated" else row["reason"])
        print(f"[{i + 1}/{len(todo)}] {spec}: {row['status']} {row['seconds']} s; {detail}", file=log, flush=True)


def read_csv() -> list[dict]:
    if not CSV.is_file():
        return []
    with open(CSV, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _save(row: dict) -> None:
    """Replace the model's row (or append it), atomically."""
    rows = [r for r in read_csv() if (r["source"], r["model"]) != (row["source"], row["model"])] + [row]
    tmp = CSV.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, CSV)


def _reason_kind(reason: str) -> str:
    """A refusal's reason without the model's own names and numbers."""
    fit = re.search(r"\((\w+)\) cannot run in \d+ B of SRAM even tiled", reason)
    if fit:
        return (f"the simulator: a {fit.group(1)} row does not fit the profile's SRAM even tiled "
                "(`perfsim run MODEL --profile` with this profile refuses it too)")
    text = re.sub(r"^(torchvision|timm):[\w.\-]+('s)?:? ?", "", reason)
    text = re.sub(r"'[^']*'", "'…'", text)
    return re.sub(r"\d[\d,.]*", "N", text)


def summary(rows: list[dict], out_of_scope: list[str], timeout: float) -> list[str]:
    lines = []
    for source, label in (("tv", "torchvision"), ("timm", "timm sample")):
        mine = [r for r in rows if r["source"] == source]
        scope = len([s for s in out_of_scope if s.startswith(source + ":")])
        if not mine:
            continue
        ok = [r for r in mine if r["status"] == "validated"]
        counts = Counter(r["status"] for r in mine)
        rest = ", ".join(f"{n} {k}" for k, n in counts.most_common() if k != "validated")
        lines.append(f"- **{label}**: {len(ok)}/{len(mine)} validated" + (f" ({rest})" if rest else "")
                     + (f"; {scope} more that `perfsim run` does not lower are out of scope" if scope else ""))
    ok = [r for r in rows if r["status"] == "validated"]
    if ok:
        same = sum(r["graph_same"] == "True" for r in ok)
        unmatched = [r for r in ok if float(r["unmatched_share"] or 0) > 0]
        differing = [r for r in ok if int(r["rounds_differing"] or 0) > 0]
        lines.append(f"- the graph on the measured input is the zeros graph `perfsim run` uses in {same}/{len(ok)}; "
                     f"calls left unmatched in {len(unmatched)}; timed forwards that differed in {len(differing)}")
        sp = sorted(float(r["spearman"]) for r in ok if r["spearman"])
        err = sorted(abs(float(r["error"])) for r in ok if r["error"])
        lines.append(f"- Spearman ≥ 0.9 in {sum(s >= 0.9 for s in sp)}/{len(sp)} (median {sp[len(sp) // 2]:.2f}); "
                     f"whole-network error within ±20 % in {sum(e <= 0.2 for e in err)}/{len(err)} "
                     f"(median |error| {err[len(err) // 2]:.0%}): the host model's accuracy, not validate's")
    busy = [r for r in rows if r["status"] == "validated" and float(r.get("others_cpus") or 0) > BUSY]
    lines.append(f"- measured while other processes kept more than {BUSY} of the 2 CPUs busy: {len(busy)} "
                 "(their times are the load's as much as the machine's)")
    seconds = sum(float(r["seconds"] or 0) for r in rows)
    lines.append(f"- time: {seconds / 3600:.2f} h for {len(rows)} models (sum of each model's wall time, worker "
                 f"start included; one thread; too slow = not done in {timeout:.0f} s)")
    refused: dict[str, list[str]] = {}
    for r in rows:
        if r["status"] != "validated":
            refused.setdefault(f"{r['status']}: {_reason_kind(r['reason'])}", []).append(f"{r['source']}:{r['model']}")
    if refused:
        lines += ["", "Not validated, by reason:"]
        lines += [f"- {len(names)} × {k}: {', '.join(names)}"
                  for k, names in sorted(refused.items(), key=lambda kv: -len(kv[1]))]
    return lines


def write_md(rows: list[dict], out_of_scope: list[str], args) -> None:
    from importlib.metadata import version
    order = {s: i for i, s in enumerate(specs())}
    rows = sorted(rows, key=lambda r: order.get(f"{r['source']}:{r['model']}", len(order)))
    md = ["# Validate coverage (benchmarks/validate_coverage.py)", "",
          f"Generated {time.strftime('%Y-%m-%d')} with torch {version('torch')}, torchvision {version('torchvision')}, "
          f"timm {version('timm')}; profile `{Path(args.profile).name}`, 1 thread, --repeats {args.repeats} "
          f"--warmup {args.warmup}. Method: the script's docstring; docs/hardware.md (`perfsim validate`) says "
          "what the columns mean. `error`: whole-network (predicted − measured) / measured. `unmatched`: share of "
          "the timed calls' time perfsim could not line up with the capture. `graph`: the graph on the measured "
          "input against the zeros graph `perfsim run` uses (`same`, or zeros rows/MACs → measured). Inputs "
          "marked * were capped at 640 as in coverage.md. `others' CPUs`: other processes' work while the model "
          "ran. Spearman and error are the host model's accuracy on a shared machine (docs/hardware.md, "
          "`perfsim validate`, Coverage), not validate's.", ""]
    md += summary(rows, out_of_scope, args.timeout)
    if out_of_scope:
        md += ["", f"Out of scope (`perfsim run` does not lower them, coverage.md): {', '.join(out_of_scope)}"]
    md += ["", "| source | model | input | status | Spearman | error | rows | unmatched | graph | others' CPUs | s "
           "| reason |", "|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in rows:
        err = f"{float(r['error']):+.0%}" if r["error"] else ""
        unmatched = f"{float(r['unmatched_share']):.1%}" if r["unmatched_share"] else ""
        md.append(f"| {r['source']} | {r['model']} | {r['input']} | {r['status']} | {r['spearman']} | {err} | "
                  f"{r['rows']} | {unmatched} | {_graph_cell(r)} | {r.get('others_cpus', '')} | {r['seconds']} | "
                  f"{r['reason'].replace('|', '/')} |")
    MD.write_text("\n".join(md) + "\n", encoding="utf-8")


def _graph_cell(r: dict) -> str:
    if r["status"] != "validated":
        return ""
    if r["zeros_error"]:
        return "no zeros graph"
    if r["graph_same"] == "True":
        return "same"
    return f"{r['zeros_rows']} rows, {int(r['zeros_macs']):,} → {r['measured_rows']}, {int(r['measured_macs']):,}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="source:name, e.g. tv:resnet18 timm:levit_128s (rows replaced)")
    ap.add_argument("--profile", default=str(PROFILE))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--limit", type=int, default=None, help="stop after this many models (a chunk)")
    ap.add_argument("--from-csv", action="store_true", help="rewrite validate_coverage.md from the CSV")
    ap.add_argument("--retry-busy", type=float, default=None, metavar="CPUS",
                    help="measure again the validated models during which other processes kept more than CPUS busy")
    args = ap.parse_args(argv)
    lowering = lowering_rows()
    everything = specs()
    out_of_scope = [s for s in everything if lowering.get(s, {}).get("lowered") != "True"]
    if not args.from_csv:
        done = {f"{r['source']}:{r['model']}" for r in read_csv()}
        todo = args.only or [s for s in everything if s not in out_of_scope and s not in done]
        if args.retry_busy is not None and not args.only:
            todo = [f"{r['source']}:{r['model']}" for r in read_csv() if r["status"] == "validated"
                    and float(r.get("others_cpus") or 0) > args.retry_busy]
        run(todo[:args.limit], lowering, args, sys.stdout)
    rows = read_csv()
    write_md(rows, out_of_scope, args)
    print("\n".join(summary(rows, out_of_scope, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
