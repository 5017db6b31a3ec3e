"""The HTML report of `optkit check`: one self-contained page (inline CSS and SVG, no scripts, nothing
fetched) with the verdict matrix, the latency-estimate calibration, and per model the accuracy and size
after each pass, a per-layer latency/FLOPs chart and the per-layer quantization error."""

from __future__ import annotations

from html import escape

from optkit.harness.gate import Cell, CheckReport, ModelSummary

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:24px;color:#1d2330;max-width:1200px}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:2px solid #e3e6ec;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d8dce4;padding:4px 8px;text-align:right}
th{background:#f2f4f8}td.l,th.l{text-align:left}.pass{background:#d9f2dd}.fail{background:#f9d6d5}.noisy{background:#fff3cd}
.error{background:#e6e6e6}.info{color:#667}.badge{display:inline-block;padding:2px 10px;border-radius:10px;
font-weight:600}.badge.pass{color:#11621e}.badge.fail{color:#8c1410}.small{font-size:12px;color:#555}
.cell{min-width:170px;text-align:left}.chart{margin:6px 0 14px}
"""


def _bar_chart(rows: list[tuple[str, float, str]], color: str, width: int = 560, label_width: int = 330) -> str:
    """Horizontal bars; rows are (label, value >= 0, text shown after the bar)."""
    if not rows:
        return '<p class="info">nothing to chart</p>'
    top = max(v for _, v, _ in rows) or 1.0
    h = 16
    parts = [f'<svg class="chart" width="{label_width + width + 120}" height="{h * len(rows) + 4}" '
             f'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="DejaVu Sans, sans-serif">']
    for i, (label, value, text) in enumerate(rows):
        y = i * h + 2
        length = max(1.0, width * value / top)
        short = label if len(label) <= 48 else "…" + label[-47:]
        parts.append(f'<text x="{label_width - 6}" y="{y + 11}" text-anchor="end">{escape(short)}</text>'
                     f'<rect x="{label_width}" y="{y + 1}" width="{length:.1f}" height="{h - 4}" fill="{color}"/>'
                     f'<text x="{label_width + length + 4:.1f}" y="{y + 11}">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _cell_html(cell: Cell | None) -> str:
    if cell is None:
        return '<td class="info">—</td>'
    if cell.error:
        return f'<td class="cell error">error: {escape(cell.error[:160])}</td>'
    lines = []
    for v in cell.verdicts:
        mark = {"pass": "✔", "fail": "✘", "info": "·", "noisy": "~"}[v.status]
        if v.limit is None:
            limit = ""
        elif v.check.startswith("baseline"):
            limit = f" (was {v.limit:.4g})"
        else:
            limit = f" (budget {v.limit:g})"
        value = "—" if v.value is None else f"{v.value:.4g}"
        lines.append(f"{mark} {escape(v.check)}: {value} {escape(v.unit)}{limit}")
    kind = cell.latency.get("kind", "")
    label = {"host": "measured on host", "rpc": "measured on device (RPC)", "estimated": "estimated (roofline)",
             "counted": "estimated (instruction counts)"}.get(kind, kind)
    lines.append(f'<span class="small">latency {escape(label)}; {escape(cell.tuning)}</span>')
    return f'<td class="cell {cell.status}">' + "<br>".join(lines) + "</td>"


def _matrix(report: CheckReport) -> str:
    models = list(dict.fromkeys(c.model for c in report.cells))
    targets = list(dict.fromkeys(c.target for c in report.cells))
    cells = {(c.model, c.target): c for c in report.cells}
    head = "".join(f"<th>{escape(t)}</th>" for t in targets)
    body = "".join(f'<tr><th class="l">{escape(m)}</th>' + "".join(_cell_html(cells.get((m, t))) for t in targets)
                   + "</tr>" for m in models)
    return f'<table><tr><th class="l">model</th>{head}</tr>{body}</table>'


def _calibration(report: CheckReport) -> str:
    rows = "".join(f'<tr><td class="l">{escape(r["net"])}</td><td class="l">{escape(r["device"])}</td>'
                   f'<td>{r["published_ms"]}</td><td>{r["estimated_ms"]}</td><td>{r["error_pct"]:+.1f}%</td></tr>'
                   for r in report.calibration)
    return ('<table><tr><th class="l">network</th><th class="l">device</th><th>published ms</th>'
            f'<th>estimated ms</th><th>error</th></tr>{rows}</table>')


def _passes(summary: ModelSummary) -> str:
    rows = "".join(f'<tr><td class="l">{escape(p["after"])}</td><td>{p["nodes"]}</td><td>{p["params"]:,}</td>'
                   f'<td>{p["size_bytes"] / 1024:.1f}</td><td>{p["flops"] / 1e6:.1f}</td><td>{p["metric"]:.4f}</td></tr>'
                   for p in summary.passes)
    better = "higher" if summary.higher_is_better else "lower"
    return (f'<table><tr><th class="l">after</th><th>nodes</th><th>params</th><th>size KB</th><th>MFLOPs</th>'
            f'<th>{escape(summary.metric)} ({better} is better)</th></tr>{rows}</table>')


def _layers(cells: list[Cell], top: int = 24) -> str:
    cell = next((c for c in cells if c.layers and "ms" in c.layers[0]), None)
    if cell is not None:
        layers = sorted(cell.layers, key=lambda r: -r["ms"])[:top]
        total = sum(r["ms"] for r in cell.layers)
        chart = _bar_chart([(f'{r["name"]} ({r["op"]}{", int8" if r["int8"] else ""})', r["ms"],
                             f'{r["ms"]:.2f} ms · {r["flops"] / 1e6:.1f} MFLOPs') for r in layers], "#4f7cc9")
        return (f'<p>Per-layer latency on <b>{escape(cell.target)}</b>, <b>estimated</b> (roofline; total '
                f'{total:.1f} ms), the {len(layers)} slowest layers, with their FLOPs:</p>{chart}')
    cell = next((c for c in cells if c.layers), None)
    if cell is None:
        return ""
    layers = sorted(cell.layers, key=lambda r: -r["flops"])[:top]
    chart = _bar_chart([(f'{r["name"]} ({r["op"]})', r["flops"], f'{r["flops"] / 1e6:.1f} MFLOPs') for r in layers],
                       "#8a8f9c")
    return f"<p>Per-layer FLOPs (no device peak to estimate time on {escape(cell.target)}):</p>{chart}"


def _quant(summary: ModelSummary) -> str:
    if not summary.quant_errors:
        return ""
    rows = [(f'{e["node"]} ({e["op"]})', max(0.0, 40.0 - (e["sqnr_db"] if e["sqnr_db"] is not None else 40.0)),
             f'{e["sqnr_db"]} dB · cos {e["cosine"]:.4f}') for e in summary.quant_errors]
    return ("<p>Quantization error per layer (worst first): bar length is 40 dB minus the tensor's SQNR against "
            "the float model on calibration data, so longer is worse.</p>" + _bar_chart(rows, "#d0783a"))


def html_report(report: CheckReport) -> bytes:
    verdict = "PASSED" if report.passed else "FAILED"
    failures = "".join(f"<li>{escape(f)}</li>" for f in report.failures())
    sections = []
    for model, summary in report.models.items():
        cells = [c for c in report.cells if c.model == model]
        sections.append(f'<h2 id="{escape(model)}">{escape(model)}</h2><p>Pipeline: <code>{escape(cells[0].pipeline)}'
                        f"</code></p><h3>Accuracy and size after each pass</h3>{_passes(summary)}"
                        f"<h3>Per-layer cost</h3>{_layers(cells)}{_quant(summary)}")
    versions = ", ".join(f"{k} {v}" for k, v in report.as_dict()["versions"].items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>optkit check: {verdict}</title><style>{STYLE}</style></head>
<body><h1>optkit check <span class="badge {'pass' if report.passed else 'fail'}">{verdict}</span></h1>
<p class="small">{escape(versions)} · evaluation slice {report.options['limit']} samples · {report.options['threads']}
threads · tolerance: metric {report.tolerance.metric}, latency +{report.tolerance.latency:.0%},
size +{report.tolerance.size:.0%}</p>
{'<h2>Failures</h2><ul>' + failures + '</ul>' if failures else ''}
<h2>Verdicts per model × target</h2>
<p>Latency is <b>measured on host</b> (TVM beside onnxruntime, same run), <b>measured on a device</b> over TVM
RPC, or <b>estimated</b> by a per-layer roofline where neither is available; each cell says which.</p>
{_matrix(report)}
<h2>Latency estimate calibration</h2>
<p>The roofline's efficiencies are fitted to these published timings (networks rebuilt in optkit): estimated vs
published.</p>{_calibration(report)}
{''.join(sections)}
</body></html>
"""
    return page.encode()
