"""How perfsim's reports look, in one place: the colour of each time term and of DRAM traffic, line colours,
and a figure on matplotlib's Agg canvas without pyplot (no backend machinery, nothing global to close)."""
from __future__ import annotations

# a row's time terms: (column, legend, colour), in the order they stack
TERMS = (("t_data_s", "data movement", "#4C72B0"), ("t_matrix_s", "matrix unit", "#DD8452"),
         ("t_vector_s", "vector unit", "#55A868"))
# by bound (``perfsim.sim.records.Bound`` compares equal to its text) and by DRAM traffic
COLORS = {"data": "#4C72B0", "matrix": "#DD8452", "vector": "#55A868",
          "read": "#4C72B0", "write": "#C44E52", "spill": "#8172B3"}
LINE_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def new_figure(width: float, height: float, ncols: int = 1):
    """A figure on the Agg canvas and its axes, side by side."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    axes = [fig.add_subplot(1, ncols, k + 1) for k in range(ncols)]
    return fig, axes
