"""Figures (matplotlib, no pyplot state: safe headless) and 3D scenes (pyvista).

- ``slices.orthogonal_slices``: CT, contours, dose wash, isodose lines, vertex markers;
- ``dvh_plot.dvh_comparison``: cumulative DVHs of several plans;
- ``profiles.dose_profiles`` (``sample_line``, ``segments_through_points``): peaks and valleys;
- ``fluence_plot.fluence_maps``: each beam's fluence map or aperture;
- ``scene3d``: ``build_scene``, ``render_scene``/``save_scene_png`` (off-screen),
  ``show_scene`` (interactive), ``export_scene_vtk`` (.vtp/.vti);
- ``report.write_report``: the self-contained ``report.html``;
- ``viewer``: the interactive viewer inside ``report.html`` and ``lattice-plan view --html``
  (slices, isodoses, DVHs and 3D in the browser, offline).

``scene3d`` imports pyvista/VTK; import it only where 3D is needed.
"""

__all__ = ["dvh_plot", "fluence_plot", "profiles", "report", "scene3d", "slices", "viewer"]
