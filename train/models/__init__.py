"""Anomaly models behind one registry (`MODELS`); importing this package registers them all."""

from lineside.train.models import crr, patchcore, rlr  # noqa: F401  (register MODELS["crr"], ["patchcore"], ["rlr"])
from lineside.train.models.base import MODELS, AnomalyModel, AnomalyOutput, TrainBatch, TrainingStage, build_model

__all__ = ["MODELS", "AnomalyModel", "AnomalyOutput", "TrainBatch", "TrainingStage", "build_model"]
