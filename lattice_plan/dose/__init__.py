"""Beam model and commissioning, beams and apertures, and the pencil-beam dose engine."""

__all__ = [
    "beam",
    "beam_data",
    "commission",
    "commission_fit",
    "control_points",
    "delivery",
    "engine",
    "fluence",
    "fluence_operator",
    "hu",
    "machine",
    "model",
    "point_geometry",
    "superpose",
    "water",
]
