"""Beam model and commissioning, beams and apertures, and the pencil-beam dose engine."""

__all__ = [
    "beam",
    "beam_data",
    "commission",
    "commission_fit",
    "engine",
    "fluence",
    "hu",
    "model",
    "water",
]
