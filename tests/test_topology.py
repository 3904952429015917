"""SCALE-Sim topology CSV import and export (perfsim/topology.py, perfsim/cli_systolic.py)."""
from __future__ import annotations

import pytest

from cli_checks import assert_input_error, cli_run
from perfsim.errors import InputError
from perfsim.ir.graph import Unit
from perfsim.hardware.loader import load_profile
from perfsim.sim.simulator import simulate
from perfsim.frontends.topology import export_rows, graph_from_rows, parse_topology, read_topology, topology_csv
from test_systolic import net

HEAD = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


def test_export_then_import_keeps_every_mac_and_cycle():
    g = net()
    rows = export_rows(g)
    assert [r.name for r in rows][:2] == ["conv_0", "conv_3_DP"]
    assert sum(1 for r in rows if r.name.startswith("conv_9_g")) == 4  # a grouped conv: a row per group
    back = graph_from_rows(parse_topology(topology_csv(rows)), "back")
    assert back.macs == g.macs
    p = load_profile("systolic_32x32")
    mine = {r.layer: r for r in simulate(g, p).rows if r.unit is Unit.MATRIX}
    theirs = {r.layer: r for r in simulate(back, p).rows}
    for name, row in mine.items():
        if row.op == "conv_group":  # one SCALE-Sim row per group: the groups' MACs add up
            assert sum(r.macs for n, r in theirs.items() if n.startswith(name + "_g")) == row.macs
        else:
            match = theirs[name + "_DP" if row.op == "conv_dw" else name]
            assert (match.macs, match.matrix_cycles) == (row.macs, row.matrix_cycles)


def test_scalesim_rows_become_convs_chained_when_shapes_follow(tmp_path):
    f = tmp_path / "net.csv"
    f.write_text(HEAD + "c1, 33, 33, 3, 3, 3, 16, 2,\nd_DP, 18, 18, 3, 3, 16, 1, 1,\n"
                 "pw, 16, 16, 1, 1, 16, 32, 1, 2:4\nfc, 1, 1, 1, 1, 7, 10, 1,\n")
    g = read_topology(f)
    c1, dw, pw, fc = g.layers
    assert c1.out_shape == (1, 16, 16, 16) and c1.macs == 16 * 16 * 16 * 27
    assert dw.op == "conv_dw" and dw.groups == 16 and dw.padding == (1, 1) and dw.inputs == (c1.output,)
    assert pw.inputs == (dw.output,) and pw.out_shape == (1, 32, 16, 16)
    assert fc.in_shape == (1, 7, 1, 1) and len(g.inputs) == 2 and set(g.outputs) == {pw.output, fc.output}


@pytest.mark.parametrize("line, needle", [
    ("c, 8, 8, 3, 3, 3,", "expected 8 cells"),
    ("c, 8, 8, 3, 3, 3, 0, 1,", "Num Filter"),
    ("c, 8, 8, 3, 3, 3, x, 1,", "Num Filter"),
    ("c, 2, 8, 3, 3, 3, 4, 1,", "larger than the IFMAP"),
    ("c, 8, 8, 3, 3, -3, 4, 1,", "Channels"),
])
def test_bad_rows_are_refused_naming_the_line(line, needle, tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text(HEAD + line + "\n")
    with pytest.raises(InputError, match=f"line 2.*{needle}"):
        read_topology(f)


def test_output_sizes_round_up_as_scalesim_does(tmp_path):
    f = tmp_path / "odd.csv"
    f.write_text(HEAD + "c, 16, 16, 3, 3, 8, 8, 2,\n")  # (16 - 3) / 2 + 1 = 7.5: SCALE-Sim computes 8
    assert read_topology(f).layers[0].out_shape == (1, 8, 8, 8)


def test_an_empty_topology_is_refused(tmp_path):
    f = tmp_path / "empty.csv"
    f.write_text(HEAD)
    with pytest.raises(InputError, match="no layers"):
        read_topology(f)


def test_cli_export_and_run_topology(isolated, capsys):
    rc, out, err = cli_run(capsys, "export-topology", "mobilenet", "--out", "m.csv")
    assert rc == 0 and "layers written" in err
    text = (isolated / "m.csv").read_text()
    assert text.startswith("Layer name,") and "_DP," in text
    rc, out, err = cli_run(capsys, "run", "--topology", "m.csv", "--profile", "systolic_32x32", "--no-plots")
    assert rc == 0 and "profile systolic_32x32" in out
    rc, out, err = cli_run(capsys, "export-topology", "mobilenet")
    assert rc == 0 and out == text


def test_cli_topology_bad_input(isolated, capsys):
    assert_input_error(*cli_run(capsys, "run", "--topology", "missing.csv"), "missing.csv")
    (isolated / "t.csv").write_text(HEAD + "c, 8, 8, 3, 3, 3, 4, 1,\n")
    assert_input_error(*cli_run(capsys, "run", "mobilenet", "--topology", "t.csv"), "one of them")
    assert_input_error(*cli_run(capsys, "run"), "MODEL")
    assert_input_error(*cli_run(capsys, "run", "--topology", "t.csv", "--width", "0.5"), "--width")
