"""Two-column numeric CSV files (re-exported from :mod:`lattice_plan.files`, the base module)."""

from lattice_plan.files import read_two_column_csv

__all__ = ["read_two_column_csv"]
