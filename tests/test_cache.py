"""The graph cache (docs/sources.md): what its key covers, what its manifest re-checks, and that an
entry it cannot read or trust is a miss that is lowered again and replaced, never served."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import perfsim
import perfsim._version
from perfsim.frontends import cache
from perfsim.errors import UnsupportedOpError
from perfsim.frontends.sources import ModelOptions, ModelSource, load_graph

NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width={width}, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.conv(x), 1), 1))


def make(num_classes=10):
    return Net(classes=num_classes)
'''

FFT = '''
import torch
from torch import nn


class Spectral(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.fft.fft2(self.conv(x)).abs()  # no lowering rule


def make():
    return Spectral()
'''


def conv_fc_macs(width: int, side: int = 8, classes: int = 10) -> int:
    return side * side * width * 3 * 9 + width * classes


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cache"
    monkeypatch.setenv("PERFSIM_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(NET.format(width=8))
    return path


def lower_net(path, **options):
    return load_graph(f"{path}:make", ModelOptions(input_shape=(3, 8, 8), **options))


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


def run_cli(args, cwd, env_extra=None, code=None):
    """`perfsim` in a fresh process (a fresh process imports the user's files afresh); reports whether
    it imported torch."""
    code = code or ("import sys; from perfsim.cli import main; rc = main(sys.argv[1:]); "
                    "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', file=sys.stderr); sys.exit(rc)")
    env = dict(os.environ, **(env_extra or {}))
    env.pop("PERFSIM_DEBUG", None)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180)


# --------------------------------------------------------------------------
# Hits, and what the key covers
# --------------------------------------------------------------------------


def test_a_repeat_is_a_hit_with_the_same_graph(cache_folder, net):
    first = lower_net(net)
    second = lower_net(net)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.graph == first.graph and first.graph.macs == conv_fc_macs(8)
    assert len(entries(cache_folder)) == 1


def test_options_are_part_of_the_key(cache_folder, net):
    lower_net(net)
    other = lower_net(net, num_classes=3)
    assert not other.cache_hit and other.graph.macs == conv_fc_macs(8, classes=3)
    assert lower_net(net, resolution=0.5).graph.macs == conv_fc_macs(8, side=4)
    assert len(entries(cache_folder)) == 3


@pytest.mark.parametrize("what", ["torch", "perfsim", "package"])
def test_versions_and_perfsim_source_are_part_of_the_key(cache_folder, net, monkeypatch, what):
    lower_net(net)
    if what == "torch":
        real = cache.installed_version
        monkeypatch.setattr(cache, "installed_version", lambda p: "0.0.1" if p == "torch" else real(p))
    elif what == "perfsim":
        monkeypatch.setattr(perfsim._version, "__version__", perfsim.__version__ + ".post1")
    else:
        monkeypatch.setattr(cache, "package_digest", lambda: "another lowering")
    assert not lower_net(net).cache_hit


def test_the_package_digest_covers_every_python_file_of_the_package(tmp_path, monkeypatch):
    """Editing any .py under perfsim/ (a future perfsim/lowering/ package included) changes the key."""
    copy = tmp_path / "perfsim"
    shutil.copytree(Path(perfsim.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "lowering").mkdir(exist_ok=True)
    (copy / "lowering" / "rules.py").write_text("RULES = {}\n")
    monkeypatch.setattr(cache, "_PACKAGE_DIR", copy)

    def digest():
        cache.package_digest.cache_clear()
        return cache.package_digest()
    before = digest()
    (copy / "lowering" / "rules.py").write_text("RULES = {'gelu': 1}\n")
    after_rule = digest()
    (copy / "papers" / "mobilenet_analysis.py").write_text("# edited\n", encoding="utf-8")
    after_papers = digest()
    cache.package_digest.cache_clear()
    assert len({before, after_rule, after_papers}) == 3


@pytest.mark.parametrize("library, model, options", [
    ("torchvision", "torchvision:resnet18", ModelOptions(resolution=0.125)),
    ("timm", "timm:resnet10t", ModelOptions(resolution=0.25)),
])
def test_the_library_version_is_part_of_the_key(cache_folder, monkeypatch, library, model, options):
    first = load_graph(model, options)
    assert not first.cache_hit and load_graph(model, options).cache_hit
    real = cache.installed_version
    monkeypatch.setattr(cache, "installed_version", lambda p: "999.0" if p == library else real(p))
    again = load_graph(model, options)
    assert not again.cache_hit and again.graph == first.graph


def test_an_onnx_files_bytes_and_the_onnx_version_are_part_of_its_identity(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"first")
    src = ModelSource.parse(str(path))
    first = src.identity()
    path.write_bytes(b"second")
    second = src.identity()
    real = cache.installed_version
    monkeypatch.setattr(cache, "installed_version", lambda p: "0.1" if p == "onnx" else real(p))
    third = src.identity()
    assert first["sha256"] != second["sha256"] and second["onnx"] != third["onnx"] == "0.1"
    assert len({cache.key(source=i) for i in (first, second, third)}) == 3


def test_cache_dir_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERFSIM_CACHE_DIR", "~/graphs")
    assert cache.cache_dir() == tmp_path / "home" / "graphs"


def test_a_tilde_cache_dir_is_the_home_folder_end_to_end(tmp_path, net):
    done = run_cli([f"{net}:make", "--input-shape", "3x8x8", "--no-plots", "--json"], cwd=tmp_path,
                   env_extra={"HOME": str(tmp_path / "home"), "PERFSIM_CACHE_DIR": "~/graphs"},
                   code="import sys; from perfsim.cli import main; sys.exit(main(['run', *sys.argv[1:]]))")
    assert done.returncode == 0, done.stderr
    assert len(entries(tmp_path / "home" / "graphs")) == 1
    assert not (tmp_path / "~").exists()


# --------------------------------------------------------------------------
# The manifest: every source file the model imported
# --------------------------------------------------------------------------


def test_editing_the_model_file_is_a_miss(cache_folder, net):
    assert lower_net(net).graph.macs == conv_fc_macs(8)
    net.write_text(NET.format(width=16))
    again = lower_net(net)
    assert not again.cache_hit and again.graph.macs == conv_fc_macs(16)
    assert lower_net(net).cache_hit and len(entries(cache_folder)) == 1  # replaced, not added


HELPER_NET = '''
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch import nn
from pkg.sub.helper import WIDTH


def make():
    return nn.Sequential(nn.Conv2d(3, WIDTH, 3, padding=1, bias=False))
'''


def test_editing_a_helper_in_a_subpackage_is_a_miss(tmp_path):
    """Each run a fresh process, as a user runs perfsim: the edit is seen, never a stale graph."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "helper.py").write_text("WIDTH = 8\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(HELPER_NET.replace(
        "os.path.dirname(os.path.abspath(__file__))", "os.path.dirname(os.path.dirname(os.path.abspath(__file__)))"))
    args = ["run", "models/net.py:make", "--input-shape", "3x8x8", "--no-plots", "--json"]
    env = {"PERFSIM_CACHE_DIR": str(tmp_path / "cache")}
    first = run_cli(args, tmp_path, env)
    hit = run_cli(args, tmp_path, env)
    assert first.returncode == hit.returncode == 0, first.stderr + hit.stderr
    assert hit.stderr.split()[-1] == "NOTORCH"
    (tmp_path / "pkg" / "sub" / "helper.py").write_text("WIDTH = 16\n")
    edited = run_cli(args, tmp_path, env)
    assert edited.returncode == 0 and edited.stderr.split()[-1] == "TORCH"  # re-lowered
    assert json.loads(edited.stdout)["macs"] == 2 * json.loads(first.stdout)["macs"]
    header = json.loads((next((tmp_path / "cache").glob("*.json"))).read_bytes().split(b"\n")[0])
    listed = {Path(p).relative_to(tmp_path.resolve()).as_posix() for p, _ in header["manifest"]}
    assert listed == {"models/net.py", "pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/helper.py"}


def test_a_deleted_helper_is_a_miss_and_never_served(tmp_path):
    (tmp_path / "helper.py").write_text("WIDTH = 8\n")
    (tmp_path / "net.py").write_text(HELPER_NET.replace("from pkg.sub.helper import", "from helper import"))
    args = ["run", "net.py:make", "--input-shape", "3x8x8", "--no-plots", "--json"]
    env = {"PERFSIM_CACHE_DIR": str(tmp_path / "cache")}
    assert run_cli(args, tmp_path, env).returncode == 0
    (tmp_path / "helper.py").unlink()
    gone = run_cli(args, tmp_path, env)
    assert gone.returncode == 2 and "helper" in gone.stderr.splitlines()[0]
    assert gone.stdout == ""


def test_helpers_imported_earlier_in_the_process_are_still_in_the_manifest(cache_folder, tmp_path, monkeypatch):
    """In a long-lived process the helper is already in sys.modules: the model module's globals lead to it."""
    (tmp_path / "early_helper.py").write_text("WIDTH = 8\n")
    (tmp_path / "late_net.py").write_text("import early_helper\nfrom torch import nn\n\n\ndef make():\n"
                                          "    return nn.Sequential(nn.Conv2d(3, early_helper.WIDTH, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "early_helper", raising=False)
    import early_helper  # noqa: F401  (imported before perfsim lowers the model)
    load_graph(f"{tmp_path}/late_net.py:make", ModelOptions(input_shape=(3, 8, 8)))
    (tmp_path / "early_helper.py").write_text("WIDTH = 16\n")
    assert not load_graph(f"{tmp_path}/late_net.py:make", ModelOptions(input_shape=(3, 8, 8))).cache_hit


def test_condensenext_lists_condensenet_even_when_both_are_imported():
    """Both zoo files guard condensenext's entry: through the manifest when the zoo lies outside
    the package (a source tree, an editable install), else through the whole-package digest
    (an installed wheel carries the zoo inside perfsim/)."""
    import perfsim.models
    import perfsim.models.condensenext  # noqa: F401
    names = {p.name for p in cache.user_files(["perfsim.models.condensenext"])}
    package = Path(perfsim.__file__).resolve().parent
    zoo_dir = Path(perfsim.models.__path__[0]).resolve()
    if zoo_dir.is_relative_to(package):
        digested = {f.resolve() for f in package.rglob("*.py")}
        assert {zoo_dir / "condensenext.py", zoo_dir / "condensenet.py"} <= digested
    else:
        assert {"condensenext.py", "condensenet.py"} <= names


ZOO_RUN = textwrap.dedent('''
    import json, sys
    import perfsim.models
    perfsim.models.__path__[:] = [sys.argv[1]]  # the zoo's modules come from the temporary copy
    from perfsim.frontends.sources import load_graph
    lowered = load_graph("condensenext")
    print(json.dumps({"hit": lowered.cache_hit, "macs": lowered.graph.macs,
                      "torch": "torch" in sys.modules}))
''')


def test_editing_condensenet_is_a_miss_for_condensenext(tmp_path):
    """condensenext imports condensenet: editing the latter (in a temporary copy of the zoo) is a miss."""
    zoo_copy = tmp_path / "models"
    import perfsim.models
    shutil.copytree(Path(perfsim.models.__path__[0]), zoo_copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PERFSIM_CACHE_DIR=str(tmp_path / "cache"))

    def run():
        done = subprocess.run([sys.executable, "-c", ZOO_RUN, str(zoo_copy)], env=env, capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)  # not the source tree: the installed perfsim
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    first, second = run(), run()
    assert (first["hit"], second["hit"], second["torch"]) == (False, True, False)
    source = (zoo_copy / "condensenet.py").read_text()
    assert "ch = 2 * growth[0]" in source
    (zoo_copy / "condensenet.py").write_text(source.replace("ch = 2 * growth[0]", "ch = 3 * growth[0]"))
    edited = run()
    assert not edited["hit"] and edited["macs"] > first["macs"]


# --------------------------------------------------------------------------
# Entries that cannot be read or trusted: a miss, lowered again, replaced
# --------------------------------------------------------------------------


def _rewrite(entry: Path, edit) -> None:
    """Edit an entry's graph and re-seal it (its sha256), so only validation can catch the edit."""
    import hashlib
    head, body = entry.read_bytes().split(b"\n", 1)
    header, graph = json.loads(head), json.loads(body)
    edit(graph)
    body = json.dumps(graph).encode()
    header["graph_sha256"] = hashlib.sha256(body).hexdigest()
    entry.write_bytes(json.dumps(header).encode() + b"\n" + body)


CORRUPTIONS = {
    "truncated": lambda e: e.write_bytes(e.read_bytes()[: len(e.read_bytes()) // 2]),
    "empty": lambda e: e.write_bytes(b""),
    "garbage": lambda e: e.write_bytes(os.urandom(4096)),
    "not utf-8 header": lambda e: e.write_bytes(b"\xff\xfe" + e.read_bytes()),
    "json of another shape": lambda e: e.write_text('{"format": 2}\n[]'),
    "a number edited": lambda e: e.write_bytes(e.read_bytes().replace(b'"macs":', b'"macs":1', 1)),
    "wrong type": lambda e: _rewrite(e, lambda g: g["layers"][0].update(macs="many")),
    "unknown op kind": lambda e: _rewrite(e, lambda g: g["layers"][0].update(kind="teleport")),
    "missing field": lambda e: _rewrite(e, lambda g: g["layers"][0].pop("macs")),
    "dangling tensor": lambda e: _rewrite(e, lambda g: g["layers"][0].update(output=10**6)),
    "header of another key": lambda e: e.write_bytes(e.read_bytes().replace(e.stem.encode(), b"0" * 40, 1)),
    "deep nesting": lambda e: e.write_bytes(b"[" * 100_000 + b"\n"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_corrupt_entry_is_a_miss_and_is_replaced(cache_folder, net, case):
    good = lower_net(net).graph
    (entry,) = entries(cache_folder)
    CORRUPTIONS[case](entry)
    again = lower_net(net)
    assert not again.cache_hit and again.graph == good
    assert isinstance(cache.load(entry.stem), type(good))  # a valid entry again
    assert lower_net(net).cache_hit


def test_a_folder_in_place_of_an_entry_is_a_miss(cache_folder, net):
    good = lower_net(net).graph
    (entry,) = entries(cache_folder)
    entry.unlink()
    entry.mkdir()
    (entry / "keep.txt").write_text("not ours")
    for _ in range(2):
        again = lower_net(net)
        assert not again.cache_hit and again.graph == good
    assert (entry / "keep.txt").read_text() == "not ours"  # never removed


def test_an_unreadable_entry_is_a_miss(cache_folder, net, monkeypatch):
    good = lower_net(net).graph
    (entry,) = entries(cache_folder)
    real = Path.read_bytes

    def denied(self):
        if self == entry:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)
    monkeypatch.setattr(Path, "read_bytes", denied)
    again = lower_net(net)
    assert not again.cache_hit and again.graph == good


def test_an_oversized_entry_is_not_read(cache_folder, net, monkeypatch):
    lower_net(net)
    monkeypatch.setattr(cache, "MAX_ENTRY_BYTES", 10)
    assert not lower_net(net).cache_hit


def test_an_unwritable_cache_does_not_fail_the_run(tmp_path, monkeypatch, net):
    monkeypatch.setenv("PERFSIM_CACHE_DIR", str(net))  # a file where the folder should be
    assert lower_net(net).graph.macs == conv_fc_macs(8)


def test_a_failed_write_leaves_no_temporary_file(cache_folder, net, monkeypatch):
    def broken(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cache.os, "replace", broken)
    lower_net(net)
    assert list(cache_folder.iterdir()) == []


def test_concurrent_writers_never_leave_a_partial_entry(tmp_path, net):
    """Two processes store the same entry 40 times each while a third reads it: every read is a
    miss or the whole graph, and nothing temporary is left."""
    env = dict(os.environ, PERFSIM_CACHE_DIR=str(tmp_path / "cache"))
    setup = (f"from perfsim.frontends.sources import load_graph, ModelOptions; "
             f"g = load_graph({str(net) + ':make'!r}, ModelOptions(input_shape=(3, 8, 8))).graph; "
             "from perfsim.frontends import cache; import glob, os, sys; "
             "k = os.path.basename(glob.glob(os.path.join(os.environ['PERFSIM_CACHE_DIR'], '*.json'))[0])[:-5]; ")
    subprocess.run([sys.executable, "-c", setup], env=env, check=True, timeout=180)
    writer = setup + "[cache.store(k, g, []) for _ in range(40)]"
    reader = setup + ("seen = [cache.load(k) for _ in range(200)]; "
                      "assert all(s is None or s == g for s in seen), 'partial'; print(sum(s == g for s in seen))")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for code in (writer, writer, reader)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    assert int(results[2][0]) > 0
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [p.name for p in entries(tmp_path / "cache")]


# --------------------------------------------------------------------------
# Failed lowerings are cached too
# --------------------------------------------------------------------------


def test_a_failed_lowering_is_cached_and_fast_to_repeat(tmp_path):
    (tmp_path / "fft.py").write_text(FFT)
    args = ["run", "fft.py:make", "--input-shape", "3x8x8", "--no-plots"]
    env = {"PERFSIM_CACHE_DIR": str(tmp_path / "cache")}
    first = run_cli(args, tmp_path, env)
    again = run_cli(args, tmp_path, env)
    assert first.returncode == again.returncode == 2
    assert first.stderr.splitlines()[0] == again.stderr.splitlines()[0]
    assert "fft" in first.stderr.splitlines()[0] and "no lowering rule" in first.stderr.splitlines()[0]
    assert first.stderr.split()[-1] == "TORCH" and again.stderr.split()[-1] == "NOTORCH"
    bypass = run_cli(args + ["--no-cache"], tmp_path, env)
    assert bypass.returncode == 2 and bypass.stderr.split()[-1] == "TORCH"


def test_a_cached_failure_keeps_its_class_and_follows_the_manifest(cache_folder, tmp_path):
    (tmp_path / "fft.py").write_text(FFT)
    model = f"{tmp_path}/fft.py:make"
    for _ in range(2):
        with pytest.raises(UnsupportedOpError, match="no lowering rule"):
            load_graph(model, ModelOptions(input_shape=(3, 8, 8)))
    (tmp_path / "fft.py").write_text(FFT.replace("torch.fft.fft2(self.conv(x)).abs()", "self.conv(x)"))
    fixed = load_graph(model, ModelOptions(input_shape=(3, 8, 8)))
    assert not fixed.cache_hit and fixed.graph.macs == 6 * 6 * 4 * 3 * 9


def test_a_failing_user_factory_is_not_cached(tmp_path):
    """Its failure may depend on the environment (a missing package, a data file): asked again each time."""
    (tmp_path / "broken.py").write_text("def make():\n    raise FileNotFoundError('weights.bin')\n")
    args = ["run", "broken.py:make", "--input-shape", "3x8x8", "--no-plots"]
    env = {"PERFSIM_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):
        done = run_cli(args, tmp_path, env)
        assert done.returncode == 2 and "weights.bin" in done.stderr and done.stderr.split()[-1] == "TORCH"
    assert not list((tmp_path / "cache").glob("*.json"))


def test_a_library_that_fails_to_import_is_not_cached(cache_folder, monkeypatch):
    """Metadata says timm is there but importing it fails: fixed by installing, so never stored."""
    from perfsim.errors import InputError
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(InputError, match=r"perfsim\[timm\]"):
        load_graph("timm:resnet10t", ModelOptions(resolution=0.25))
    assert not cache_folder.exists() or not entries(cache_folder)
