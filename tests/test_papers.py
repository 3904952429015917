"""The seed papers as reports (`perfsim paper clcnet | condensenet | condensenext | fastnet`).

Each paper's transcribed cells (perfsim/papers/*_tables.py) beside perfsim's values: the verdicts
expected today, and the golden pattern of tests/test_paper_mobilenet.py -- edit a transcribed cell
and the verdict and its computed sentence follow. Golden pages: tests/test_papers_golden.py.
"""
from __future__ import annotations

import json

import pytest

from cli_checks import assert_input_error, cli_run
from perfsim.papers import clcnet_analysis, clcnet_tables, condense_analysis, condense_tables
from perfsim.papers import fastnet_analysis, fastnet_tables
from perfsim.papers.published import Bound, Figure, Hypothesis, judge_value


def _row(d, quantity, network=None):
    """The one row of that quantity (equal to it, else containing it), of that network if given."""
    mine = [r for r in d["rows"] if network is None or r["network"] == network]
    found = [r for r in mine if r["quantity"] == quantity] or [r for r in mine if quantity in r["quantity"]]
    assert len(found) == 1, (quantity, network, [r["quantity"] for r in d["rows"]])
    return found[0]


def _numbers(d):
    return {s: d["counts"][s]["numbers"] for s in ("exact", "explained", "unexplained")}


# ----- the verdict machinery ---------------------------------------------------------------
@pytest.mark.parametrize("printed, scale, value, step", [
    ("343M", 1, 343e6, 1e6), ("3.25M", 1, 3.25e6, 1e4), ("0.52", 1e6, 0.52e6, 1e4), ("94.24%", 1, 94.24, 0.01),
    ("16.7 MB", 1, 16.7e6, 1e5), ("1.0e-4", 1, 1e-4, 1e-5), ("02:59:19", 1, 10759, 1), ("1.6 M", 1, 1.6e6, 1e5),
])
def test_figure_reads_value_and_printed_precision(printed, scale, value, step):
    f = Figure.parse(printed, scale)
    assert f.value == pytest.approx(value) and f.step == pytest.approx(step)
    assert f.holds(value + 0.49 * step) and not f.holds(value + 0.51 * step)


def test_judge_value_tries_perfsim_then_hypotheses_then_elsewhere_then_bounds():
    fig = Figure.parse("4.2M")
    assert judge_value(fig, 4_231_976)[0] == "exact"
    h = Hypothesis("twice", 4.2e6, "2 x 2.1M")
    status, sentence = judge_value(fig, 2.1e6, hypotheses=[h])
    assert status == "explained" and sentence.startswith("twice: 2 x 2.1M, which gives 4,200,000 = the paper's 4.2M")
    assert judge_value(Figure.parse("2"), 3, elsewhere=[("Sec. X", 3)])[0] == "explained"
    assert judge_value(Figure.parse("2"), 3, elsewhere=[("Sec. X", 3), ("Sec. Y", 4)])[0] == "unexplained"
    status, sentence = judge_value(fig, 9e6, bounds=[Bound("part P", 5e6, "kept")])
    assert status == "explained" and "1.19x the paper's figure" in sentence
    status, sentence = judge_value(fig, 9e6, hypotheses=[Hypothesis("half", 4.5e6, "9M / 2")])
    assert status == "unexplained" and "2.14x the paper's 4.2M" in sentence and "half gives 4,500,000" in sentence


# ----- clcNet (paper 002) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def clcnet(graph_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFSIM_CACHE_DIR", str(graph_cache))
        return clcnet_analysis.analyse()


def test_clcnet_verdicts(clcnet):
    assert _numbers(clcnet) == {"exact": 91, "explained": 3, "unexplained": 0}
    assert all(r["status"] == "exact" for r in clcnet["rows"] if r["section"].startswith(("Table 1", "Table 2", "Table 5")))
    r = _row(clcnet, "parameters reduction")
    assert r["status"] == "explained" and "1 - 3.25M / 4.2M" in r["explanation"] and "23.12 %" in r["explanation"]
    assert _row(clcnet, "CLC blocks with FCRF", "clcnet_ap")["perfsim"] == "0 of 14"
    assert _row(clcnet, "CLC blocks with FCRF", "clcnet_a")["perfsim"] == "14 of 14"
    assert "withheld" in clcnet["latency"]["sentences"][0] and clcnet["latency"]["predicted"] is False


def test_clcnet_interlace_read_from_the_graph(isolated):
    from perfsim.frontends.sources import load_graph
    _, blocks, _ = clcnet_analysis.structure(load_graph("clcnet_a").graph)
    assert [b.interlace for b in blocks] == [b.g1 for b in blocks] and len(blocks) == 14
    _, plain, _ = clcnet_analysis.structure(load_graph("clcnet_ap").graph)
    assert [b.interlace for b in plain] == [None] * 14 and not any(b.fcrf() for b in plain)


@pytest.mark.parametrize("cell, status, words", [
    ("3.23M", "explained", "BN's affine parameters left out: perfsim's 3,253,640 parameters - gamma and beta"),
    ("3.27M", "explained", "a bias on every conv"),
    ("3.3M", "exact", "at its printed precision"),
    ("3.5M", "unexplained", "0.93x the paper's 3.5M"),
])
def test_clcnet_edited_params_cell(isolated, monkeypatch, cell, status, words):
    t5 = dict(clcnet_tables.TABLE5)
    t5["clcnet_a"] = (t5["clcnet_a"][0], t5["clcnet_a"][1], cell)
    monkeypatch.setattr(clcnet_tables, "TABLE5", t5)
    r = _row(clcnet_analysis.analyse(), "parameters", "clcnet_a")
    assert (r["status"], r["paper"]) == (status, cell) and words in r["explanation"], r["explanation"]


def test_clcnet_edited_macs_and_table1_cells(isolated, monkeypatch):
    t5 = dict(clcnet_tables.TABLE5)
    t5["clcnet_b"] = ("71.6%", "849M", "4.1M")  # 2 x 424.6M: FLOPs, not MACs
    monkeypatch.setattr(clcnet_tables, "TABLE5", t5)
    t1 = list(clcnet_tables.TABLE1)
    t1[1] = (64, 64, 128, 32, 2)  # the g2 = 2 minimum, not Table 1's free one
    monkeypatch.setattr(clcnet_tables, "TABLE1", tuple(t1))
    d = clcnet_analysis.analyse()
    r = _row(d, "mult-adds (MACs)", "clcnet_b")
    assert r["status"] == "explained" and r["explanation"].startswith("FLOPs counted as 2 x MACs: 2 x perfsim's")
    r = _row(d, "(g1, g2) for M=64, L=64, N=128")
    assert r["status"] == "explained" and "g2 fixed to 2" in r["explanation"] and r["perfsim"] == "(16, 4)"


def test_clcnet_reduction_follows_table5_cells(isolated, monkeypatch):
    """Sec. 5.3's 22.6 % is explained by Table 5's rounded 3.25M / 4.2M: printed 4.23M, it is not."""
    t5 = dict(clcnet_tables.TABLE5)
    t5["mobilenet_v1"] = ("70.6%", "569M", "4.23M")
    monkeypatch.setattr(clcnet_tables, "TABLE5", t5)
    r = _row(clcnet_analysis.analyse(), "parameters reduction")
    assert r["status"] == "unexplained" and "the paper's own rounded figures gives 23.17 %" in r["explanation"]


# ----- CondenseNet-86 and CondenseNeXt (paper 000) --------------------------------------------
@pytest.fixture(scope="module")
def condense(graph_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFSIM_CACHE_DIR", str(graph_cache))
        return {"condensenet": condense_analysis.analyse_condensenet(),
                "condensenext": condense_analysis.analyse_condensenext()}


def test_condensenet_verdicts(condense):
    d = condense["condensenet"]
    assert _numbers(d) == {"exact": 2, "explained": 2, "unexplained": 0}
    flops = _row(d, "FLOPs")
    assert flops["status"] == "explained" and "CondenseNet's counter" in flops["explanation"]
    assert "65,812,394 = the paper's 65.81M" in flops["explanation"]
    size = _row(d, "trained model size")
    assert size["status"] == "explained" and "16.71 MB = the paper's 16.7 MB" in size["explanation"]
    assert "a float32 training checkpoint" in size["explanation"]
    times = _row(d, "total training time")
    assert times["status"] == "not modelled" and "consistent with the printed total 02:59:19" in times["explanation"]


def test_condensenext_verdicts(condense):
    d = condense["condensenext"]
    assert _numbers(d) == {"exact": 3, "explained": 2, "unexplained": 1}
    for quantity, part in (("FLOPs", "37,158,912"), ("parameters", "310,464")):
        r = _row(d, quantity)
        assert r["status"] == "explained" and f"alone ({part}" in r["explanation"]
        assert "no network its text describes reaches it" in r["explanation"]
    size = _row(d, "trained model size")
    assert size["status"] == "unexplained" and "0.63x the paper's 2.9 MB" in size["explanation"]
    assert "the paper's own parameter count in float32 gives 0.64 MB" in size["explanation"]
    assert "the two columns disagree" in _row(d, "total training time")["explanation"]
    assert all(r["status"] == "exact" for r in d["rows"] if r["section"].startswith("Sec. IV"))


def test_condense_edited_cells(isolated, monkeypatch):
    t1 = dict(condense_tables.TABLE1)
    t1["condensenet"] = ("62.38", "0.52", "94.24%", "10.9 MB")  # perfsim's MACs; the state without momentum
    t2 = dict(condense_tables.TABLE2)
    t2["condensenext"] = ("01:04:44", "19.42")
    monkeypatch.setattr(condense_tables, "TABLE1", t1)
    monkeypatch.setattr(condense_tables, "TABLE2", t2)
    d = condense_analysis.analyse_condensenet()
    assert _row(d, "FLOPs")["status"] == "exact"
    size = _row(d, "trained model size")
    assert size["status"] == "explained" and "the training form's state in float32" in size["explanation"]
    nxt = condense_analysis.analyse_condensenext()
    assert "consistent with the printed total 01:04:44" in _row(nxt, "total training time")["explanation"]
    # the latency section's ratios read the same cells
    assert "FLOPs in the ratio 0.382" in nxt["latency"]["sentences"][1]


# ----- FastNet (paper 003) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def fastnet(graph_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFSIM_CACHE_DIR", str(graph_cache))
        return fastnet_analysis.analyse()


def test_fastnet_verdicts(fastnet):
    assert _numbers(fastnet) == {"exact": 18, "explained": 1, "unexplained": 0}
    r = _row(fastnet, "final 1x1 unit cells (Summary)")
    assert (r["status"], r["paper"], r["perfsim"]) == ("explained", "2", "3")
    assert "'Finally, we stack two 1 x 1 Unit Cells" in r["explanation"]
    assert "a printed error: the paper itself says 3 elsewhere" in r["explanation"]
    assert "'15 layer' - '12' 3x3 layers: 3" in r["explanation"]
    p = _row(fastnet, "parameters")
    assert p["status"] == "exact" and "1,617,386 is also 1.6 M" in p["explanation"]


def test_fastnet_edited_cells(isolated, monkeypatch):
    structure = dict(fastnet_tables.STRUCTURE)
    structure["summary_1x1"] = ("3",) + structure["summary_1x1"][1:]
    structure["conv_layers"] = ("14",) + structure["conv_layers"][1:]
    monkeypatch.setattr(fastnet_tables, "STRUCTURE", structure)
    monkeypatch.setattr(fastnet_tables, "COMPARISON", {"fastnet": ("93.98", "70.81", "1.7 M")})
    d = fastnet_analysis.analyse()
    assert _row(d, "final 1x1 unit cells (Summary)")["status"] == "exact"
    assert _row(d, "conv layers")["status"] == "unexplained"
    p = _row(d, "parameters")
    assert p["status"] == "unexplained" and "0.945x the paper's 1.7 M" in p["explanation"]
    assert "the 100-class head gives 1,617,386" in p["explanation"]


# ----- accuracy cells: the paper's figure, and perfsim eval's where one exists ----------------
def _eval_json(folder, model, dataset, top1, top5=None, classes=10):
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": "perfsim-eval/1", "model": model, "width": 1.0, "num_classes": classes, "dataset": dataset,
           "input_side": 32, "epoch": 200, "top1": top1, "top5": top5}
    (folder / "eval.json").write_text(json.dumps(doc))


def test_accuracy_cells_read_eval_results(isolated, capsys):
    _eval_json(isolated / "runs" / "fastnet" / "cifar10", "fastnet", "cifar10", 0.9123)
    _eval_json(isolated / "runs" / "other", "mobilenet", "cifar10", 0.5)
    d = fastnet_analysis.analyse(results=isolated / "runs")
    r = _row(d, "top-1 accuracy, cifar10")
    assert r["status"] == "measured" and r["perfsim"] == "91.23 %"
    assert "2.75 points below the paper's 93.98%" in r["explanation"] and "eval.json" in r["explanation"]
    assert _row(d, "top-1 accuracy, cifar100")["status"] == "not measured"
    rc, out, err = cli_run(capsys, "paper", "fastnet", "--results", "runs", "--json")
    assert rc == 0, err
    assert json.loads(out)["counts"]["measured"]["rows"] == 1


# ----- the command ---------------------------------------------------------------------------
def test_paper_list_names_every_paper(capsys):
    rc, out, err = cli_run(capsys, "paper", "--list")
    assert rc == 0 and err == ""
    for name, paper in (("mobilenet", "001"), ("clcnet", "002"), ("condensenet", "000"), ("condensenext", "000"),
                        ("fastnet", "003")):
        assert any(line.startswith(name) and f"paper {paper}" in line for line in out.splitlines()), name
    assert out.count("covers:") == 5


@pytest.mark.parametrize("name", ["clcnet", "condensenet", "condensenext", "fastnet"])
def test_paper_report_folder(isolated, capsys, name):
    import csv

    from perfsim.papers.report import COLUMNS
    rc, out, err = cli_run(capsys, "paper", name, "--out", "p")
    assert rc == 0, err
    assert "verdict" in out and out.rstrip().endswith("p/")
    folder = isolated / "p"
    assert {f.name for f in folder.iterdir() if not f.name.startswith(".")} == \
        {"paper.md", "paper_rows.csv", "paper.json", "paper.png"}
    d = json.loads((folder / "paper.json").read_text())
    rows = list(csv.DictReader((folder / "paper_rows.csv").open()))
    assert tuple(rows[0]) == COLUMNS and len(rows) == len(d["rows"])
    assert [r["explanation"] for r in rows] == [r["explanation"] for r in d["rows"]]
    md = (folder / "paper.md").read_text()
    assert "## Verdict" in md and d["verdict"][0] in md and "![paper.png](paper.png)" in md
    assert (folder / "paper.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paper_unknown_name(capsys):
    rc, out, err = cli_run(capsys, "paper", "resnet50")
    assert_input_error(rc, out, err, "unknown paper 'resnet50'", "clcnet", "--list")


def test_transcribed_accuracies_agree_with_pareto_figures():
    """papers/accuracy.py (perfsim pareto's paper figures) and the reports' tables hold the same cells."""
    from perfsim.papers.accuracy import REPORTED
    figures = {(r.model, r.dataset): r.top1 for r in REPORTED if r.width == 1.0}
    cells = {("clcnet_a", "imagenet"): clcnet_tables.TABLE3["clcnet_a"][1],
             ("clcnet_b", "imagenet"): clcnet_tables.TABLE3["clcnet_b"][1],
             ("clcnet_ap", "imagenet"): clcnet_tables.TABLE4["clcnet_ap"][0],
             ("mobilenet_v1", "imagenet"): clcnet_tables.TABLE5["mobilenet_v1"][0],
             ("condensenet", "cifar10"): condense_tables.TABLE1["condensenet"][2],
             ("condensenext", "cifar10"): condense_tables.TABLE1["condensenext"][2],
             ("fastnet", "cifar10"): fastnet_tables.COMPARISON["fastnet"][0],
             ("fastnet", "cifar100"): fastnet_tables.COMPARISON["fastnet"][1]}
    for key, cell in cells.items():
        assert figures[key] * 100 == pytest.approx(Figure.parse(cell).value), key
