"""Design-space exploration: ``perfsim compare`` and ``perfsim sweep``."""
