"""Calibration: INT8 calibration sets and per-class reject thresholds."""
