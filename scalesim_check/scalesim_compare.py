"""perfsim's systolic-array cycles beside SCALE-Sim v3's, layer by layer (docs/systolic.md).

For each network: export its matrix layers as a SCALE-Sim topology (perfsim.frontends.topology, padded
input sizes: SCALE-Sim has no padding), run SCALE-Sim once on it with the same array and dataflow
(scalesim_check/run_scalesim.py, in its own venv) and keep its per-layer results in
validation/results/ so the table is reproducible without rerunning it; then simulate the network
with perfsim on systolic_32x32 with the same dataflow and line the cycles up. SCALE-Sim splits a
depthwise (DP) layer into one layer per channel: those are summed, and shown beside perfsim's own
count (groups packed on the array's diagonal) and perfsim's count with the groups one after another.

    python scalesim_check/scalesim_compare.py                   # uses the kept SCALE-Sim results
    python scalesim_check/scalesim_compare.py --rerun           # runs SCALE-Sim again (minutes per network)
    python scalesim_check/scalesim_compare.py --dataflow os --rows 32 --cols 32

Runs in perfsim's venv; SCALE-Sim runs in VENV (default .venv-scalesim: scalesim==3.0.0, numpy<2.4).
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

from perfsim.hardware.profile import load_profile
from perfsim.sim.simulator import simulate
from perfsim.frontends.sources import load_graph
from perfsim.hardware.systolic import Gemm, array_cycles, gemm_dims
from perfsim.frontends.topology import layer_rows, topology_csv

HERE = Path(__file__).resolve().parent
NETWORKS = ("mobilenet", "mobilenet_v1", "torchvision:resnet18")
TOLERANCE = 0.10
CHECKED = ("conv", "conv_pw")  # the criterion: every conv and pointwise layer within TOLERANCE


def scalesim_results(net: str, rows: list, args) -> tuple[list[dict], float]:
    stem = f"{net.replace(':', '_')}_{args.dataflow}{args.rows}x{args.cols}"
    topo = HERE / "topologies" / f"{net.replace(':', '_')}.csv"
    out = HERE / "results" / f"{stem}.csv"
    topo.parent.mkdir(exist_ok=True)
    out.parent.mkdir(exist_ok=True)
    topo.write_text(topology_csv(rows))
    if args.rerun or not out.exists():
        python = Path(args.venv) / "bin" / "python"
        subprocess.run([str(python), str(HERE / "run_scalesim.py"), str(topo), str(out), "--rows", str(args.rows),
                        "--cols", str(args.cols), "--dataflow", args.dataflow], check=True)
    with out.open() as f:
        lines = list(csv.DictReader(f))
    wall = float(lines[-1]["name"])
    return lines[:-1], wall


def compare(net: str, args) -> tuple[list[dict], dict]:
    graph = load_graph(net).graph
    profile = load_profile("systolic_32x32", array_rows=args.rows, array_cols=args.cols, dataflow=args.dataflow)
    start = time.perf_counter()
    result = simulate(graph, profile)
    perfsim_s = time.perf_counter() - start
    per_layer = [(layer, row, layer_rows(layer)) for layer, row in zip(graph.layers, result.rows)]
    all_rows = [t for _, _, rs in per_layer for t in rs]
    ss, wall = scalesim_results(net, all_rows, args)
    table, i = [], 0
    for layer, row, rs in per_layer:
        n = sum(t.channels if t.depthwise else 1 for t in rs)  # SCALE-Sim layers of this perfsim layer
        if not n:
            continue
        cycles = sum(int(x["compute_cycles"]) for x in ss[i:i + n])
        i += n
        g, m, nn, k = gemm_dims(layer, 1)
        serial = g * array_cycles(Gemm(1, m, nn, k), args.rows, args.cols, args.dataflow)[0]
        table.append({"layer": layer.name, "op": layer.op, "scalesim_layers": n, "scalesim_cycles": cycles,
                      "perfsim_cycles": row.matrix_cycles, "groups_serial_cycles": serial,
                      "error": row.matrix_cycles / cycles - 1, "utilization": row.utilization})
    assert i == len(ss), f"{net}: {len(ss)} SCALE-Sim layers, {i} matched"
    return table, {"network": net, "scalesim_wall_s": wall, "perfsim_simulate_s": perfsim_s,
                   "scalesim_layers": len(ss), "perfsim_rows": len(result.rows)}


def markdown(net: str, table: list[dict], meta: dict, args) -> str:
    checked = [t for t in table if t["op"] in CHECKED]
    worst = max(checked, key=lambda t: abs(t["error"]))
    others = [t for t in table if t["op"] not in CHECKED]
    lines = [f"### {net} ({args.rows}x{args.cols}, {args.dataflow})", "",
             f"SCALE-Sim v3: {meta['scalesim_layers']} layers in {meta['scalesim_wall_s']:.1f} s; perfsim simulate(): "
             f"{meta['perfsim_rows']} rows in {meta['perfsim_simulate_s'] * 1e3:.1f} ms. Conv and pointwise layers: "
             f"{sum(abs(t['error']) <= TOLERANCE for t in checked)} of {len(checked)} within {TOLERANCE:.0%}, "
             f"worst {worst['error']:+.2%} ({worst['layer']}). Other matrix layers (depthwise, linear: "
             f"docs/systolic.md): {', '.join(sorted({t['op'] for t in others})) or 'none'}.", "",
             "| layer | op | SCALE-Sim layers | SCALE-Sim cycles | perfsim cycles | error | groups one by one | "
             "utilisation |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for t in table:
        lines.append(f"| {t['layer']} | {t['op']} | {t['scalesim_layers']} | {t['scalesim_cycles']} | "
                     f"{t['perfsim_cycles']} | {t['error']:+.2%} | {t['groups_serial_cycles']} | "
                     f"{t['utilization']:.1%} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("networks", nargs="*", default=list(NETWORKS))
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--cols", type=int, default=32)
    ap.add_argument("--dataflow", default="ws", choices=("os", "ws", "is"))
    ap.add_argument("--rerun", action="store_true", help="Run SCALE-Sim again instead of reading scalesim_check/results/.")
    ap.add_argument("--venv", default=str(HERE.parent / ".venv-scalesim"), help="SCALE-Sim's venv.")
    args = ap.parse_args()
    failed = 0
    parts = []
    for net in args.networks:
        table, meta = compare(net, args)
        parts.append(markdown(net, table, meta, args))
        print(parts[-1])
        failed += sum(abs(t["error"]) > TOLERANCE for t in table if t["op"] in CHECKED)
    out = HERE / f"scalesim_{args.dataflow}{args.rows}x{args.cols}.md"
    out.write_text("\n".join(parts))
    print(f"written {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
