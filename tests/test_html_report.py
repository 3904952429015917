"""report.html (--html) for run, compare and sweep: parsed, and opened in a real headless browser.

The browser is Debian's ``chromium`` (``apt-get install chromium``; .ci/run installs it when it can).
Without it the browser tests skip, saying so; the parsing tests always run.
"""
from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cli_checks import cli_run


class Page(HTMLParser):
    """What a test needs of a page: table rows by table, image sources, external references, scripts."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.bars = 0
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "script":
            self.scripts += 1
            if "src" in a:
                self.external.append(a["src"])
        elif tag == "link" and a.get("href"):
            self.external.append(a["href"])
        if tag == "g" and "bar" in (a.get("class") or "").split():
            self.bars += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def check_self_contained(page: Page) -> None:
    assert page.external == []
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reports(tmp_path_factory, graph_cache):
    """One run, one compare, one sweep with --html (module scope: written once)."""
    import os

    from perfsim.cli import main
    d = tmp_path_factory.mktemp("html")
    old, oldcache = os.getcwd(), os.environ.get("PERFSIM_CACHE_DIR")
    os.chdir(d)
    os.environ["PERFSIM_CACHE_DIR"] = str(graph_cache)
    try:
        assert main(["run", "mobilenet", "--html", "--out", "run"]) == 0
        assert main(["compare", "mobilenet", "fastnet", "condensenet", "--html", "--out", "compare"]) == 0
        assert main(["sweep", "mobilenet", "--vary", "sram_bytes=32KiB..1MiB:x2", "--vary", "overlap=false,true",
                     "--html", "--out", "sweep"]) == 0
    finally:
        os.chdir(old)
        if oldcache is None:
            os.environ.pop("PERFSIM_CACHE_DIR", None)
        else:
            os.environ["PERFSIM_CACHE_DIR"] = oldcache
    return d


def test_run_page_has_every_layer_and_its_plots(reports):
    import csv
    page = parse(reports / "run" / "report.html")
    check_self_contained(page)
    layers = list(csv.DictReader((reports / "run" / "layers.csv").open()))
    table = next(t for t in page.tables if t and t[0][:2] == ["#", "layer"])
    assert [row[1] for row in table[1:]] == [r["layer"] for r in layers]
    assert page.bars == len(layers)  # one hoverable bar per layer
    assert len(page.images) == 4 and page.scripts == 1


def test_compare_and_sweep_pages(reports):
    page = parse(reports / "compare" / "report.html")
    check_self_contained(page)
    table = next(t for t in page.tables if t and t[0][0] == "model")
    assert [row[0] for row in table[1:]] == ["mobilenet", "fastnet", "condensenet"]
    assert page.bars == 3 and len(page.images) == 2
    page = parse(reports / "sweep" / "report.html")
    check_self_contained(page)
    points = next(t for t in page.tables if t and t[0][:2] == ["model", "point"])
    assert len(points) - 1 == 6 * 2
    assert len(page.images) == 2


def test_html_without_plots_keeps_only_the_page(isolated, capsys):
    rc, _, err = cli_run(capsys, "compare", "mobilenet", "fastnet", "--html", "--no-plots", "--out", "c")
    assert rc == 0, err
    assert {p.name for p in (isolated / "c").iterdir() if not p.name.startswith(".")} == \
        {"compare.csv", "compare.json", "report.html"}
    assert len(parse(isolated / "c" / "report.html").images) == 2  # embedded all the same


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium here: apt-get install chromium (Debian's package; .ci/run installs it as root)")
    return exe


def _headless(exe: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", "--enable-logging=stderr", "--v=0", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("kind", ["run", "compare", "sweep"])
def test_chromium_renders_without_console_errors_and_hover_shows_the_row(reports, kind):
    exe = _chromium()
    url = (reports / kind / "report.html").as_uri() + "#selftest"
    done = _headless(exe, "--dump-dom", url)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    assert 'data-ready="yes"' in done.stdout  # the page's script ran to its end
    if kind != "sweep":
        first = "conv" if kind == "run" else "mobilenet"
        tip = done.stdout.split('data-selftest="', 1)[1].split('"', 1)[0]
        assert tip.startswith(("#: 0", "model: mobilenet")) and first in tip  # the hovered bar's row


def test_chromium_screenshot(reports, tmp_path):
    exe = _chromium()
    shot = tmp_path / "run.png"
    done = _headless(exe, f"--screenshot={shot}", "--window-size=1400,1800",
                     (reports / "run" / "report.html").as_uri())
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
