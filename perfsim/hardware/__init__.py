"""The hardware description: a profile's schema and its parts, the YAML loader, the efficiency models
that turn a calibration into times, the systolic array and energy prices. Torch-free."""
