"""``perfsim train``, ``perfsim eval`` and ``perfsim pareto``: the accuracy side of perfsim.

Registered on the main group at the end of perfsim/cli.py. Bad input raises InputError (one line
on stderr, exit 2, printed by cli.main). torch is imported inside the commands only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import InputError
from .bounds import BATCH, EPOCHS, LR, MULTIPLIER, SEED, THREADS

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
EVAL_FORMAT = "perfsim-eval/1"
EVAL_NAME = "eval.json"
DEFAULT_THREADS = min(2, os.cpu_count() or 1)


def _overrides(epochs, batch_size, lr, sets) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in sets:
        if "=" not in item:
            raise InputError(f"--set takes FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            out[key] = value
    return out


def _default_out(model: str, width: float, dataset: str) -> Path:
    from ..report.run import safe_name

    return Path("runs") / safe_name(model + (f"_w{width:g}" if width != 1.0 else "")) / dataset


def _check_out(out: Path, resume: str | None) -> None:
    """A fresh run never overwrites a file: the folder must not hold a run's files, unless the
    run resumes from the checkpoint in that very folder."""
    from ..accuracy.checkpoints import CHECKPOINT_NAME, RUN_FILES

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if resume is not None and Path(resume).resolve() == (out / CHECKPOINT_NAME).resolve():
        return
    clash = [name for name in RUN_FILES if (out / name).exists()]
    if clash:
        raise InputError(f"{out} already holds a training run ({', '.join(clash)}); give another "
                         f"--out, or --resume {out / CHECKPOINT_NAME}")


def _print_config(config, out: Path | None, data) -> None:
    click.echo("perfsim train: configuration (override with --epochs/--batch-size/--lr/--set FIELD=VALUE)")
    net = config.net
    click.echo(f"  model        {net.model}  width {net.width:g}  classes {net.num_classes}")
    click.echo(f"  data         {config.dataset}  {data or '(bundled with scikit-learn)'}")
    click.echo(f"  run          seed {config.seed}  device {config.device}  threads {config.threads}"
               + (f"  out {out}" if out is not None else ""))
    recipe = config.recipe.choices()
    sources = recipe.pop("sources")
    for key, value in recipe.items():
        click.echo(f"  {key:<14} {value}")
    if config.recipe.own:
        click.echo("  NOTE         this recipe is perfsim's own adaptation, not the paper's")
    for topic, where in sources:
        click.echo(f"  source       {topic}: {where}")


def _config(model, dataset, data, width, seed, device, threads, overrides, stop_after):
    from ..accuracy.config import NetOptions, RunConfig, check_device
    from ..accuracy.data import NUM_CLASSES, resolve_dataset
    from ..accuracy.recipes import apply_overrides, recipe_for
    from ..frontends.sources import ModelOptions
    from ..frontends.zoo import get

    get(model)  # unknown model: one line
    ModelOptions(width=width).check()
    name = resolve_dataset(dataset, data)
    recipe = apply_overrides(recipe_for(model, name), overrides)
    net = NetOptions(model=model, num_classes=NUM_CLASSES[name], width=float(width))
    get(model).factory_kwargs(num_classes=net.num_classes, width=width if width != 1.0 else None)
    check_device(device)
    return RunConfig(net=net, dataset=name, recipe=recipe, seed=seed, device=device,
                     threads=threads, stop_after=stop_after)


def _input_side(model: str) -> int:
    from ..frontends.zoo import get

    return get(model).input_shape[1]


@click.command(context_settings=CONTEXT)
@click.argument("model")
@click.option("--data", type=click.Path(), default=None,
              help="Folder holding cifar-10-batches-py/ or cifar-100-python/ (or that folder). "
                   "Not needed for --dataset digits. Nothing is downloaded.")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100", "digits"]), default=None,
              help="Data set [default: found from --data].")
@click.option("--epochs", type=EPOCHS, default=None, help="Epochs [default: the paper's].")
@click.option("--batch-size", type=BATCH, default=None, help="Batch size [default: the paper's].")
@click.option("--lr", type=LR, default=None, help="Initial learning rate [default: the paper's].")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="Override any recipe field (repeatable), e.g. --set schedule=cosine, "
                   "--set milestones=80,120 --set factors=0.1,0.01. See --print-config.")
@click.option("--width", type=MULTIPLIER, default=1.0, show_default=True, help="Width multiplier alpha.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=THREADS, default=DEFAULT_THREADS, show_default=True,
              help="CPU threads for torch (results are repeatable for a given count).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seeds the weights, the shuffling/augmentation and dropout.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder [default: runs/<model>[_w<alpha>]/<dataset>/].")
@click.option("--resume", type=click.Path(), default=None, help="Checkpoint to continue exactly from.")
@click.option("--stop-after", type=EPOCHS, default=None,
              help="Stop (checkpointed) once this many epochs are done; --resume continues.")
@click.option("--print-config", is_flag=True, help="Print the configuration and exit.")
def train(model, data, dataset, epochs, batch_size, lr, sets, width, device, threads, seed, out, resume,
          stop_after, print_config):
    """Train zoo MODEL with its paper's recipe (see --print-config) on CIFAR-10/100 or digits.

    Prints the configuration and one line per epoch (loss, accuracy, ETA); writes
    checkpoint.pt (every epoch, atomically), metrics.csv, curves.png and config.json.
    """
    config = _config(model, dataset, data, width, seed, device, threads,
                     _overrides(epochs, batch_size, lr, sets), stop_after)
    out_dir = Path(out) if out is not None else _default_out(model, config.net.width, config.dataset)
    if print_config:
        _print_config(config, out_dir, data)
        return
    _check_out(out_dir, resume)
    from ..accuracy.checkpoints import CONFIG_NAME, check_resume, load_checkpoint
    from ..accuracy.data import load_splits
    from ..accuracy.train import check_data, fit
    from ..files import write_atomic

    if resume is not None:  # a wrong checkpoint is refused before anything is printed or loaded
        check_resume(config, load_checkpoint(resume), resume)
    splits = load_splits(config.dataset, data, _input_side(model))
    check_data(config, splits[0])
    _print_config(config, out_dir, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / CONFIG_NAME, json.dumps(config.choices(), indent=2) + "\n")
    rows = fit(config, *splits, out_dir, resume=resume)
    last = rows[-1]
    click.echo(f"done: {last['epoch']} epochs, val top-1 {last['val_top1']:.2%}, "
               f"{last['elapsed_s']:.0f} s training; run folder {out_dir}/")


def _write_eval(result: dict, path: Path) -> None:
    from ..files import write_atomic

    if path.exists():
        try:
            ours = json.loads(path.read_text()).get("format") == EVAL_FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise InputError(f"{path} exists and is not a perfsim evaluation; give another --out")
    write_atomic(path, json.dumps(result, indent=2) + "\n")


@click.command("eval", context_settings=CONTEXT)
@click.argument("model")
@click.option("--checkpoint", "checkpoint", type=click.Path(), required=True, help="A perfsim train checkpoint.")
@click.option("--data", type=click.Path(), default=None, help="CIFAR folder (not needed for digits).")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100", "digits"]), default=None,
              help="[default: the checkpoint's]")
@click.option("--width", type=MULTIPLIER, default=None, help="Width multiplier [default: the checkpoint's; "
              "a different one is refused].")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=THREADS, default=DEFAULT_THREADS, show_default=True, help="CPU threads for torch.")
@click.option("--batch-size", type=BATCH, default=256, show_default=True, help="Test images per forward.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help=f"JSON file [default: {EVAL_NAME} beside the checkpoint].")
def evaluate_cmd(model, checkpoint, data, dataset, width, device, threads, batch_size, out):
    """Top-1 (and top-5 with 20+ classes) of a trained MODEL on the test split, as JSON.
    CondenseNet-style networks are evaluated after conversion to the test-time network."""
    from ..accuracy.checkpoints import check_checkpoint_net, load_checkpoint
    from ..accuracy.config import NetOptions, check_device
    from ..accuracy.evaluation import evaluate_checkpoint
    from ..frontends.sources import ModelOptions
    from ..frontends.zoo import get

    get(model)
    ModelOptions(width=width).check()
    check_device(device)
    ckpt = load_checkpoint(checkpoint)
    saved = NetOptions(**ckpt["net"])
    check_checkpoint_net(ckpt, NetOptions(model, saved.num_classes,
                                          saved.width if width is None else float(width)), checkpoint)
    name = dataset or ckpt["config"]["dataset"]
    result = evaluate_checkpoint(ckpt, saved, name, data, device=device, threads=threads,
                                 batch_size=batch_size, side=_input_side(model))
    result.update(format=EVAL_FORMAT, checkpoint=str(checkpoint))
    path = Path(out) if out is not None else Path(checkpoint).parent / EVAL_NAME
    _write_eval(result, path)
    click.echo(json.dumps(result, indent=2))


@click.command(context_settings=CONTEXT)
@click.option("--profile", "profile_name", default="edge_1mb", show_default=True,
              help="Hardware profile: a name (see `perfsim profiles`) or a YAML path.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="Override a profile field.")
@click.option("--results", type=click.Path(), default=None,
              help="Folder searched for eval.json files (perfsim eval); else only the papers' figures.")
@click.option("--models", default=None, help="Comma-separated zoo models [default: all with an accuracy].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Report folder [default: reports/pareto/<profile>/].")
@click.option("--no-plots", is_flag=True, help="Write the table only.")
def pareto(profile_name, overrides, results, models, out, no_plots):
    """Top-1 accuracy against predicted latency and MACs for every model with an accuracy:
    measured by `perfsim eval` where available, else the paper's figure (marked 'paper')."""
    from ..accuracy.pareto import collect_points, format_table, pareto_rows, write_pareto
    from ..frontends.zoo import get
    from ..hardware.loader import load_profile
    from ..report.run import safe_name

    names = None if models is None else [m.strip() for m in models.split(",") if m.strip()]
    for name in names or []:
        get(name)
    hw_name = load_profile(profile_name).name
    points = collect_points(Path(results) if results is not None else None, names)
    rows = pareto_rows(points, profile_name, overrides)
    folder = write_pareto(rows, Path(out) if out else Path("reports") / "pareto" / safe_name(hw_name),
                          plots=not no_plots)
    click.echo(format_table(rows))
    click.echo(f"\nwritten: {folder}/pareto.csv")
