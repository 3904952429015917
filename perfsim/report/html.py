"""One self-contained HTML file per report (``--html``): tables, plots embedded as data URIs, and an
inline SVG chart whose bars show their table row on hover. A leaf of the report folder: each page takes
what it shows as arguments (the writers in ``run``, ``compare`` and ``sweep`` pass their totals text and
plot names). No external resource of any kind, so the
file can be mailed or opened offline; its script only reads the page.

Test hook: opened with ``#selftest`` the page hovers its first bar itself and records the tooltip's
text in ``body[data-selftest]`` (tests/test_html_report.py reads it from a headless browser's DOM).
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..units import format_bytes, format_count, format_seconds
from .style import TERMS

if TYPE_CHECKING:
    import pandas as pd

    from ..sim.batch import Axis
    from ..sim.results import SimResult


MAX_TABLE_ROWS = 1000  # a sweep's table in the page; the CSV holds them all

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px} .sub{color:#666;margin:0 0 12px}
table{border-collapse:collapse;font-size:12px} th,td{padding:3px 8px;border-bottom:1px solid #e4e4e4;text-align:right;
white-space:nowrap} th{position:sticky;top:0;background:#f6f6f6} td.t,th.t{text-align:left}
.scroll{max-height:520px;overflow:auto;border:1px solid #ddd} tr.hl td{background:#fff3c4}
.chart{overflow-x:auto;border:1px solid #ddd;padding:4px} .bar{cursor:pointer} .bar:hover rect{opacity:.75}
#tip{position:fixed;display:none;background:#222;color:#fff;font-size:12px;padding:6px 8px;border-radius:4px;
pointer-events:none;max-width:460px;white-space:pre;z-index:10} img{max-width:100%;border:1px solid #eee}
.legend span{display:inline-block;margin-right:14px} .legend i{display:inline-block;width:11px;height:11px;
margin-right:4px;vertical-align:-1px} dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}
dt{color:#666} dd{margin:0}
"""

_JS = """
(function(){
  var tip=document.getElementById('tip');
  function rowOf(bar){return document.getElementById('row-'+bar.getAttribute('data-row'));}
  function show(bar,x,y){
    var row=rowOf(bar); if(!row) return;
    document.querySelectorAll('tr.hl').forEach(function(r){r.classList.remove('hl');});
    row.classList.add('hl');
    var heads=document.querySelectorAll('#rows thead th'), cells=row.querySelectorAll('td'), lines=[];
    for(var i=0;i<cells.length&&i<heads.length;i++){lines.push(heads[i].textContent+': '+cells[i].textContent);}
    tip.textContent=lines.join('\\n'); tip.style.display='block';
    tip.style.left=Math.min(x+14,window.innerWidth-480)+'px'; tip.style.top=Math.max(8,y-20)+'px';
  }
  document.querySelectorAll('.bar').forEach(function(bar){
    bar.addEventListener('mousemove',function(e){show(bar,e.clientX,e.clientY);});
    bar.addEventListener('mouseleave',function(){tip.style.display='none';});
    bar.addEventListener('click',function(){var r=rowOf(bar); if(r) r.scrollIntoView({block:'center'});});
  });
  if(location.hash==='#selftest'){
    var first=document.querySelector('.bar');
    if(first){first.dispatchEvent(new MouseEvent('mousemove',{clientX:50,clientY:50,bubbles:true}));}
    document.body.setAttribute('data-selftest',tip.textContent);
  }
  document.body.setAttribute('data-ready','yes');
})();
"""



def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _page(title: str, subtitle: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n<h1>{_e(title)}</h1>"
            f"<p class=\"sub\">{_e(subtitle)}</p>\n{body}\n<div id=\"tip\"></div>\n<script>{_JS}</script>\n"
            "</body></html>\n")


def _image(folder: Path, name: str, alt: str) -> str:
    path = folder / name
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<p><img alt=\"{_e(alt)}\" src=\"data:image/png;base64,{data}\"></p>\n"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, text_cols: int = 1, ids: bool = True) -> str:
    head = "".join(f"<th class=\"t\">{_e(h)}</th>" if k < text_cols else f"<th>{_e(h)}</th>"
                   for k, h in enumerate(headers))
    out = [f"<div class=\"scroll\"><table id=\"rows\"><thead><tr>{head}</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cells = "".join(f"<td class=\"t\">{_e(c)}</td>" if k < text_cols else f"<td>{_e(c)}</td>"
                        for k, c in enumerate(row))
        out.append(f"<tr id=\"row-{i}\">{cells}</tr>" if ids else f"<tr>{cells}</tr>")
    out.append("</tbody></table></div>\n")
    return "\n".join(out)


def _bars(labels: Sequence[str], terms: Sequence[Sequence[float]], unit_label: str) -> str:
    """Stacked bars (data, matrix, vector) as inline SVG; bar i carries data-row=i (its table row)."""
    n = len(labels)
    step = max(6.0, min(40.0, 1100.0 / max(n, 1)))
    height, left, top, bottom = 300, 60, 12, 40
    width = left + step * n + 20
    peak = max((sum(t) for t in terms), default=0.0) or 1e-30
    scale = (height - top - bottom) / peak
    parts = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0f}\" height=\"{height}\" role=\"img\">",
             f"<line x1=\"{left}\" y1=\"{height - bottom}\" x2=\"{width - 10:.0f}\" y2=\"{height - bottom}\" "
             "stroke=\"#999\"/>",
             f"<text x=\"4\" y=\"{top + 10}\" font-size=\"11\">{_e(unit_label)}</text>",
             f"<text x=\"4\" y=\"{top + 24}\" font-size=\"11\">max {_e(format_seconds(peak))}</text>"]
    for i, (label, t) in enumerate(zip(labels, terms)):
        x = left + i * step
        y = height - bottom
        rects = []
        for v, (_, _, color) in zip(t, TERMS):
            h = v * scale
            y -= h
            rects.append(f"<rect x=\"{x + 0.5:.1f}\" y=\"{y:.2f}\" width=\"{max(1.0, step - 1.5):.1f}\" "
                         f"height=\"{max(h, 0.0):.2f}\" fill=\"{color}\"/>")
        hit = (f"<rect x=\"{x:.1f}\" y=\"{top}\" width=\"{step:.1f}\" height=\"{height - bottom - top}\" "
               "fill=\"transparent\"/>")
        parts.append(f"<g class=\"bar\" data-row=\"{i}\"><title>{_e(label)}</title>{hit}{''.join(rects)}</g>")
    parts.append("</svg>")
    legend = "".join(f"<span><i style=\"background:{c}\"></i>{_e(name)}</span>" for _, name, c in TERMS)
    return (f"<div class=\"legend\">{legend} (hover a bar to see its row; click to scroll to it)</div>"
            f"<div class=\"chart\">{''.join(parts)}</div>\n")


def _profile_list(resolved: dict[str, Any]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in resolved.items()
                            if k != "description") + "</dl>\n"


# --------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------

_RUN_COLUMNS = ("#", "layer", "op", "out_shape", "MACs", "weights", "SRAM used", "DRAM read", "DRAM write",
                "spills", "tiles", "data", "matrix", "vector", "time", "bound")


def run_html(result: SimResult, totals_text: str, folder: Path | None = None, plot_names: Sequence[str] = ()) -> str:
    """The page of one run: ``totals_text`` (the terminal's totals), the per-layer chart (hover = row), the layer
    table in the units a person reads (layers.csv keeps bytes and seconds), the plots ``plot_names`` in
    ``folder``, and the profile."""
    s, p = result.totals, result.profile
    rows = [(i, r.layer, r.op, r.out_shape, format_count(r.macs), format_bytes(r.weight_bytes),
             format_bytes(r.sram_used_bytes), format_bytes(r.dram_read_bytes), format_bytes(r.dram_write_bytes),
             format_bytes(r.spill_bytes) if r.spill_bytes else "-", r.tiles, format_seconds(r.t_data_s),
             format_seconds(r.t_matrix_s), format_seconds(r.t_vector_s), format_seconds(r.t_total_s), r.bound.value)
            for i, r in enumerate(result.rows)]
    body = [f"<h2>Totals</h2><pre>{_e(totals_text)}</pre>",
            "<h2>Time per layer</h2>",
            _bars([r.layer for r in result.rows], [(r.t_data_s, r.t_matrix_s, r.t_vector_s) for r in result.rows],
                  "time per layer"),
            f"<h2>Layers ({len(rows)})</h2>", _table(_RUN_COLUMNS, rows, text_cols=4)]
    if folder is not None:
        body.append("<h2>Plots</h2>")
        body += [_image(folder, name, name) for name in plot_names]
    body += ["<h2>Profile</h2>", _profile_list(p.resolved())]
    return _page(f"perfsim: {s.model} on {p.name}",
                 f"latency {format_seconds(s.latency_s)}, {format_count(s.macs)} MACs, "
                 f"DRAM read {format_bytes(s.dram_read_bytes)}, peak SRAM {format_bytes(s.peak_sram_bytes)}",
                 "\n".join(body))


# --------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------


def compare_html(results: Sequence[SimResult], frame: pd.DataFrame, folder: Path, plot_names: Sequence[str]) -> str:
    """The page of a comparison: the totals table, latency by term (hover = row), the plots, the profile."""
    p = results[0].profile
    headers = ("model", "latency", "data", "matrix", "vector", "DRAM read", "DRAM write", "spills", "peak SRAM",
               "MACs", "params", "model size")
    rows = [(r.model, format_seconds(r.latency_s), format_seconds(r.t_data_s), format_seconds(r.t_matrix_s),
             format_seconds(r.t_vector_s), format_bytes(r.dram_read_bytes), format_bytes(r.dram_write_bytes),
             format_bytes(r.spill_bytes), format_bytes(r.peak_sram_bytes), format_count(r.macs),
             format_count(r.params), format_bytes(r.model_size_bytes)) for r in frame.itertuples(index=False)]
    body = ["<h2>Totals</h2>", _table(headers, rows),
            "<h2>Latency by term</h2>",
            _bars(list(frame.model), list(zip(frame.t_data_s, frame.t_matrix_s, frame.t_vector_s)), "latency"),
            "<h2>Plots</h2>"] + [_image(folder, name, name) for name in plot_names]
    body += ["<h2>Profile</h2>", _profile_list(p.resolved())]
    return _page(f"perfsim compare on {p.name}", f"{len(results)} models, batch {results[0].batch}",
                 "\n".join(body))


# --------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------


def sweep_html(frame: pd.DataFrame, axes: Sequence[Axis], meta: dict[str, Any], knee_text: dict[str, str],
               folder: Path, plot_names: Sequence[str]) -> str:
    """The page of a sweep: each model's knee (``knee_text``: model -> the knee as a person reads it), the
    plots, the points (the first ``MAX_TABLE_ROWS``) and the base profile."""
    fields = [a.field for a in axes]
    knee_rows = "".join(f"<tr><td class=\"t\">{_e(m)}</td><td>{_e(v)}</td></tr>" for m, v in knee_text.items())
    shown_rows = frame.head(MAX_TABLE_ROWS)
    columns = ["model", "point"] + fields + ["fits", "latency_s", "t_data_s", "t_matrix_s", "t_vector_s",
                                             "dram_read_bytes", "dram_write_bytes", "spill_bytes", "peak_sram_bytes",
                                             "tiled_layers"]
    rows = [[_cell(v) for v in r] for r in shown_rows[columns].itertuples(index=False)]
    note = "" if len(frame) <= MAX_TABLE_ROWS else \
        f"<p>The first {MAX_TABLE_ROWS:,} of {len(frame):,} points; sweep.csv holds them all.</p>"
    body = [f"<h2>Knee along {_e(fields[0])}</h2><p>The least {_e(fields[0])} from which on nothing spills "
            "(other fields at their first value).</p>",
            f"<table><thead><tr><th class=\"t\">model</th><th>knee</th></tr></thead><tbody>{knee_rows}</tbody>"
            "</table>", "<h2>Plots</h2>"] + [_image(folder, n, n) for n in plot_names]
    body += [f"<h2>Points ({len(frame):,})</h2>", note, _table(columns, rows, text_cols=1, ids=False),
             "<h2>Base profile</h2>", _profile_list(meta["profile"])]
    varied = ", ".join(a.spec for a in axes)
    return _page(f"perfsim sweep on {meta['profile']['name']}", f"{len(frame):,} points: {varied}", "\n".join(body))


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
