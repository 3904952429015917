"""write_report: atomic, never replaces a folder that is not a report, ordinary permissions."""
from __future__ import annotations

import os
import stat

import pytest

from graphs import Net
from perfsim.errors import InputError
from perfsim.hardware.loader import load_profile
from perfsim.report.run import REPORT_FILES, write_report
from perfsim.report.folder import MANIFEST
from perfsim.sim.simulator import simulate


@pytest.fixture(scope="module")
def result():
    n = Net((3, 8, 8))  # conv 3x3 with bias, ReLU, global average pool, flatten, linear 8 -> 4
    x = n.global_avgpool(n.relu(n.conv(n.input, 8, 3, padding=1, bias=True)))
    return simulate(n.build(n.linear(n.flatten(x), 4)), load_profile("edge_1mb"))


def test_report_files_and_permissions(result, tmp_path):
    out = write_report(result, tmp_path / "r", plots=False)
    assert {p.name for p in out.iterdir()} == {"layers.csv", "summary.json", MANIFEST}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_replaces_an_earlier_report_whole(result, tmp_path):
    out = write_report(result, tmp_path / "r", plots=True)
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    write_report(result, out, plots=False)
    assert {p.name for p in out.iterdir()} == {"layers.csv", "summary.json", MANIFEST}


def test_refuses_a_folder_with_other_files(result, tmp_path):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_text("months of work")
    with pytest.raises(InputError, match="thesis.tex"):
        write_report(result, folder, plots=False)
    assert (folder / "thesis.tex").read_text() == "months of work"
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]
