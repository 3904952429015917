"""The Python API exactly as README and perfsim/__init__ document it, called twice.

A submodule named like an API function (perfsim/lower.py, perfsim/simulate.py) used to
shadow the function after first use: `perfsim.lower(...)` then raised
"'module' object is not callable". These tests call each function twice, in a fresh
interpreter, in the documented order.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    # from a neutral folder, so the installed perfsim is imported, not the source tree beside the tests
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=tempfile.gettempdir())


def test_documented_api_twice_in_a_fresh_interpreter(tmp_path):
    proc = _run(f"""
        import os
        os.environ["PERFSIM_CACHE_DIR"] = {str(tmp_path)!r}
        import perfsim, torch
        m = torch.nn.Conv2d(3, 8, 3)
        for _ in range(2):
            graph = perfsim.lower(m, (3, 28, 28))
            profile = perfsim.load_profile("edge_1mb", sram_bytes="256KiB")
            result = perfsim.simulate(graph, profile, batch=1)
            frame = result.to_frame()
        assert callable(perfsim.lower) and callable(perfsim.simulate) and callable(perfsim.load_profile)
        assert graph.macs == 26 * 26 * 8 * 27, graph.macs
        assert len(result.rows) == 1 and frame.shape[0] == 1
        assert result.summary["macs"] == graph.macs
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_api_order_simulate_first_then_lower():
    # the shadowing depended on which submodule was imported first: try the other order too
    proc = _run("""
        import perfsim, torch
        profile = perfsim.load_profile("edge_1mb")
        graph = perfsim.lower(torch.nn.Linear(4, 2), (1, 1, 4))
        perfsim.simulate(graph, profile)
        perfsim.simulate(graph, perfsim.load_profile(profile, sram_bytes="1MiB"))
        perfsim.lower(torch.nn.Linear(4, 2), (1, 1, 4))
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr


def test_import_perfsim_does_not_import_torch():
    proc = _run("""
        import sys, perfsim
        perfsim.load_profile("edge_1mb")
        assert "torch" not in sys.modules, "import perfsim pulled in torch"
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
