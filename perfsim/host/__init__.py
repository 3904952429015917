"""This machine, measured: timing calls on the host, calibration (benchmarks, fits, context) and validation."""
