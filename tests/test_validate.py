"""``perfsim validate``: measured calls line up with perfsim's rows, the statistics are right, the
report is written safely, bad input is one line. No timing is asserted."""
from __future__ import annotations

import json
import math
import textwrap

import pytest

from cli_checks import assert_input_error, cli_run
from perfsim.cli import main
from perfsim.errors import InputError
from perfsim.host.validate import RowCheck, Validation, format_validation, median_abs, spearman

TINY = textwrap.dedent("""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))
            y = y + self.dw(y)
            return self.fc(y.mean((2, 3)).flatten(1))

    def make():
        return Tiny()
""")


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    return f"{path}:make"


def test_spearman_and_median():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([1, 1, 2], [1, 1, 2]) == pytest.approx(1.0)  # ties take average ranks
    assert math.isnan(spearman([1, 2], [2, 1]))
    assert median_abs([-3.0, 1.0, 2.0]) == 2.0


def test_every_call_of_a_model_lines_up_with_a_row(tiny, isolated):
    from perfsim.host.validate import validate
    v = validate(tiny, "edge_1mb", threads=1, warmup=1, repeats=2,
                 options=__import__("perfsim.frontends.sources", fromlist=["ModelOptions"]).ModelOptions(input_shape=(3, 8, 8)))
    from perfsim.frontends.lowering import lower_traced
    from perfsim.frontends.sources import ModelOptions, build_module
    module, shape, _ = build_module(tiny, ModelOptions(input_shape=(3, 8, 8)))
    layers = lower_traced(module, (1,) + shape).graph.layers
    assert [r.layer for r in v.rows] == [layer.name for layer in layers]  # every row was measured
    assert sum(r.calls for r in v.rows) >= len(layers)
    conv = v.rows[0]
    assert conv.op == "conv" and conv.calls == 3  # conv, BN, ReLU: one row, three calls
    assert all(r.measured_q1_s <= r.measured_s <= r.measured_q3_s for r in v.rows)
    assert v.rows_measured_s == pytest.approx(sum(r.measured_s for r in v.rows))
    assert v.predicted_s > 0 and v.measured_s > 0 and v.threads == 1
    d = v.to_dict()
    assert d["worst_op"] in {r.op for r in v.rows} and {x["op"] for x in d["by_op"]} == {r.op for r in v.rows}
    json.dumps(d)


def test_validate_command_writes_csv_json_and_plot(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERFSIM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "val"
    rc = main(["validate", tiny, "--profile", "edge_1mb", "--input-shape", "3x8x8", "--threads", "1",
               "--repeats", "2", "--warmup", "0", "--out", str(out), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] and d["threads"] == 1 and -1 < d["error"] < math.inf
    assert {p.name for p in out.iterdir()} >= {"validation.csv", "validation.json", "scatter.png"}
    import pandas as pd
    frame = pd.read_csv(out / "validation.csv")
    assert list(frame.columns[:5]) == ["layer", "op", "calls", "predicted_s", "measured_s"]
    assert (frame.measured_s > 0).all()


def test_validate_refuses_what_it_cannot_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"not really")
    assert_input_error(*cli_run(capsys, *["validate", "mobilenet", "--profile", "no_such_profile"]), "unknown profile")
    assert_input_error(*cli_run(capsys, *["validate", "mobilenet", "--profile", "edge_1mb", "--repeats", "0"]),
                       "--repeats", "1<=x<=1,000")
    assert_input_error(*cli_run(capsys, *["validate", "nope_model", "--profile", "edge_1mb"]), "unknown model")
    assert_input_error(*cli_run(capsys, *["validate", "mobilenet"]), "perfsim calibrate")  # no host profile yet
    assert_input_error(*cli_run(capsys, *["validate", str(tmp_path / "m.onnx"), "--profile", "edge_1mb"]), "")


def test_the_report_folder_is_never_a_users_folder(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_input_error(*cli_run(capsys, *["validate", tiny, "--profile", "edge_1mb", "--input-shape", "3x8x8", "--repeats", "1",
                                "--threads", "1", "--out", str(out)]), "")
    assert (out / "notes.txt").read_text() == "mine"


def test_the_allocator_setting_is_checked_and_reported_for_the_whole_process():
    import subprocess
    import sys
    code = textwrap.dedent("""
        from perfsim.errors import InputError
        from perfsim.host.measure import set_allocator
        try:
            set_allocator("jemalloc")
        except InputError as e:
            print("refused:", e)
        print(set_allocator("system"), set_allocator("keep"), set_allocator("system"))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "refused: --allocator must be one of keep, system" in out
    # glibc here: keep takes; it has no undo, so a later "system" reports that keep still holds
    assert out.splitlines()[-1] == "system keep keep"


def test_validate_times_with_the_calibrations_allocator(tiny, tmp_path, monkeypatch, isolated):
    from perfsim.hardware.loader import load_profile
    from perfsim.frontends.sources import ModelOptions
    from perfsim.host.validate import validate
    calibration = {"perfsim_version": "x", "date": "d", "threads": 1}
    assert load_profile("edge_1mb", calibration=calibration).calibration.allocator == "system"  # older files
    seen = []
    import perfsim.host.measure as hosttime
    real = hosttime.time_module
    monkeypatch.setattr(hosttime, "time_module", lambda *a, **k: seen.append(k["allocator"]) or real(*a, **k))
    options = ModelOptions(input_shape=(3, 8, 8))
    v = validate(tiny, "edge_1mb", overrides=(), threads=1, warmup=0, repeats=1, options=options)
    assert seen == ["keep"] and v.allocator in ("keep", "system")  # no calibration: keep
    path = tmp_path / "p.yaml"
    path.write_text("extends: edge_1mb\ncalibration: {perfsim_version: x, date: d, threads: 1, allocator: system}\n")
    validate(tiny, str(path), threads=1, warmup=0, repeats=1, options=options)
    assert seen[-1] == "system"
    validate(tiny, str(path), threads=1, warmup=0, repeats=1, options=options, allocator="keep")
    assert seen[-1] == "keep"


def test_worst_op_ignores_ops_with_little_time():
    rows = [RowCheck("a", "conv", 1, 1.0, 1.0, 1.0, 1.0), RowCheck("b", "relu", 1, 0.001, 0.01, 0.01, 0.01),
            RowCheck("c", "conv_dw", 1, 0.5, 1.0, 1.0, 1.0)]
    v = Validation(model="m", profile="p", threads=1, rows=rows, predicted_s=1.5, measured_s=2.0, measured_q1_s=2.0,
                   measured_q3_s=2.0, rows_measured_s=2.01, unattributed_s=0.0, unattributed_calls=0,
                   spearman=0.5, load_before=(0, 0, 0), load_after=(0, 0, 0), host={})
    assert v.worst_op()["op"] == "conv_dw"  # relu is off by 10x but holds 0.5 % of the time
    assert v.error == pytest.approx(-0.25)


def test_the_error_is_told_apart_from_the_machines_spread():
    """-25 % is inside a spread of 30 % (the calibration's run-to-run movement) and outside a spread of 5 %
    (the interquartile range alone); the wider of the two counts (issue 20)."""
    base = dict(model="m", profile="p", threads=1, rows=[], predicted_s=1.5, measured_s=2.0, measured_q1_s=1.95,
                measured_q3_s=2.05, rows_measured_s=2.0, unattributed_s=0.0, unattributed_calls=0, spearman=0.9,
                load_before=(0, 0, 0), load_after=(0, 0, 0), host={})
    quiet, noisy = Validation(**base), Validation(**base, machine_spread=0.3)
    assert quiet.spread == pytest.approx(0.05) and not quiet.within_spread
    assert noisy.spread == pytest.approx(0.3) and noisy.within_spread


def test_the_prediction_is_read_at_the_speed_the_machine_had(tiny, tmp_path):
    """A calibration keeps the speed probe it ran at; a validation at the same thread count times its own and
    reads the prediction at that speed (a machine 25 % slower now: the prediction x1.25); without both probes,
    or at another thread count, it says nothing (issue 20: this guest's speed moves up to 2x between runs)."""
    from perfsim.host.measure import speed_probe
    from perfsim.host.validate import validate
    base = dict(model="m", profile="p", threads=1, rows=[], predicted_s=1.6, measured_s=2.0, measured_q1_s=1.95,
                measured_q3_s=2.05, rows_measured_s=2.0, unattributed_s=0.0, unattributed_calls=0, spearman=0.9,
                load_before=(0, 0, 0), load_after=(0, 0, 0), host={})
    slow = Validation(**base, probe_s=500e-6, calibration_probe_s=400e-6)
    assert slow.slowdown == pytest.approx(1.25) and slow.error == pytest.approx(-0.2)
    assert slow.error_at_speed == pytest.approx(0.0)  # 1.6 x 1.25 = 2.0
    assert "x1.25 as slow" in format_validation(slow) and slow.to_dict()["error_at_speed"] == pytest.approx(0.0)
    for v in (Validation(**base), Validation(**base, probe_s=500e-6)):
        assert v.slowdown is None and v.error_at_speed is None and "host speed" not in format_validation(v)
    assert 0 < speed_probe() < 1.0
    probe = {"value": 400e-6, "q1": 390e-6, "q3": 410e-6, "n": 9, "unit": "s"}
    from perfsim.frontends.sources import ModelOptions
    options = ModelOptions(input_shape=(3, 8, 8))
    for threads, expected in ((1, 400e-6), (2, None)):
        path = tmp_path / f"p{threads}.yaml"
        path.write_text("extends: edge_1mb\ncalibration: {perfsim_version: x, date: d, threads: 1, "
                        f"measurements: {{speed_probe: {probe}}}}}\n".replace("'", ""))
        v = validate(tiny, str(path), threads=threads, warmup=0, repeats=2, options=options)
        assert v.probe_s and v.probe_s > 0 and v.calibration_probe_s == expected
        assert (v.slowdown is None) == (expected is None)


# --------------------------------------------------------------------------
# Same input, matching, the zeros graph (issue 21)
# --------------------------------------------------------------------------

BRANCHY = textwrap.dedent("""
    import torch
    from torch import nn

    class Branchy(nn.Module):
        '''Its ops depend on the input's values: a branch, a loop's length and a top-1 route.'''

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.wide = nn.Conv2d(8, 16, 1)
            self.narrow = nn.Conv2d(8, 16, 3, padding=1, groups=8)
            self.step = nn.Conv2d(16, 16, 1)
            self.gate = nn.Linear(16, 3)
            self.experts = nn.ModuleList(nn.Linear(16, 4 * (i + 1)) for i in range(3))

        def forward(self, x):
            y = self.stem(x)
            y = self.wide(y) if y.abs().sum() > 0 else self.narrow(y)  # zeros: narrow
            for _ in range(int(y.abs().mean() > 0) * 2):  # zeros: no step
                y = torch.relu(self.step(y))
            p = y.mean((2, 3))
            expert = int(self.gate(p).argmax()) if p.abs().sum() > 0 else 0
            return self.experts[expert](p)

    def make():
        torch.manual_seed(0)  # every build the same weights: the same expert for the same input
        return Branchy()
""")

PATCHY = textwrap.dedent("""
    import torch
    from torch import nn

    class Patchy(nn.Module):
        '''LeViT's and PVT-v2's patterns: a linear on tokens that are a transposed view of a conv's map
        (folding them into one matrix takes a copy), and a depthwise conv on tokens viewed as a map
        (channels-last at batch 1 to is_contiguous, not to the convolution: its output is NCHW).'''

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 2, stride=2)
            self.qkv = nn.Linear(16, 32)
            self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
            self.fc = nn.Linear(32, 16)

        def forward(self, x):
            y = self.stem(x)
            b, c, h, w = y.shape
            t = self.qkv(y.flatten(2).transpose(1, 2))
            m = self.dw(t.transpose(1, 2).view(b, 32, h, w))
            return self.fc(torch.nn.functional.gelu(m.flatten(2).transpose(1, 2)))

    def make():
        return Patchy()
""")

FICKLE = textwrap.dedent("""
    import torch
    from torch import nn

    class Fickle(nn.Module):
        '''Runs other calls on its first forward (the capture) than later, and an extra op every third.'''

        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                       nn.Conv2d(8, 8, 1), nn.ReLU())
            self.first = nn.Conv2d(8, 8, 3, padding=1)
            self.later = nn.Conv2d(8, 8, 1)
            self.head = nn.Linear(8, 4)
            self.n = 0

        def forward(self, x):
            self.n += 1
            y = self.trunk(x)
            y = self.first(y) if self.n == 1 else self.later(y)
            if self.n % 3 == 0:
                y = y * 2
            return self.head(y.mean((2, 3)))

    def make():
        return Fickle()
""")

SWITCH = textwrap.dedent("""
    import torch
    from torch import nn

    class Switch(nn.Module):
        '''Its first forward and the later ones share nothing.'''

        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(*[nn.Conv2d(3, 3, 1) for _ in range(6)])
            self.b = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(6)])
            self.n = 0

        def forward(self, x):
            self.n += 1
            return self.a(x) if self.n == 1 else torch.sigmoid(self.b(x))

    def make():
        return Switch()
""")


def _model(tmp_path, text: str, name: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return f"{path}:make"


def _validate(model, shape=(3, 8, 8), **kw):
    from perfsim.frontends.sources import ModelOptions
    from perfsim.host.validate import validate
    return validate(model, "edge_1mb", threads=1, warmup=kw.pop("warmup", 1), repeats=kw.pop("repeats", 2),
                    options=ModelOptions(input_shape=shape), **kw)


def test_align_pairs_equal_calls_in_order():
    from perfsim.host.match import align
    assert align("abc", "abc") == [(0, 0), (1, 1), (2, 2)]
    assert align("abxc", "abc") == [(0, 0), (1, 1), (3, 2)]  # a branch's extra call is left out
    assert align("abc", "aybzc") == [(0, 0), (1, 2), (2, 4)]
    assert align("", "ab") == [] and align("ab", "cd") == []


def test_a_data_dependent_forward_is_captured_on_the_input_it_is_timed_on(isolated):
    """zeros take the narrow branch, no loop step and expert 0; the random input another path, and the rows
    predicted are those of its capture; the zeros graph `run` uses is reported beside them."""
    from perfsim.frontends.lowering import lower_traced
    from perfsim.frontends.sources import ModelOptions, build_module, load_graph
    from perfsim.host.measure import random_input
    model = _model(isolated, BRANCHY, "branchy")
    v = _validate(model)
    module, shape, _ = build_module(model, ModelOptions(input_shape=(3, 8, 8)))
    measured = lower_traced(module, (1,) + shape, input=random_input((1,) + shape)).graph
    zeros = load_graph(model, ModelOptions(input_shape=(3, 8, 8))).graph
    assert [r.layer for r in v.rows] == [layer.name for layer in measured.layers]  # every row measured
    names = {layer.name for layer in measured.layers}
    assert any(n.startswith("wide") for n in names) and any(n.startswith("step") for n in names)
    assert not any(n.startswith("narrow") for n in names)
    assert any(layer.name.startswith("narrow") for layer in zeros.layers)
    assert v.matched_calls == v.captured_calls == v.timed_calls and v.unmatched_s == 0 and v.unmatched_calls == 0
    g = v.graph
    assert g.same_ops is False and (g.macs, g.rows) == (measured.macs, len(measured.layers))
    assert (g.zeros_macs, g.zeros_rows) == (zeros.macs, len(zeros.layers)) and g.zeros_rows < g.rows
    d = v.to_dict()
    assert d["graph"]["same_ops"] is False and d["graph"]["zeros_rows"] == g.zeros_rows
    assert "on zeros (perfsim run) other ops" in format_validation(v)


def test_levit_and_pvt_patterns_line_up_call_for_call(isolated):
    """A 3-D linear on a transposed view, a depthwise conv on a view of tokens: the timed forward runs the
    capture's calls (parameters do not require grad while timing, as in the capture), and the zeros
    capture's stand-in conv output has PyTorch's layout, so the graph on zeros is the same."""
    model = _model(isolated, PATCHY, "patchy")
    v = _validate(model, shape=(3, 8, 8))
    assert v.matched_calls == v.captured_calls == v.timed_calls
    assert v.unmatched_s == 0 and v.rows_unmatched == 0 and v.rounds_differing == 0
    assert v.graph.same_ops is True and "the same ops on zeros" in format_validation(v)
    assert {r.op for r in v.rows} >= {"linear", "conv_dw"}


def test_calls_that_differ_between_runs_are_matched_and_the_rest_reported(isolated):
    model = _model(isolated, FICKLE, "fickle")
    v = _validate(model, warmup=0, repeats=3)  # timed forwards 5, 9 (an extra op: 9 % 3 == 0) and 13
    assert v.rows and v.matched_calls < v.captured_calls
    assert v.rows_unmatched >= 1 and v.rows_unmatched_predicted_s > 0  # `first` ran in the capture only
    assert not any(r.layer.startswith("first") for r in v.rows)
    assert any(d["path"] == "later" and d["measured_s"] > 0 for d in v.unmatched)  # timed only
    assert v.unmatched_s > 0 and 0 < v.unmatched_share < 1
    assert v.rounds_differing == 1 and v.unmatched_calls >= 2  # `later`'s conv, round 2's extra mul
    assert any(r.layer.startswith("trunk") for r in v.rows)
    text = format_validation(v)
    assert "calls unmatched" in text and "1 timed forwards ran other calls" in text
    json.dumps(v.to_dict())


def test_a_forward_that_shares_nothing_between_runs_is_refused_in_one_line(isolated, capsys, monkeypatch):
    monkeypatch.setattr("perfsim.cli.host._warn_if_busy", lambda threads: None)  # a busy machine warns
    model = _model(isolated, SWITCH, "switch")
    out = isolated / "val"
    rc, stdout, err = cli_run(capsys, "validate", model, "--profile", "edge_1mb", "--input-shape", "3x8x8",
                              "--threads", "1", "--repeats", "1", "--warmup", "0", "--out", out)
    assert_input_error(rc, stdout, err, "line up with its capture on the same input", "perfsim needs 50%")
    assert not out.exists()  # nothing half-written


def test_a_capture_on_an_input_computes_it_and_keeps_zeros_by_default():
    import torch
    from torch import nn

    from perfsim.frontends.lowering.capture import capture

    class Sign(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1, bias=False)
            self.extra = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            y = self.conv(x)
            return self.extra(y) if y.sum() != 0 else y  # the conv's real output decides

    m = Sign()
    with torch.no_grad():
        m.conv.weight.fill_(1.0)
    x = torch.ones(1, 1, 2, 2)
    def convs(cap):
        return [c.path for c in cap.calls if c.op == "convolution"]
    assert convs(capture(m, (1, 1, 2, 2))) == ["conv"]  # zeros
    assert convs(capture(m, (1, 1, 2, 2), x)) == ["conv", "extra"]
    with pytest.raises(InputError, match="input's shape"):
        capture(m, (1, 1, 2, 2), torch.ones(1, 1, 3, 3))


MASKED = textwrap.dedent("""
    import torch
    from torch import nn

    class Masked(nn.Module):
        '''Swin's shifted-window attention in small: a mask of -100 before the softmax makes exp(-100 - max)
        subnormal (3.7e-44 in float32), and the product with the values then reads them.'''
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(3, 24)

        def forward(self, x):
            t = x.flatten(2).transpose(1, 2)  # (1, 64, 3) tokens
            q, k, v = self.qkv(t).chunk(3, dim=-1)
            mask = torch.zeros(64, 64)
            mask[:, 32:] = -100.0
            attn = (q @ k.transpose(1, 2) * 0.0 + mask).softmax(-1)
            return (attn @ v).mean(1)

    def make():
        return Masked()
""")


def test_validate_names_the_rows_that_met_subnormal_floats(isolated, tiny):
    """Swin's masked attention writes subnormal floats (its measured cause of a 6 ms row predicted at
    0.2-0.7 ms, docs/hardware.md): validate counts them per row, names the rows and the remedy; a network
    without them says nothing."""
    from perfsim.host.measure import subnormals
    import torch
    assert subnormals([torch.tensor([1e-40, 0.0, 1.0, -1e-39]), torch.tensor([1, 2])]) == 2
    assert subnormals([torch.tensor([1e-40], dtype=torch.float64)]) == 0  # normal in double precision
    v = _validate(_model(isolated, MASKED, "masked"))
    rows = {d["layer"]: d for d in v.subnormal}
    assert rows and all(d["read"] + d["written"] > 0 for d in rows.values())
    softmax = [d for d in rows.values() if d["op"] == "softmax"]
    assert softmax and softmax[0]["written"] == 64 * 32  # every masked score, written by the softmax
    assert any(d["read"] >= 64 * 32 for d in rows.values() if d["op"] != "softmax")  # the product reads them
    assert {d["layer"] for d in v.subnormal} <= {r.layer for r in v.rows}
    text = format_validation(v)
    assert "subnormals" in text and "set_flush_denormal(True)" in text
    assert v.to_dict()["subnormal"] == v.subnormal
    plain = _validate(tiny)
    assert plain.subnormal == [] and "subnormals" not in format_validation(plain)
