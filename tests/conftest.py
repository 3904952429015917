"""Test-wide settings.

Under CI (CI=true) hypothesis runs derandomized, so a green CI is reproducible; local
runs explore fresh examples each time, and a stress run explores many:
PERFSIM_PROPERTY_EXAMPLES=1500 pytest tests/test_properties.py
"""
import os

# One intra-op thread for torch in the tests (and the processes they start): with two, every parallel
# region waits for a worker that another process on a busy machine has preempted, and a test that takes
# seconds takes minutes. Tests that measure with threads say how many (--threads).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def graph_cache(tmp_path_factory):
    """One lowered-graph cache for the session: each zoo model is lowered once."""
    d = tmp_path_factory.getbasetemp() / "perfsim-graph-cache"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture
def isolated(tmp_path, monkeypatch, graph_cache):
    """Run in an empty folder (no ./hardware_profiles/ or ./reports/ of the repository) with the session cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERFSIM_CACHE_DIR", str(graph_cache))
    return tmp_path
