"""The house's layout, read from the code's own imports (lazy ones and TYPE_CHECKING ones included).

perfsim's folders are floors of one pipeline, from the bottom (README, "Layout"):

    leaves (errors, units, registry, files, children, arith, _version)
    -> ir -> hardware -> sim | frontends -> report -> explore | host | accuracy | papers -> cli
    -> the package root (the API: lower, load_profile, simulate)

A module imports only from its own floor or lower ones; no two modules import each other, however
indirectly; torch is imported only where it is needed (lowering, the model sources, measuring this
machine, training); no module passes ``MAX_LINES``; every folder is a package that pyproject.toml ships.
``check`` returns every violation as one line; a test below plants each kind of violation in a scratch
copy of a package and shows that it is caught.
"""
from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 500

# (floor, folders or leaf modules on it), from the bottom
FLOORS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("_version", "errors", "units", "registry", "files", "children", "arith")),
    (1, ("ir",)),
    (2, ("hardware",)),
    (3, ("sim", "frontends")),
    (4, ("report",)),
    (5, ("explore", "host", "accuracy", "papers")),
    (6, ("cli",)),
)
ROOT_FLOOR = 7  # perfsim/__init__.py: the API facade may reach anything; nothing imports it
# where torch may be imported: lowering, where models come from, measuring this machine, training
TORCH_ALLOWED = ("frontends.lowering.", "frontends.sources", "frontends.thirdparty", "host.", "accuracy.")


def modules(package: Path) -> dict[str, Path]:
    """``{dotted name relative to the package ('' for its root): file}``."""
    out = {}
    for f in sorted(package.rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        rel = f.relative_to(package).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = f
    return out


def floor_of(name: str) -> int | None:
    if name == "":
        return ROOT_FLOOR
    head = name.split(".")[0]
    for floor, members in FLOORS:
        if head in members:
            return floor
    return None


def _resolve(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The dotted target (relative to the package) of a relative import in module ``name``."""
    parts = name.split(".") if name else []
    base = parts if is_package else parts[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(package: Path, pkg_name: str = "perfsim") -> dict[str, set[str]]:
    """Each module's imports of other modules of the package (every import statement, wherever it is)."""
    mods = modules(package)
    out: dict[str, set[str]] = {}
    for name, path in mods.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    target = _resolve(name, path.name == "__init__.py", node)
                elif node.module and (node.module == pkg_name or node.module.startswith(pkg_name + ".")):
                    target = node.module[len(pkg_name) + 1:]
                else:
                    continue
                for alias in node.names:  # `from . import zoo` imports a module
                    sub = f"{target}.{alias.name}" if target else alias.name
                    found.add(sub if sub in mods else target)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(pkg_name + "."):
                        target = alias.name[len(pkg_name) + 1:]
                        found.add(target if target in mods else target.rpartition(".")[0])
        out[name] = {t for t in found if t in mods and t != name}
    return out


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other through imports (each group once, sorted)."""
    reach = {v: _reach(graph, v) for v in graph}
    groups = {tuple(sorted(w for w in reach[v] if v in reach.get(w, ()))) for v in graph if v in reach[v]}
    return sorted(list(g) for g in groups)


def _torch_imports(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "torch":
            return True
    return False


def _floors(mods: dict[str, Path], graph: dict[str, set[str]]) -> list[str]:
    problems = [f"{name or '(package root)'}: on no floor (add its folder to FLOORS, or move it into one)"
                for name in sorted(mods) if floor_of(name) is None]
    for name, targets in sorted(graph.items()):
        for t in sorted(targets):
            a, b = floor_of(name), floor_of(t)
            if a is not None and b is not None and b > a:
                problems.append(f"back-arrow: {name or '(package root)'} (floor {a}) imports {t} (floor {b})")
            if t == "" and name:
                problems.append(f"{name} imports the package root (import what it needs from its module)")
    return problems


def _modules_themselves(mods: dict[str, Path]) -> list[str]:
    problems = []
    for name, path in sorted(mods.items()):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            problems.append(f"{name or '(package root)'}: {lines} lines, more than {MAX_LINES}")
        if _torch_imports(path) and not (name + ".").startswith(TORCH_ALLOWED) and name not in TORCH_ALLOWED:
            problems.append(f"{name}: imports torch (allowed only in {', '.join(TORCH_ALLOWED)})")
    return problems


def _shipped(package: Path, pyproject: Path, pkg_name: str) -> list[str]:
    problems = []
    listed = set(re.findall(r'"(perfsim(?:\.[\w.]+)?)"', pyproject.read_text(encoding="utf-8")))
    for init in sorted(package.rglob("__init__.py")):
        dotted = ".".join((pkg_name,) + init.parent.relative_to(package).parts)
        if dotted not in listed:
            problems.append(f"{dotted}: a package pyproject.toml does not ship (add it to packages)")
    for folder in sorted(p for p in package.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        if any(folder.glob("*.py")) and not (folder / "__init__.py").exists():
            problems.append(f"{folder.relative_to(package)}: a folder of modules with no __init__.py")
    return problems


def check(package: Path, pyproject: Path | None = None, pkg_name: str = "perfsim") -> list[str]:
    """Every violation of the layout, one line each (empty: the house is in order)."""
    mods = modules(package)
    graph = imports(package, pkg_name)
    problems = _floors(mods, graph)
    problems += ["import cycle: " + " <-> ".join(c) for c in _cycles({k: {t for t in v if t} for k, v in graph.items()})]
    problems += _modules_themselves(mods)
    if pyproject is not None:
        problems += _shipped(package, pyproject, pkg_name)
    return problems


def test_the_house_is_in_order():
    problems = check(ROOT / "perfsim", ROOT / "pyproject.toml")
    assert not problems, "\n".join(problems)


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "perfsim"
    for rel, text in files.items():
        f = pkg / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text), encoding="utf-8")
    return pkg


BASE = {
    "__init__.py": "",
    "errors.py": "class InputError(Exception):\n    pass\n",
    "ir/__init__.py": "",
    "ir/graph.py": "from ..errors import InputError\n",
    "sim/__init__.py": "",
    "sim/timing.py": "from ..ir.graph import InputError\n",
    "report/__init__.py": "",
    "report/text.py": "from ..sim.timing import InputError\n",
}


def test_a_clean_scratch_package_passes(tmp_path):
    assert check(_plant(tmp_path, BASE)) == []


@pytest.mark.parametrize("rel, text, expected", [
    # a lazy import inside a function, from a higher floor
    ("sim/timing.py", "def f():\n    from ..report.text import InputError\n", "back-arrow: sim.timing (floor 3) imports report.text (floor 4)"),
    # an annotation-only import counts too
    ("ir/graph.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..sim.timing import X\n",
     "back-arrow: ir.graph (floor 1) imports sim.timing (floor 3)"),
    ("report/text.py", "def f():\n    import torch\n", "report.text: imports torch"),
    ("sim/timing.py", "x = 1\n" * (MAX_LINES + 1), f"sim.timing: {MAX_LINES + 1} lines, more than {MAX_LINES}"),
    ("misc.py", "x = 1\n", "misc: on no floor"),
    ("ir/graph.py", "from .. import errors\nfrom .. import __version__\n", "ir.graph imports the package root"),
])
def test_a_planted_violation_is_caught(tmp_path, rel, text, expected):
    problems = check(_plant(tmp_path, dict(BASE, **{rel: text})))
    assert any(p.startswith(expected) for p in problems), problems


def test_two_modules_that_import_each_other_are_caught(tmp_path):
    """Of one floor, each allowed alone; together, by a lazy absolute import, a cycle."""
    problems = check(_plant(tmp_path, dict(BASE, **{
        "sim/results.py": "from .timing import InputError\n",
        "sim/timing.py": "import perfsim.errors\n\ndef f():\n    import perfsim.sim.results\n"})))
    assert problems == ["import cycle: sim.results <-> sim.timing"]


def test_a_package_pyproject_does_not_ship_is_caught(tmp_path):
    pkg = _plant(tmp_path, dict(BASE, **{"sim/memory/__init__.py": "", "sim/memory/plan.py": "x = 1\n",
                                          "host/loose.py": "x = 1\n"}))
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('packages = ["perfsim", "perfsim.ir", "perfsim.sim", "perfsim.report"]\n')
    problems = check(pkg, pyproject)
    assert "perfsim.sim.memory: a package pyproject.toml does not ship (add it to packages)" in problems
    assert "host: a folder of modules with no __init__.py" in problems
