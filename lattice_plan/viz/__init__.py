"""Figures (matplotlib, no pyplot state: safe headless) and 3D scenes (pyvista)."""
