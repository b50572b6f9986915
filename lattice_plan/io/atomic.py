"""Atomic file and folder output (re-exported from :mod:`lattice_plan.files`, the base module)."""

from lattice_plan.files import (
    STAGING_PATTERNS,
    atomic_output_dir,
    atomic_output_path,
    prepare_output_dir,
    refuse_foreign_dir,
    remove_stale_staging,
    safe_file_part,
)

__all__ = [
    "STAGING_PATTERNS",
    "atomic_output_dir",
    "atomic_output_path",
    "prepare_output_dir",
    "refuse_foreign_dir",
    "remove_stale_staging",
    "safe_file_part",
]
