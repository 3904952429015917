"""Run SCALE-Sim v3 on one topology CSV and keep per-layer compute cycles (run by scalesim_compare.py).

Runs in its own venv (.venv-scalesim: scalesim==3.0.0, numpy<2.4), never in perfsim's, through
SCALE-Sim's Python API with save_disk_space=True (no traces). Writes a CSV: one line per SCALE-Sim
layer (a depthwise DP row becomes one layer per channel), and the run's wall time.

    .venv-scalesim/bin/python scalesim_check/run_scalesim.py TOPOLOGY.csv OUT.csv --rows 32 --cols 32 --dataflow ws
"""
from __future__ import annotations

import argparse
import csv
import gc
import os
import tempfile
import time

CONFIG = """\
[general]
run_name = perfsim_check

[architecture_presets]
ArrayHeight : {rows}
ArrayWidth : {cols}
IfmapSramSzkB : 65536
FilterSramSzkB : 65536
OfmapSramSzkB : 65536
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Bandwidth : 1024
Dataflow : {dataflow}
ReadRequestBuffer : 32
WriteRequestBuffer : 32

[layout]
IfmapCustomLayout : False
IfmapSRAMBankBandwidth : 10
IfmapSRAMBankNum : 10
IfmapSRAMBankPort : 2
FilterCustomLayout : False
FilterSRAMBankBandwidth : 10
FilterSRAMBankNum : 10
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth : USER
UseRamulatorTrace : False
"""


def chunks(lines: list[str], most: int) -> list[list[str]]:
    """Topology rows in runs of at most ``most`` SCALE-Sim layers (a DP row is one per channel):
    SCALE-Sim keeps every layer's demand matrices until the end of a run, gigabytes for a network."""
    out, cur, size = [], [], 0
    for line in lines:
        n = int(line.split(",")[5]) if "DP" in line.split(",")[0] else 1
        if cur and size + n > most:
            out.append(cur)
            cur, size = [], 0
        cur.append(line)
        size += n
    return out + ([cur] if cur else [])


def run_chunk(scalesim, cfg: str, topo: str, tmp: str) -> list[tuple]:
    # custom layouts are off: SCALE-Sim still reads a layout file with one line per layer, and the
    # topology itself is one (its cells are whole numbers, its DP rows split alike)
    sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=topo)
    sim.run_scale(top_path=tmp)
    names = sim.topo.get_layer_names()
    return [(name, *layer.get_compute_report_items()[:6])
            for layer, name in zip(sim.runner.single_layer_sim_object_list, names)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("topology")
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--cols", type=int, default=32)
    ap.add_argument("--dataflow", default="ws", choices=("os", "ws", "is"))
    ap.add_argument("--chunk", type=int, default=64, help="SCALE-Sim layers per run (bounds its memory).")
    a = ap.parse_args()
    from scalesim.scale_sim import scalesim
    with open(a.topology) as f:
        header, *lines = [ln for ln in f.read().splitlines() if ln.strip()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "check.cfg")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(rows=a.rows, cols=a.cols, dataflow=a.dataflow))
        start = time.perf_counter()
        for i, part in enumerate(chunks(lines, a.chunk)):
            topo = os.path.join(tmp, f"part{i}.csv")
            with open(topo, "w") as f:
                f.write("\n".join([header] + part) + "\n")
            results += run_chunk(scalesim, cfg, topo, tmp)
            gc.collect()
        wall_s = time.perf_counter() - start
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer_id", "name", "total_cycles_incl_prefetch", "total_cycles", "stall_cycles",
                    "compute_cycles", "overall_util_pct", "mapping_eff_pct", "compute_util_pct"])
        for i, (name, overall, total, stall, util, mapping, compute_util) in enumerate(results):
            w.writerow([i, name, overall, total, stall, total - stall, util, mapping, compute_util])
        w.writerow(["wall_s", f"{wall_s:.3f}", a.rows, a.cols, a.dataflow, "", "", "", ""])
    print(f"{a.topology}: {len(results)} SCALE-Sim layers in {wall_s:.1f} s")


if __name__ == "__main__":
    main()
