"""Anomaly models behind one registry (`MODELS`)."""
