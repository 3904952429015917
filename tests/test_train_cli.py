"""perfsim train / eval on tiny CIFAR-format batches: smoke run, exact resume, determinism,
conversion, and the bad-input contract (one line, exit 2)."""
from __future__ import annotations

import csv
import json
import pickle

import numpy as np
import pytest

from cli_checks import assert_input_error, cli_run
from test_train import crafted, write_cifar10, write_cifar100

torch = pytest.importorskip("torch")

FAST = ("--threads", "1", "--batch-size", "16")
TIMING = ("epoch_s", "elapsed_s")


def _metrics(folder):
    with open(folder / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(fh)]


def _weights(folder):
    ckpt = torch.load(folder / "checkpoint.pt", weights_only=True)
    return ckpt["model"]


def _same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture
def cifar(tmp_path):
    folder, _ = write_cifar10(tmp_path / "data", per_batch=8)
    return folder


def _train(capsys, cifar, out, *extra):
    return cli_run(capsys, "train", "mobilenet", "--data", cifar, "--width", "0.25", *FAST,
                   "--out", out, *extra)


def test_one_epoch_smoke_run_writes_the_run_folder(capsys, cifar, tmp_path):
    out = tmp_path / "run"
    rc, stdout, err = _train(capsys, cifar, out, "--epochs", "1")
    assert rc == 0, err
    assert "optimizer      rmsprop" in stdout and "crop           28" in stdout
    assert "epoch 1/1" in err and "ETA" in err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "curves.png",
                                                    "metrics.csv"]
    rows = _metrics(out)
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val_top1"]) <= 1.0
    assert json.loads((out / "config.json").read_text())["recipe"]["epochs"] == 1
    rc, stdout, err = cli_run(capsys, "eval", "mobilenet", "--checkpoint", out / "checkpoint.pt",
                              "--data", cifar, "--threads", "1")
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["images"] == 8 and result["top5"] is None and result["input_side"] == 28
    assert result["top1"] == pytest.approx(float(rows[0]["val_top1"]))
    assert json.loads((out / "eval.json").read_text())["top1"] == result["top1"]


def test_two_epochs_equal_one_then_resume(capsys, cifar, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert _train(capsys, cifar, whole, "--epochs", "2")[0] == 0
    assert _train(capsys, cifar, split, "--epochs", "2", "--stop-after", "1")[0] == 0
    assert len(_metrics(split)) == 1
    rc, _, err = _train(capsys, cifar, split, "--epochs", "2", "--resume", split / "checkpoint.pt")
    assert rc == 0, err
    assert _metrics(whole) == _metrics(split) and len(_metrics(whole)) == 2
    _same_weights(_weights(whole), _weights(split))
    a = torch.load(whole / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    b = torch.load(split / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    for k in a:
        for name in a[k]:
            assert torch.equal(a[k][name], b[k][name])


def test_runs_are_deterministic_under_a_seed(capsys, cifar, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert _train(capsys, cifar, tmp_path / name, "--epochs", "1", "--seed", seed)[0] == 0
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    _same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    wa, wc = _weights(tmp_path / "a"), _weights(tmp_path / "c")
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)  # the seed matters


def test_condensed_network_scores_the_same_after_conversion(capsys, tmp_path):
    """CondenseNeXt (focal loss, dropout, group lasso, condensation) trains one epoch; eval
    converts it and the converted network computes the training form's function."""
    data, _ = write_cifar10(tmp_path / "data", per_batch=4)
    out = tmp_path / "run"
    rc, _, err = cli_run(capsys, "train", "condensenext", "--data", data, "--epochs", "1",
                         "--threads", "1", "--batch-size", "10", "--out", out)
    assert rc == 0, err
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    stages = [v for k, v in ckpt["model"].items() if k.endswith(".stage")]
    assert stages and all(int(s) == 3 for s in stages)  # every condensation stage happened
    rc, stdout, err = cli_run(capsys, "eval", "condensenext", "--checkpoint", out / "checkpoint.pt",
                              "--data", data, "--threads", "1")
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["converted"] is True
    assert result["conversion"]["max_abs_logit_diff"] < 1e-4
    assert result["top1"] == result["conversion"]["training_form_top1"]


def test_conversion_preserves_outputs_of_a_trained_condensenet():
    from perfsim.accuracy.config import NetOptions, build_network, converted

    model = build_network(NetOptions("condensenet", 10), seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(6, 3, 16, 16)
    for p in (0.0, 0.2, 0.4, 0.6):  # a few real steps through every condensation stage
        model.update_progress(p)
        loss = model(x).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = converted(model)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(final(x), model(x), atol=1e-5, rtol=1e-5)
    assert type(final).__name__ != type(model).__name__ or final is not model


def test_cifar100_reports_top5(capsys, tmp_path):
    data, _ = write_cifar100(tmp_path / "data", n_train=16, n_test=8)
    out = tmp_path / "run"
    assert cli_run(capsys, "train", "fastnet", "--data", data, "--epochs", "1", *FAST,
                   "--out", out)[0] == 0
    rc, stdout, err = cli_run(capsys, "eval", "fastnet", "--checkpoint", out / "checkpoint.pt",
                              "--data", data, "--threads", "1")
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["num_classes"] == 100 and result["dataset"] == "cifar100"
    assert result["top1"] <= result["top5"] <= 1.0


def test_print_config_shows_each_recipe_and_overrides(capsys):
    rc, out, _ = cli_run(capsys, "train", "fastnet", "--dataset", "digits", "--print-config",
                         "--set", "milestones=10,20", "--set", "factors=0.5,0.25", "--lr", "0.01")
    assert rc == 0
    assert "optimizer      adam" in out and "milestones     [10, 20]" in out and "lr             0.01" in out
    rc, out, _ = cli_run(capsys, "train", "clcnet_a", "--dataset", "digits", "--print-config")
    assert rc == 0 and "perfsim's own" in out and "schedule       linear" in out
    rc, out, _ = cli_run(capsys, "train", "condensenext", "--dataset", "digits", "--print-config")
    assert "class_balanced_focal" in out and "nesterov       True" in out


@pytest.mark.parametrize("args, needles", [
    (("--data", "{tmp}/nowhere"), ("nowhere",)),
    (("--dataset", "cifar10"), ("--data",)),
    (("--data", "{data}", "--set", "optimizer=lbfgs"), ("optimizer",)),
    (("--data", "{data}", "--set", "warp=9"), ("warp",)),
    (("--data", "{data}", "--set", "milestones=5", "--set", "factors=0.1,0.2"), ("milestones",)),
    (("--data", "{data}", "--epochs", "0"), ("epochs",)),
    (("--data", "{data}", "--width", "1.5"), ("width",)),
    (("--data", "{data}", "--width", "0.5", "--set", "crop=40"), ("crop size 40",)),
    (("--data", "{data}", "--resume", "{tmp}/none.pt"), ("none.pt",)),
    pytest.param(("--data", "{data}", "--device", "cuda"), ("cuda",),
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")),
    (("--data", "{data}", "--resume", "{tmp}/corrupt.pt"), ("corrupt.pt",)),
])
def test_bad_training_input_is_one_line(capsys, tmp_path, cifar, args, needles):
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint at all")
    args = [a.format(tmp=tmp_path, data=cifar) for a in args]
    rc, out, err = cli_run(capsys, "train", "mobilenet", *args, "--out", tmp_path / "o")
    assert_input_error(rc, out, err, *needles)
    assert not (tmp_path / "o").exists()


def test_missing_batch_file_is_named(capsys, cifar, tmp_path):
    (cifar / "data_batch_3").unlink()
    rc, out, err = _train(capsys, cifar, tmp_path / "o", "--epochs", "1")
    assert_input_error(rc, out, err, "data_batch_3")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("how", ["os.system", "builtins.open", "truncated", "garbage"])
def test_a_crafted_or_broken_batch_is_one_line_and_runs_nothing(capsys, cifar, tmp_path, how):
    marker, batch = tmp_path / "ran", cifar / "data_batch_2"
    needles = ["data_batch_2", "not a valid pickle"]
    if how == "truncated":
        batch.write_bytes(batch.read_bytes()[:300])
    elif how == "garbage":
        batch.write_bytes(bytes(range(256)) * 4)
    else:
        payload, name = crafted(marker, how)
        needles[1:] = ["refused", name]
        with open(batch, "wb") as fh:
            pickle.dump({b"data": np.zeros((8, 3072), np.uint8), b"labels": [payload] * 8}, fh, protocol=2)
    rc, out, err = _train(capsys, cifar, tmp_path / "o", "--epochs", "1")
    assert_input_error(rc, out, err, *needles)
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_unknown_dataset_exits_2(capsys, cifar):
    rc, out, err = cli_run(capsys, "train", "mobilenet", "--dataset", "mnist", "--data", cifar)
    assert_input_error(rc, out, err, "mnist")


def test_other_model_or_options_refused(capsys, cifar, tmp_path):
    out = tmp_path / "run"
    assert _train(capsys, cifar, out, "--epochs", "1")[0] == 0
    ckpt = out / "checkpoint.pt"
    rc, stdout, err = cli_run(capsys, "eval", "fastnet", "--checkpoint", ckpt, "--data", cifar)
    assert_input_error(rc, stdout, err, "mobilenet", "fastnet")
    rc, stdout, err = cli_run(capsys, "eval", "mobilenet", "--checkpoint", ckpt, "--data", cifar,
                              "--width", "0.5")
    assert_input_error(rc, stdout, err, "width 0.25")
    rc, stdout, err = cli_run(capsys, "train", "mobilenet", "--data", cifar, "--width", "0.5",
                              "--resume", ckpt, "--out", tmp_path / "r2")
    assert_input_error(rc, stdout, err, "width 0.25")
    rc, stdout, err = _train(capsys, cifar, tmp_path / "r3", "--epochs", "1", "--lr", "0.5",
                             "--resume", ckpt)
    assert_input_error(rc, stdout, err, "recipe", "lr")
    rc, stdout, err = cli_run(capsys, "eval", "mobilenet", "--checkpoint", tmp_path / "nope.pt")
    assert_input_error(rc, stdout, err, "nope.pt")


def test_a_run_folder_is_never_overwritten(capsys, cifar, tmp_path):
    out = tmp_path / "run"
    assert _train(capsys, cifar, out, "--epochs", "1")[0] == 0
    before = (out / "metrics.csv").read_bytes()
    rc, stdout, err = _train(capsys, cifar, out, "--epochs", "1")
    assert_input_error(rc, stdout, err, "already holds", "--resume")
    assert (out / "metrics.csv").read_bytes() == before
    mine = tmp_path / "mine.json"
    mine.write_text('{"precious": true}')
    rc, stdout, err = cli_run(capsys, "eval", "mobilenet", "--checkpoint", out / "checkpoint.pt",
                              "--data", cifar, "--out", mine)
    assert_input_error(rc, stdout, err, "mine.json")
    assert json.loads(mine.read_text()) == {"precious": True}


def test_class_balanced_focal_loss():
    from perfsim.accuracy.recipes import RECIPES, apply_overrides
    from perfsim.accuracy.train import make_loss

    logits = torch.randn(12, 10)
    target = torch.arange(12) % 10
    balanced = np.arange(100) % 10
    focal0 = make_loss(apply_overrides(RECIPES["condensenext"], {"focal_gamma": 0.0}), balanced, 10)
    torch.testing.assert_close(focal0(logits, target), torch.nn.functional.cross_entropy(logits, target))
    focal = make_loss(RECIPES["condensenext"], balanced, 10)
    assert float(focal(logits, target)) < float(torch.nn.functional.cross_entropy(logits, target))
    skewed = np.array([0] * 90 + list(range(1, 10)))
    weighted = make_loss(apply_overrides(RECIPES["condensenext"], {"focal_gamma": 0.0}), skewed, 10)
    rare = torch.tensor([1])
    assert float(weighted(logits[:1], rare)) > float(focal0(logits[:1], rare))  # rare class weighs more
