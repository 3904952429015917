"""Accuracy runs: data sets, the papers' training recipes, the training loop, checkpoints and the Pareto
view of accuracy against predicted latency."""
