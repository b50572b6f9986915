"""``report.html``: one self-contained page (images embedded as base64 PNG).

It holds the plan comparison table (CRT as the reference column), the QA
outcome per arm, the figures and 3D images, the inputs and the software
version. All inputs are plain data so any producer can fill them:

- comparison: metric name -> plan name -> value (number, text or None);
- qa: arm/plan name -> rows, each a mapping column -> value (e.g.
  {"structure": "SpinalCanal", "constraint": "D0.03cc <= 12 Gy",
  "value": 9.8, "outcome": "per protocol"}); cells reading pass/fail, per protocol,
  minor/major deviation, not evaluated are coloured; an optional verdict per arm;
- figures: (caption, image) pairs where the image is a matplotlib Figure,
  an RGB(A) uint8 array (e.g. a rendered 3D scene), PNG bytes or a PNG file;
- inputs: name -> value (files, spec parameters, prescription...);
- viewer: the data of the interactive viewer
  (:func:`lattice_plan.viz.viewer.viewer_payload`), shown first on screen and
  left out of print, where the figures stand for it.

Every text is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

import lattice_plan
from lattice_plan.errors import InputFileError, VisualizationError
from lattice_plan.files import atomic_output_path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ImageLike = Figure | NDArray | bytes | str | os.PathLike

_STATUS_CLASS = {
    "pass": "pass",
    "passed": "pass",
    "ok": "pass",
    "met": "pass",
    "per protocol": "pass",
    "fail": "fail",
    "failed": "fail",
    "violated": "fail",
    "major deviation": "fail",
    "minor": "minor",
    "warning": "minor",
    "acceptable variation": "minor",
    "minor deviation": "minor",
    "not evaluated": "na",
    "incomplete": "na",
}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .92em; }
th, td { border: 1px solid #bbb; padding: .25em .6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th.ref, td.ref { background: #eef3fb; }
.pass { background: #d8f5d8; } .fail { background: #f8d0d0; } .minor { background: #fbecc8; }
.na { background: #e4e4e4; } span.verdict { padding: 0 .4em; font-weight: normal; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; margin-top: .3em; }
.meta { color: #555; font-size: .9em; }
"""


def png_bytes(image: ImageLike, dpi: int = 100) -> bytes:
    """PNG bytes of a Figure, an RGB(A) uint8 array, PNG bytes or a PNG file path."""
    if isinstance(image, Figure):
        buf = io.BytesIO()
        image.savefig(buf, format="png", dpi=dpi)
        data = buf.getvalue()
    elif isinstance(image, np.ndarray):
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
            raise VisualizationError(
                f"an image array must be RGB or RGBA uint8 [rows, columns, 3|4], "
                f"got shape {arr.shape} dtype {arr.dtype}"
            )
        from matplotlib.image import imsave

        buf = io.BytesIO()
        imsave(buf, arr, format="png")
        data = buf.getvalue()
    elif isinstance(image, bytes):
        data = image
    elif isinstance(image, str | os.PathLike):
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(f"cannot read image file {str(path)!r}: {exc.strerror}") from exc
    else:
        raise VisualizationError(
            f"cannot embed an image of type {type(image).__name__}; pass a matplotlib Figure, "
            "an RGB uint8 array, PNG bytes or a PNG file path"
        )
    if not data.startswith(PNG_SIGNATURE):
        raise VisualizationError("the image to embed is not a PNG (wrong file signature)")
    return data


def _fmt(value: object) -> tuple[str, bool]:
    """Cell text (unescaped) and whether it is numeric."""
    if value is None:
        return "–", False
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else "no"), False
    if isinstance(value, int | np.integer):
        return str(int(value)), True
    if isinstance(value, float | np.floating):
        v = float(value)
        if not np.isfinite(v):
            return str(v), True
        return (f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"), True
    return str(value), False


def _cell(value: object, extra_class: str = "", status_colors: bool = False) -> str:
    text, numeric = _fmt(value)
    classes = [c for c in (extra_class, "num" if numeric else "") if c]
    status = _STATUS_CLASS.get(text.strip().casefold()) if status_colors else None
    if status:
        classes.append(status)
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def comparison_table_html(
    comparison: Mapping[str, Mapping[str, object]],
    plans: Sequence[str] | None = None,
    reference_plan: str | None = "CRT",
) -> str:
    """An HTML table: one row per metric, one column per plan, the reference plan first."""
    if plans is None:
        seen: list[str] = []
        for per_plan in comparison.values():
            seen += [p for p in per_plan if p not in seen]
        plans = seen
    plans = list(plans)
    if reference_plan in plans:
        plans.remove(reference_plan)
        plans.insert(0, reference_plan)
    head = "".join(
        f'<th class="ref">{html.escape(p)} (reference)</th>'
        if p == reference_plan
        else f"<th>{html.escape(p)}</th>"
        for p in plans
    )
    rows = [f"<tr><th>metric</th>{head}</tr>"]
    for metric, per_plan in comparison.items():
        cells = "".join(_cell(per_plan.get(p), "ref" if p == reference_plan else "") for p in plans)
        rows.append(f"<tr><th>{html.escape(str(metric))}</th>{cells}</tr>")
    return '<table class="comparison">\n' + "\n".join(rows) + "\n</table>"


def qa_table_html(rows: Sequence[Mapping[str, object]]) -> str:
    """An HTML table of QA rows (columns: the union of the rows' keys, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [str(c) for c in row if str(c) not in columns]
    if not rows:
        return "<p>no constraints were checked</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = [
        "<tr>" + "".join(_cell(row.get(c), status_colors=True) for c in columns) + "</tr>"
        for row in rows
    ]
    return '<table class="qa">\n<tr>' + head + "</tr>\n" + "\n".join(body) + "\n</table>"


def _qa_summary(rows: Sequence[Mapping[str, object]]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        for value in row.values():
            status = (
                _STATUS_CLASS.get(str(value).strip().casefold()) if isinstance(value, str) else None
            )
            if status:
                counts[status] = counts.get(status, 0) + 1
                break
    if not counts:
        return ""
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def render_report_html(
    title: str,
    comparison: Mapping[str, Mapping[str, object]],
    qa: Mapping[str, Sequence[Mapping[str, object]]] | None = None,
    figures: Sequence[tuple[str, ImageLike]] = (),
    inputs: Mapping[str, object] | None = None,
    reference_plan: str | None = "CRT",
    plans: Sequence[str] | None = None,
    notes: Sequence[str] = (),
    qa_verdicts: Mapping[str, str] | None = None,
    generated_utc: _dt.datetime | None = None,
    viewer: Mapping[str, object] | None = None,
) -> str:
    """The report as one HTML string (see the module docstring for the inputs)."""
    when = generated_utc or _dt.datetime.now(_dt.UTC)
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="meta">lattice_plan {e(lattice_plan.__version__)} · generated '
        f"{e(when.strftime('%Y-%m-%d %H:%M UTC'))}</p>",
    ]
    parts += [f"<p>{e(n)}</p>" for n in notes]
    if viewer is not None:
        from lattice_plan.viz.viewer import viewer_section_html

        parts += [
            '<h2 class="lpv-heading">Interactive viewer</h2>',
            viewer_section_html(dict(viewer)),
        ]
    parts += ["<h2>Plan comparison</h2>", comparison_table_html(comparison, plans, reference_plan)]
    if qa:
        parts.append("<h2>Protocol QA</h2>")
        for arm, rows in qa.items():
            summary = _qa_summary(rows)
            suffix = f" <small>({e(summary)})</small>" if summary else ""
            verdict = (qa_verdicts or {}).get(arm)
            if verdict is not None:
                cls = _STATUS_CLASS.get(str(verdict).strip().casefold(), "")
                suffix = f' <span class="verdict {cls}">verdict: {e(str(verdict))}</span>' + suffix
            parts.append(f'<h3 class="qa-arm">{e(str(arm))}{suffix}</h3>')
            parts.append(qa_table_html(rows))
    if figures:
        parts.append("<h2>Figures</h2>")
        for caption, image in figures:
            data = base64.b64encode(png_bytes(image)).decode("ascii")
            parts.append(
                f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
    parts.append("<h2>Inputs and software</h2>")
    info: dict[str, object] = dict(inputs or {})
    info.setdefault("lattice_plan version", lattice_plan.__version__)
    info.setdefault("Python", platform.python_version())
    info.setdefault("NumPy", np.__version__)
    rows = "\n".join(
        f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v)[0])}</td></tr>" for k, v in info.items()
    )
    parts.append(f'<table class="inputs">\n{rows}\n</table>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    path: str | os.PathLike[str],
    title: str,
    comparison: Mapping[str, Mapping[str, object]],
    qa: Mapping[str, Sequence[Mapping[str, object]]] | None = None,
    figures: Sequence[tuple[str, ImageLike]] = (),
    inputs: Mapping[str, object] | None = None,
    reference_plan: str | None = "CRT",
    plans: Sequence[str] | None = None,
    notes: Sequence[str] = (),
    qa_verdicts: Mapping[str, str] | None = None,
    viewer: Mapping[str, object] | None = None,
) -> Path:
    """Write :func:`render_report_html` to ``path`` atomically (UTF-8); returns the path."""
    text = render_report_html(
        title,
        comparison,
        qa,
        figures,
        inputs,
        reference_plan,
        plans,
        notes,
        qa_verdicts,
        viewer=viewer,
    )
    target = Path(path)
    with atomic_output_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
