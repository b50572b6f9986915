"""The viewer as HTML: a section for ``report.html`` or a page of its own, nothing fetched.

The section holds the markup, the style, the data (:func:`viewer_payload`) as
JSON and two scripts inlined: plotly.js from the ``plotly`` Python package (DVH
and 3D panels), held as text and run by the viewer once the slices are drawn so
that they are usable at once, and this package's ``assets/viewer.js`` (the
slice views drawn on 2D canvases). It works from ``file://`` with the network off.
"""

from __future__ import annotations

import html
import json
import os
import re
from importlib import resources
from pathlib import Path

from lattice_plan.errors import VisualizationError
from lattice_plan.files import atomic_output_path

_ASSETS = resources.files("lattice_plan.viz.viewer") / "assets"


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """JavaScript that cannot end the <script> element it sits in ("</script" -> "<\\/script")."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE).replace("<!--", "<\\!--")


def plotly_js() -> str:
    """plotly.min.js as shipped inside the installed ``plotly`` Python package."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:  # pragma: no cover - plotly is a dependency
        raise VisualizationError(
            "the HTML viewer needs the 'plotly' Python package; install lattice-plan's "
            "dependencies (pip install -e .)"
        ) from exc
    return get_plotlyjs()


def viewer_section_html(payload: dict) -> str:
    """The viewer (markup, style, data and scripts) as one HTML fragment."""
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return "\n".join(
        [
            f"<style>{_asset('viewer.css')}</style>",
            _asset("viewer.html"),
            f'<script type="application/json" id="lpv-data">{data}</script>',
            f"<script>{_script_safe(_asset('viewer.js'))}</script>",
            # plotly.js is run by viewer.js once the slices are drawn (it takes seconds to parse)
            f'<script type="text/plain" id="lpv-plotly">{_script_safe(plotly_js())}</script>',
        ]
    )


def viewer_page_html(payload: dict, title: str) -> str:
    """A whole page holding only the viewer."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n"
        f'<body class="lpv-page"><h1>{html.escape(title)}</h1>\n'
        f"{viewer_section_html(payload)}\n</body></html>\n"
    )


def write_viewer_page(path: str | os.PathLike[str], payload: dict, title: str) -> Path:
    """Write :func:`viewer_page_html` to ``path`` atomically (UTF-8); returns the path."""
    target = Path(path)
    with atomic_output_path(target) as tmp:
        tmp.write_text(viewer_page_html(payload, title), encoding="utf-8")
    return target
