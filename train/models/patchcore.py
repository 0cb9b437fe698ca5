"""PatchCore (Roth et al. 2022): a memory bank of good patch features, nearest-neighbour distance as the map.

encoder (frozen) -> levels at strides 8 and 16, each 3x3 average-pooled (locally aware patch
features), the coarser ones bilinearly upsampled to the finest grid, concatenated (optionally a
fixed random projection) -> squared distance to every bank entry as one MatMul with precomputed
bank norms (||x||^2 - 2 x.b + ||b||^2) -> min over the bank -> sqrt -> map tail (upsample + Gaussian
blur, sigma 4) -> score = map max. No gradient training: `fit_memory` builds the bank from the good
training patches by greedy coreset subsampling (`coreset.greedy_coreset`).

Multi-class: one bank shared by all classes (the coreset runs over the union of their patches).
The fused graph has no class input, so a unified model can only take its minimum over everything
it holds; the k-center coreset keeps every class's feature modes in it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from lineside.errors import LinesideError
from lineside.train.models.base import AnomalyModel, AnomalyOutput, TrainingStage, register_model
from lineside.train.models.coreset import greedy_coreset, random_projection
from lineside.train.models.layers import UpsampleBlur

if TYPE_CHECKING:
    from lineside.train.features import PreparedSet

EAGER_BANK_CHUNK = 4096  # bank entries per distance MatMul in eager torch (bounds evaluation memory)
PROJECTION_SEED = 0  # the optional feature projection is a fixed function of the config


@dataclass(frozen=True)
class PatchCoreConfig:
    """Feature extraction and memory-bank size of a PatchCore model."""

    backbone: str = "efficientnet_lite2"
    input_size: tuple[int, int] = (256, 256)
    levels: tuple[int, ...] = (1, 2)  # encoder levels (EfficientNet-Lite: strides 8 and 16); first sets the grid
    neighbourhood: int = 3  # average-pooling window of the locally aware patch features
    projection_dim: int = 0  # fixed random projection of the patch features (0: keep every channel)
    coreset_fraction: float = 0.1  # bank size as a fraction of the training patches...
    bank_max: int = 16384  # ...capped at this many entries (0: no cap); the latency knob
    coreset_dims: int = 128  # random projection used only to pick the coreset (the paper's 128)
    blur_sigma: float = 4.0
    batch_size: int = 8  # encoder batch while caching features


PRESETS: dict[str, PatchCoreConfig] = {
    "tiny": PatchCoreConfig(backbone="efficientnet_lite0", input_size=(128, 128), bank_max=1024),
    "edge": PatchCoreConfig(),  # EfficientNet-Lite2 (real weights), 256 px, 32x32 grid, 168-dim patches
    "paper": PatchCoreConfig(backbone="wide_resnet50", input_size=(224, 224), bank_max=0),
}


@register_model
class PatchCore(AnomalyModel):
    """Memory-bank kNN anomaly model; `forward` is export-clean (one MatMul against the bank)."""

    name = "patchcore"
    config_cls = PatchCoreConfig
    presets = PRESETS
    cache_features = True

    def __init__(
        self,
        config: PatchCoreConfig,
        classes: list[str],
        backbone_weights: str | None = None,
        random_init_backbone: bool = False,
    ) -> None:
        super().__init__()
        self._setup_encoder(config, classes, backbone_weights, random_init_backbone)
        probe = self.encoder(torch.zeros(1, 3, *self.input_size))
        if max(config.levels) >= len(probe):
            raise LinesideError(f"patchcore levels {config.levels}: backbone {config.backbone} has {len(probe)}")
        self.grid = tuple(probe[config.levels[0]].shape[-2:])
        channels = sum(probe[i].shape[1] for i in config.levels)
        dims = config.projection_dim or channels
        self.register_buffer("projection", random_projection(channels, dims, PROJECTION_SEED) if config.projection_dim
                             else torch.zeros(0))  # fmt: skip
        self.register_buffer("bank", torch.zeros(0, dims))  # (M, D) memory bank, set by fit_memory / checkpoint
        self._set_bank(self.bank)
        self.map_tail = UpsampleBlur(self.input_size, config.blur_sigma, align_corners=False)
        self.bank_chunk = EAGER_BANK_CHUNK

    def _set_bank(self, bank: torch.Tensor) -> None:
        """Store the bank and the constants of the distance MatMul: -2 b^T (D, M) and ||b||^2 (M,)."""
        self.bank = bank.detach().float().clone()
        self.register_buffer("bank_t", (-2.0 * self.bank.T).contiguous(), persistent=False)
        self.register_buffer("bank_sq", (self.bank * self.bank).sum(1), persistent=False)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        if prefix + "bank" in state_dict:  # the bank's size is only known from the checkpoint
            self._set_bank(state_dict[prefix + "bank"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [(B, D, gh, gw)] locally aware patch features on the finest level's grid."""
        levels = self.encoder(images)
        k = self.config.neighbourhood
        maps = []
        for index in self.config.levels:
            level = F.avg_pool2d(levels[index], k, stride=1, padding=k // 2) if k > 1 else levels[index]
            if tuple(level.shape[-2:]) != self.grid:
                level = F.interpolate(level, size=self.grid, mode="bilinear", align_corners=False)
            maps.append(level)
        features = torch.cat(maps, dim=1)  # (B, C, gh, gw)
        if self.projection.numel():
            features = torch.einsum("bchw,cd->bdhw", features, self.projection)
        return [features]

    def nearest(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N) Euclidean distance of each patch to its nearest bank entry.

        Eager torch walks the bank in `bank_chunk` slices (memory: B x N x chunk); the inference form
        is one MatMul over the whole bank, so the exported distance is one (B, N, M) product.
        """
        if self.bank.shape[0] == 0:
            raise LinesideError("this patchcore model has an empty memory bank: build it with 'lineside train'")
        size = self.bank_t.shape[1]
        squared = (patches * patches).sum(-1, keepdim=True)  # (B, N, 1)
        if not self.bank_chunk:  # the exported form: ||x||^2 - 2 x.b + ||b||^2, min over the whole bank
            return (squared + patches @ self.bank_t + self.bank_sq).amin(-1).clamp_min(0).sqrt()
        flat = patches.reshape(-1, patches.shape[-1])  # (B*N, D)
        parts = [
            torch.addmm(self.bank_sq[s : s + self.bank_chunk], flat, self.bank_t[:, s : s + self.bank_chunk]).amin(-1)
            for s in range(0, size, self.bank_chunk)
        ]  # min_b (||b||^2 - 2 x.b) per bank slice: ||x||^2 does not depend on b
        nearest = torch.stack(parts).amin(0).reshape(squared.shape[:-1]) + squared[..., 0]
        return nearest.clamp_min(0).sqrt()

    def forward(self, images: torch.Tensor) -> AnomalyOutput:  # (B, 3, H, W) -> (B, 1, H, W), (B,)
        features = self.encode(images)[0]  # (B, D, gh, gw)
        b = features.shape[0]
        patches = features.flatten(2).transpose(1, 2)  # (B, N, D)
        grid_map = self.nearest(patches).reshape(b, 1, *self.grid)
        anomaly_map = self.map_tail([grid_map])  # (B, 1, H, W)
        return AnomalyOutput(anomaly_map, anomaly_map.flatten(1).amax(1))

    def inference_form(self) -> PatchCore:
        """A frozen copy whose upsample + blur tail runs as two MatMuls (same outputs to float rounding)."""
        form = copy.deepcopy(self).eval()
        form.map_tail = form.map_tail.as_matrices([self.grid])
        form.bank_chunk = 0
        return form

    def training_stages(self) -> list[TrainingStage]:
        return []  # no gradient training: the bank is built by fit_memory

    def bank_size(self, patches: int) -> int:
        """Entries kept from `patches` training patches: the preset's fraction, capped at bank_max."""
        size = max(1, round(self.config.coreset_fraction * patches))
        return min(size, self.config.bank_max) if self.config.bank_max > 0 else size

    def fit_memory(self, prepared: PreparedSet, seed: int, progress: bool = True) -> dict[str, Any]:
        """Build the bank from the cached good-image features by greedy coreset subsampling."""
        started = time.perf_counter()
        if prepared.features is None:
            raise RuntimeError("patchcore needs the loop's cached features (cache_features)")
        features = prepared.features[0]  # (N, D, gh, gw) float16
        patches = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]).float()  # (N*gh*gw, D)
        size = self.bank_size(len(patches))
        picks = greedy_coreset(patches, size, dims=self.config.coreset_dims, seed=seed, progress=progress)
        self._set_bank(patches[picks])
        self.to(self.projection.device)
        seconds = round(time.perf_counter() - started, 2)
        return {"stage": "memory bank", "patches": len(patches), "bank": size, "seconds": seconds}
