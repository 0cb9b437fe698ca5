"""A small RLR config shared by the RLR tests: real frozen EfficientNet-Lite0 (random weights), 96 px, 2 layers."""

from lineside.train.models.rlr import RLRConfig

TINY = RLRConfig(
    backbone="efficientnet_lite0",
    input_size=(96, 96),
    dims=(32, 64),
    windows=(7, 5),
    heads=4,
    layers=2,
    epochs=1,
    lr=1e-3,
)
