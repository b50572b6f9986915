"""Numba compute kernels only: contiguous arrays and scalars in, caller-allocated arrays out.

Nothing here imports from the rest of the package; validation and unit/frame
conversion happen in the wrappers that call these kernels.
"""

__all__ = ["gamma", "interpolation", "leaf_fluence", "raytrace", "superposition"]
