"""CT number (HU) to relative electron density (RED, water = 1) calibration tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.errors import DoseError
from lattice_plan.files import read_two_column_csv

# Default calibration: a typical 120 kVp CT scanned with a CIRS 062M electron-density
# phantom (insert RED from the CIRS data sheet: lung inhale 0.19, lung exhale 0.49,
# adipose 0.95, breast 0.98, water 1.00, muscle 1.04, liver 1.05, trabecular bone 1.12,
# dense bone 1.51) extended to air (RED 0.001) and to cortical bone / metal-free
# saturation at 3000 HU. A user table replaces it for a particular scanner.
_DEFAULT_HU = (-1000.0, -800.0, -500.0, -100.0, -50.0, 0.0, 40.0, 60.0, 240.0, 900.0, 3000.0)
_DEFAULT_RED = (0.001, 0.19, 0.49, 0.95, 0.98, 1.00, 1.04, 1.05, 1.12, 1.51, 2.60)


@dataclass(frozen=True, eq=False)
class HUDensityTable:
    """Piecewise-linear HU -> relative electron density table.

    hu: strictly increasing CT numbers; red: the relative electron densities at
    those HU, non-decreasing (a table that falls anywhere is refused: it would
    make denser tissue attenuate less). Values beyond the ends are held constant.
    """

    hu: NDArray[np.float64]
    red: NDArray[np.float64]
    name: str = "user"

    def __post_init__(self) -> None:
        hu = np.array(self.hu, dtype=float)
        red = np.array(self.red, dtype=float)
        if hu.ndim != 1 or hu.shape != red.shape or len(hu) < 2:
            raise DoseError(
                f"HU table {self.name!r}: needs two equal-length 1D columns of at least two rows, "
                f"got shapes {hu.shape} and {red.shape}"
            )
        if not (np.all(np.isfinite(hu)) and np.all(np.isfinite(red))):
            raise DoseError(f"HU table {self.name!r}: every entry must be a finite number")
        if np.any(np.diff(hu) <= 0):
            bad = int(np.argmax(np.diff(hu) <= 0))
            raise DoseError(
                f"HU table {self.name!r}: HU must increase strictly, but row {bad + 2} "
                f"({hu[bad + 1]} HU) does not exceed row {bad + 1} ({hu[bad]} HU); sort the table"
            )
        if np.any(np.diff(red) < 0):
            bad = int(np.argmax(np.diff(red) < 0))
            raise DoseError(
                f"HU table {self.name!r} is not monotonic: density falls from {red[bad]} at "
                f"{hu[bad]} HU to {red[bad + 1]} at {hu[bad + 1]} HU; check the calibration"
            )
        if np.any(red < 0):
            raise DoseError(f"HU table {self.name!r}: relative electron density must be >= 0")
        for a in (hu, red):
            a.setflags(write=False)
        object.__setattr__(self, "hu", hu)
        object.__setattr__(self, "red", red)

    @classmethod
    def default(cls) -> HUDensityTable:
        """The built-in table (typical CT calibration with a CIRS 062M phantom)."""
        return cls(
            np.array(_DEFAULT_HU), np.array(_DEFAULT_RED), name="default (CIRS 062M typical)"
        )

    @classmethod
    def from_pairs(cls, pairs: ArrayLike, name: str = "user") -> HUDensityTable:
        """A table from rows of (HU, RED)."""
        arr = np.asarray(pairs, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise DoseError(f"HU table {name!r}: expected rows of (HU, RED), got shape {arr.shape}")
        return cls(arr[:, 0], arr[:, 1], name=name)

    @classmethod
    def from_csv(cls, path: str | Path) -> HUDensityTable:
        """Read a two-column CSV (HU, RED); a non-numeric first row is taken as a header."""
        rows = read_two_column_csv(path, "HU table", "(HU, RED)", DoseError)
        return cls.from_pairs(rows, name=str(path))

    def density(self, hu: ArrayLike) -> NDArray[np.float32]:
        """Relative electron density of CT numbers (float32, same shape)."""
        return np.interp(np.asarray(hu, dtype=np.float64), self.hu, self.red).astype(np.float32)
