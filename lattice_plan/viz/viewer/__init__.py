"""The interactive viewer that ``report.html`` and ``lattice-plan view --html`` hold.

Linked axial, coronal and sagittal CT slices with the dose as a colour wash,
isodose lines, structure outlines and a readout (Gy and EQD2) under the cursor,
drawn on 2D canvases by ``assets/viewer.js``; DVHs and a rotatable 3D view
drawn by plotly.js, which the ``plotly`` Python package ships and the page
inlines. Everything sits inside the one HTML file and works offline.
"""

from lattice_plan.viz.viewer.case import case_payload, viewer_plan
from lattice_plan.viz.viewer.folder import folder_payload
from lattice_plan.viz.viewer.page import viewer_page_html, viewer_section_html, write_viewer_page
from lattice_plan.viz.viewer.payload import ViewerPlan, viewer_payload

__all__ = [
    "ViewerPlan",
    "case_payload",
    "folder_payload",
    "viewer_page_html",
    "viewer_payload",
    "viewer_plan",
    "viewer_section_html",
    "write_viewer_page",
]
