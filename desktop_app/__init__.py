"""Skin Capture Assist: stops unusable skin photographs at the camera."""

__version__ = "0.1.0"
