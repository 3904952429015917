"""``perfsim compare``: several networks on one profile, their totals side by side. Torch-free
(the graphs come from ``perfsim.frontends.sources``, which lowers only on a cache miss)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..errors import InputError
from ..sim import check_batch

if TYPE_CHECKING:
    import pandas as pd

    from ..sim.results import SimResult

# The compare table: the model, then its totals (summary.json's numbers; bound counts as three columns).
COMPARE_COLUMNS = ("model", "latency_s", "t_data_s", "t_matrix_s", "t_vector_s", "dram_read_bytes",
                   "dram_write_bytes", "spill_bytes", "refetch_bytes", "peak_sram_bytes", "macs", "vector_ops",
                   "params", "model_size_bytes", "layers", "tiled_layers", "bound_data", "bound_matrix",
                   "bound_vector", "latency_per_sample_s", "preload_bytes", "flops", "params_inference")
MAX_MODELS = 64


def zoo_models() -> list[str]:
    """Every zoo model whose module is importable here."""
    import importlib.util

    from ..frontends import zoo
    return [s.name for s in zoo.specs() if importlib.util.find_spec(s.module_name) is not None]


def simulate_models(models: Sequence[str], *, profile: str = "edge_1mb", overrides: Sequence[str] = (),
                    batch: int = 1, use_cache: bool = True) -> list[SimResult]:
    """Each model simulated on the profile (with ``field=value`` overrides)."""
    from ..frontends.sources import ModelSource, load_graph
    from ..hardware.loader import load_profile, parse_override
    from ..report.run import simulator
    if not models:
        raise InputError("name at least one model (or --zoo)")
    if len(models) > MAX_MODELS:
        raise InputError(f"at most {MAX_MODELS} models at once, got {len(models)}")
    check_batch(batch)
    sources = [ModelSource.parse(m) for m in models]  # every name checked before anything is lowered
    hw = load_profile(profile, **dict(parse_override(o) for o in overrides))
    simulate = simulator()
    out = []
    for source in sources:
        graph = load_graph(source, use_cache=use_cache).graph
        out.append(simulate(graph, hw, batch=batch, model=graph.name))
    return out


def totals_row(result: SimResult) -> dict:
    s = result.summary
    row = {k: (s["bound_counts"][k[6:]] if k.startswith("bound_") else s[k]) for k in COMPARE_COLUMNS}
    return row


def compare_frame(results: Sequence[SimResult]) -> pd.DataFrame:
    """One row per model: ``COMPARE_COLUMNS``."""
    import pandas as pd
    return pd.DataFrame([totals_row(r) for r in results], columns=list(COMPARE_COLUMNS))
