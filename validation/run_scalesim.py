"""Run SCALE-Sim v3 on one topology CSV and keep per-layer compute cycles (run by scalesim_compare.py).

Runs in its own venv (.venv-scalesim: scalesim==3.0.0, numpy<2.4), never in perfsim's, through
SCALE-Sim's Python API with save_disk_space=True (no traces). Writes a CSV: one line per SCALE-Sim
layer (a depthwise DP row becomes one layer per channel), and the run's wall time.

    .venv-scalesim/bin/python validation/run_scalesim.py TOPOLOGY.csv OUT.csv --rows 32 --cols 32 --dataflow ws
"""
from __future__ import annotations

import argparse
import csv
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("topology")
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--cols", type=int, default=32)
    ap.add_argument("--dataflow", default="ws", choices=("os", "ws", "is"))
    a = ap.parse_args()
    from scalesim.scale_sim import scalesim
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "check.cfg")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(rows=a.rows, cols=a.cols, dataflow=a.dataflow))
        start = time.perf_counter()
        topo = os.path.abspath(a.topology)
        # custom layouts are off: SCALE-Sim still reads a layout file with one line per layer, and
        # the topology itself is one (its cells are whole numbers, its DP rows split alike)
        sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=topo)
        sim.run_scale(top_path=tmp)
        wall_s = time.perf_counter() - start
        layers = sim.runner.single_layer_sim_object_list
        names = sim.topo.get_layer_names()
        with open(a.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["layer_id", "name", "total_cycles_incl_prefetch", "total_cycles", "stall_cycles",
                        "compute_cycles", "overall_util_pct", "mapping_eff_pct", "compute_util_pct"])
            for i, (layer, name) in enumerate(zip(layers, names)):
                overall, total, stall, util, mapping, compute_util = layer.get_compute_report_items()[:6]
                w.writerow([i, name, overall, total, stall, total - stall, util, mapping, compute_util])
            w.writerow(["wall_s", f"{wall_s:.3f}", a.rows, a.cols, a.dataflow, "", "", "", ""])
    print(f"{a.topology}: {len(layers)} SCALE-Sim layers in {wall_s:.1f} s")


if __name__ == "__main__":
    main()
