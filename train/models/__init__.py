"""Anomaly models behind one registry (`MODELS`)."""

from lineside.train.models import rlr  # noqa: F401  (registers MODELS["rlr"])
