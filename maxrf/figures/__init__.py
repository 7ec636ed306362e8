"""Figures and map exports (PNG, TIFF) drawn from a datastack."""
