"""Every number the command line takes has a bound (perfsim/cli/bounds.py): one line and exit 2 beyond it.

`perfsim run mobilenet --batch <400 digits>` ended in "internal error: OverflowError" (exit 1). The
numeric parameters are read from the click command objects themselves, so an integer or float option
(or argument) added later without a bound type fails ``test_every_number_has_a_bound``, and is then
fed the hostile values below like every other one.
"""
from __future__ import annotations

import math

import click
import pytest
from cli_checks import assert_input_error, cli_run

from perfsim.cli import cli
from perfsim.cli.bounds import (BATCH, CHANNELS, CLASSES, EPOCHS, KERNEL_AREA, LR, MULTIPLIER, SEED, THREADS,
                                BoundedFloat, BoundedInt)
from perfsim.errors import InputError


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, path + (name,))
        else:
            yield path + (name,), command


COMMANDS = dict(_commands(cli))
NUMERIC = [(path, command, param) for path, command in COMMANDS.items() for param in command.params
           if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType))]
INTEGERS = [(path, p) for path, _, p in NUMERIC if isinstance(p.type, click.types.IntParamType)]
FLOATS = [(path, p) for path, _, p in NUMERIC if isinstance(p.type, click.types.FloatParamType)]


def _id(path, param) -> str:
    return " ".join(path) + " " + (param.opts[0] if isinstance(param, click.Option) else param.human_readable_name)


def _placeholder(param: click.Parameter) -> str:
    if isinstance(param.type, click.Choice):
        return str(param.type.choices[0])
    if isinstance(param.type, (BoundedInt, BoundedFloat)):
        return str(param.type.max)
    return "x"


def _argv(path, command, target, value) -> list[str]:
    """A command line giving ``value`` to ``target`` and a placeholder to every other required parameter
    (the arguments after ``--``, so that a negative value is an argument, not an option)."""
    options, arguments = [], []
    for param in command.params:
        if isinstance(param, click.Argument):
            arguments.append(value if param is target else _placeholder(param))
        elif param is target:
            options += [param.opts[0], value]
        elif param.required:
            options += [param.opts[0], _placeholder(param)]
    return list(path) + options + (["--"] + arguments if arguments else [])


def _name(param) -> str:
    return f"'{param.opts[0]}'" if isinstance(param, click.Option) else f"'{param.human_readable_name}'"


def test_the_parameters_are_found():
    found = {_id(path, p) for path, _, p in NUMERIC}
    assert {"run --batch", "compare --batch", "sweep --batch", "calibrate --threads", "validate --repeats",
            "validate --warmup", "train --seed", "train --stop-after", "train --lr", "eval --batch-size",
            "clc-groups M", "clc-groups --kernel-area", "export-topology --classes", "run --width"} <= found
    assert len(INTEGERS) >= 21 and len(FLOATS) >= 9


@pytest.mark.parametrize("path,param", INTEGERS + FLOATS, ids=[_id(*x) for x in INTEGERS + FLOATS])
def test_every_number_has_a_bound(path, param):
    """click.INT or a plain IntRange (no digit cap, no nan refusal) is not enough: a type from perfsim.cli.bounds."""
    assert isinstance(param.type, (BoundedInt, BoundedFloat)), _id(path, param)
    assert param.type.min is not None and param.type.max is not None
    assert not param.type.clamp


def _values(t: click.ParamType) -> list[str]:
    """Hostile values for a numeric type; with its bounds (a type without them still gets the huge ones)."""
    low, high = getattr(t, "min", None), getattr(t, "max", None)
    if isinstance(t, click.types.IntParamType):
        values = ["9" * 400, "-" + "9" * 400, "9" * 5000, "x", "1.5", ""]
        values += [] if low is None else [str(low - 1)] + [v for v in ("0", "-1") if int(v) < low]
        return values + ([] if high is None else [str(high + 1)])
    values = ["1e400", "-1e400", "nan", "inf", "-inf", "x", "9" * 400]
    if low is not None:
        values += ["-1"] + (["0", "1e-400"] if getattr(t, "min_open", False) and low == 0 else [str(low - 1)])
    return values + ([] if high is None else [f"{high * 1.0000001!r}"])


CASES = [(path, command, param, value) for path, command, param in NUMERIC for value in _values(param.type)]


@pytest.mark.parametrize("path,command,param,value", CASES,
                         ids=[f"{_id(p, q)}={v[:12]}" for p, _, q, v in CASES])
def test_past_the_bound_is_one_line_exit_2(path, command, param, value, capsys, isolated):
    rc, out, err = cli_run(capsys, *_argv(path, command, param, value))
    assert_input_error(rc, out, err, _name(param))
    assert "internal error" not in err and len(err) < 300, err
    if value not in ("x", "1.5", "") and hasattr(param.type, "_describe_range"):  # the message gives the range
        assert param.type._describe_range() in err, err
    assert list(isolated.iterdir()) == []  # nothing written


@pytest.mark.parametrize("path,param", INTEGERS + FLOATS, ids=[_id(*x) for x in INTEGERS + FLOATS])
def test_the_edges_are_accepted_and_the_help_shows_them(path, param):
    t = param.type
    for edge in ([t.min, t.max] if isinstance(t, BoundedInt) else [t.max] + ([] if t.min_open else [t.min])):
        assert t.convert(str(edge), param, None) == edge
    if isinstance(t, BoundedFloat) and t.min_open:
        assert t.convert(repr(math.nextafter(t.min, math.inf)), param, None) > t.min
    if isinstance(param, click.Option):
        command = COMMANDS[path]
        with click.Context(command, info_name=path[-1]) as ctx:
            assert t._describe_range() in " ".join(command.get_help(ctx).split()), _id(path, param)


# --------------------------------------------------------------------------
# The largest values run (or give one InputError line), and the bounds are the library's
# --------------------------------------------------------------------------

BIG_SRAM = ("--set", "sram_bytes=64GiB")


@pytest.mark.parametrize("argv", [
    ["run", "mobilenet", "--no-plots", "--json", *BIG_SRAM],
    ["run", "mobilenet", "--no-plots", "--profile", "systolic_32x32", *BIG_SRAM],
    ["compare", "mobilenet", "fastnet", "--no-plots", *BIG_SRAM],
    ["sweep", "mobilenet", "--no-plots", "--vary", "sram_bytes=1MiB,64GiB"],
], ids=["run", "run-systolic", "compare", "sweep"])
def test_the_largest_batch_runs(argv, capsys, isolated):
    rc, out, err = cli_run(capsys, *argv, "--batch", BATCH.max, "--out", "rep")
    assert rc == 0, err
    assert "internal error" not in err and (isolated / "rep").is_dir()


def test_the_largest_batch_on_a_small_sram_is_one_line(capsys, isolated):
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--batch", BATCH.max)
    assert_input_error(rc, out, err, "smallest SRAM")


def test_the_largest_training_values_configure(capsys, isolated):
    rc, out, err = cli_run(capsys, "train", "mobilenet", "--dataset", "digits", "--print-config",
                           "--epochs", EPOCHS.max, "--stop-after", EPOCHS.max, "--batch-size", BATCH.max,
                           "--lr", LR.max, "--seed", SEED.max, "--threads", THREADS.max, "--width", MULTIPLIER.max)
    assert rc == 0, err
    assert f"seed {SEED.max}" in out and f"threads {THREADS.max}" in out


def test_the_largest_clc_groups_values_answer(capsys):
    rc, out, err = cli_run(capsys, "clc-groups", CHANNELS.max, CHANNELS.max, CHANNELS.max,
                           "--kernel-area", KERNEL_AREA.max, "--json")
    assert rc == 0, err


def test_the_bounds_are_the_librarys():
    from perfsim.accuracy.recipes import Recipe
    from perfsim.frontends.sources import MAX_CLASSES
    from perfsim.papers.clcnet_design import MAX_CHANNELS, MAX_KERNEL_AREA
    from perfsim.sim import MAX_BATCH

    def le(field):
        return next(m.le for m in Recipe.model_fields[field].metadata if getattr(m, "le", None) is not None)

    assert BATCH.max == MAX_BATCH == le("batch_size")
    assert EPOCHS.max == le("epochs") and LR.max == le("lr")
    assert (CLASSES.max, CHANNELS.max, KERNEL_AREA.max) == (MAX_CLASSES, MAX_CHANNELS, MAX_KERNEL_AREA)
    from perfsim.host.calibrate import calibrate
    with pytest.raises(InputError, match=f"{THREADS.max}"):
        calibrate(threads=THREADS.max + 1)


def test_the_seed_bound_is_torchs():
    import torch
    torch.manual_seed(SEED.max)
    torch.Generator().manual_seed(SEED.max)
    with pytest.raises((ValueError, RuntimeError, OverflowError)):
        torch.Generator().manual_seed(SEED.max + 1)
    torch.manual_seed(0)


@pytest.mark.parametrize("batch", [0, -1, 10**400, 2**16 + 1, 1.0, True, "2"])
def test_the_library_refuses_a_batch_past_the_bound(batch, isolated):
    from perfsim.explore.compare import simulate_models
    from perfsim.explore.sweep import sweep_frame
    from perfsim.explore.vary import parse_vary
    from perfsim.frontends.sources import load_graph
    from perfsim.hardware.loader import load_profile
    from perfsim.report.run import run_model
    from perfsim.sim.simulator import simulate

    graph = load_graph("mobilenet").graph
    hw = load_profile("edge_1mb")
    for call in (lambda: simulate(graph, hw, batch=batch),
                 lambda: run_model("mobilenet", batch=batch, plots=False),
                 lambda: simulate_models(["mobilenet"], batch=batch),
                 lambda: sweep_frame(graph, hw, [parse_vary("sram_bytes=1MiB,2MiB", hw)], batch=batch)):
        with pytest.raises(InputError, match="batch must be an integer from 1 to 65,536"):
            call()
    assert list(isolated.iterdir()) == []


def test_the_library_runs_the_largest_batch(isolated):
    from perfsim.frontends.sources import load_graph
    from perfsim.hardware.loader import load_profile
    from perfsim.sim import MAX_BATCH
    from perfsim.sim.simulator import simulate

    graph = load_graph("mobilenet_v1").graph
    one = simulate(graph, load_profile("edge_1mb", sram_bytes=2**40), batch=1).summary
    most = simulate(graph, load_profile("edge_1mb", sram_bytes=2**40), batch=MAX_BATCH).summary
    assert most["macs"] == one["macs"] * MAX_BATCH and math.isfinite(most["latency_s"])
