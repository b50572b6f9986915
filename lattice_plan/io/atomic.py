"""Atomic file output (re-exported from :mod:`lattice_plan.files`, the base module)."""

from lattice_plan.files import atomic_output_path, prepare_output_dir, safe_file_part

__all__ = ["atomic_output_path", "prepare_output_dir", "safe_file_part"]
