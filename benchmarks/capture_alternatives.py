"""Ways to capture one forward, measured (docs/lowering.md, "Capture"). Not part of the test suite.

    python benchmarks/capture_alternatives.py [--warm 5]

For each way and model, a fresh process imports torch, builds the model, then times the first
capture (cold: what a ``perfsim run`` with an empty cache pays, torch import excluded) and the median
of ``--warm`` more, on one thread. It also says whether the way imported ``torch._dynamo`` (2.5 s
here on first use). The ways:

- ``fx``: ``torch.fx.symbolic_trace`` and ``ShapeProp`` on zeros (perfsim's former path: it fails on
  shape-dependent Python control flow);
- ``dispatch_real``: a ``TorchDispatchMode`` that records every ATen call on real zeros, computing all;
- ``perfsim``: ``perfsim.frontends.lowering.capture`` (dispatch on real zeros, convolutions and matrix products
  not computed, torch's flop counter nested);
- ``meta``: the forward on meta tensors (``torch.func.functional_call`` with meta parameters) under a
  recording dispatch mode: no arithmetic, but Python control flow on values fails;
- ``fake``: ``FakeTensorMode`` with the real parameters converted;
- ``export``: ``torch.export.export`` (a full graph capture through dynamo).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

WAYS = ("fx", "dispatch_real", "perfsim", "meta", "fake", "export")
MODELS = {"mobilenet_v1": (3, 224, 224), "vit_b_16": (3, 224, 224)}


def _model(name: str):
    if name == "mobilenet_v1":
        from perfsim.models.mobilenet import mobilenet_v1
        return mobilenet_v1().eval()
    from perfsim.frontends.thirdparty import import_torchvision
    return import_torchvision().models.get_model(name, weights=None).eval()


def _recorder():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            return False

        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.calls.append(str(func))
            return out
    return Record


def _capture(way: str, model, shape):
    import torch
    x = torch.zeros((1,) + shape)
    if way == "fx":
        from torch.fx.passes.shape_prop import ShapeProp
        gm = torch.fx.symbolic_trace(model)
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    elif way == "dispatch_real":
        with torch.no_grad(), _recorder()():
            model(x)
    elif way == "perfsim":
        from perfsim.frontends.lowering.capture import capture
        capture(model, (1,) + shape)
    elif way == "meta":
        from torch.func import functional_call
        state = {k: torch.empty_like(v, device="meta") for k, v in model.state_dict(keep_vars=True).items()}
        with torch.no_grad(), _recorder()():
            functional_call(model, state, (x.to("meta"),))
    elif way == "fake":
        from torch._subclasses.fake_tensor import FakeTensorMode
        with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True):
            model(x)
    elif way == "export":
        torch.export.export(model, (x,))


def one(way: str, name: str, warm: int) -> dict:
    import torch
    torch.set_num_threads(1)
    torch.backends.mha.set_fastpath_enabled(False)
    model, shape = _model(name), MODELS[name]
    t = time.perf_counter()
    try:
        _capture(way, model, shape)
    except Exception as e:
        return {"way": way, "model": name, "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120]}"}
    cold = time.perf_counter() - t
    times = []
    for _ in range(warm):
        t = time.perf_counter()
        _capture(way, model, shape)
        times.append(time.perf_counter() - t)
    return {"way": way, "model": name, "cold_s": round(cold, 3), "warm_median_s": round(statistics.median(times), 3),
            "imports_dynamo": "torch._dynamo" in sys.modules}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--one", nargs=2, metavar=("WAY", "MODEL"))
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.warm)))
        return 0
    print("| way | model | first capture (s) | warm median (s) | imports torch._dynamo |\n|---|---|---:|---:|---|")
    for name in MODELS:
        for way in WAYS:
            out = subprocess.run([sys.executable, __file__, "--one", way, name, "--warm", str(args.warm)],
                                 capture_output=True, text=True)
            try:
                r = json.loads(out.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                r = {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:120]}
            if "error" in r:
                print(f"| {way} | {name} | fails: {r['error']} | | |")
            else:
                print(f"| {way} | {name} | {r['cold_s']} | {r['warm_median_s']} | {r['imports_dynamo']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
