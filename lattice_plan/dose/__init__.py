"""Beam model and commissioning, beams and apertures, and the pencil-beam dose engine."""
