"""lattice_plan: research dose planning for lattice (SFRT) and SCART radiotherapy.

Every plan is compared against a conventional (CRT) plan of the same patient.
Units at every public interface: mm, Gy, degrees; volumes in cc.
Arrays are indexed ``[k, j, i]`` (slice, row, column); see ``geometry.grid``.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
