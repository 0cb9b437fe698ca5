"""RLR: reconstruct features from a Learnable Reference representation (He et al., ECCV 2024, arXiv 2403.11561).

A frozen EfficientNet gives features at strides 8 and 16. Per level, a transformer decoder rebuilds
the (3x3 average-pooled) features, but its keys come from a learnable reference tensor (1, HW, C)
shared by all classes, not from the input, so the decoder cannot learn an identity shortcut:

* Local Cross Attention (LCA): query = input, key = value = reference, restricted to a local
  window (7x7 at stride 8, 5x5 at stride 16).
* Masked Learnable Key Attention (MLKA): query = input, key = reference, value = input, with the
  query's own local window masked OUT (as the authors' code does), so a token cannot copy itself
  or its neighbours and must be predicted from the rest of the image. The edge preset reads its keys
  and values 2x2 average pooled at stride 8 (`key_pools`), a quarter of the dense attention.

Layer: x = LN(2 * LCA + MLKA); x = LN(x + FFN(x)). Training adds feature-jitter noise to the input
tokens and minimises MSE + (1 - cos) against the clean features. Anomaly map per level =
mean squared error + (1 - cos) (the paper's form), upsampled to the input size, summed over levels,
Gaussian blur (sigma 4) as a fixed convolution; image score = max of the map. `inference_form()` is the
equivalent, cheaper module that `lineside export` traces.

Edge adaptation for real parts (`map_error="cos"`, `standardise=True`, measured in docs/models.md): the
map uses (1 - cos) only, because the MSE term follows the feature magnitude (brightness, contrast, texture
energy) of the whole image and swamps the cosine term by ~30x; and each level's error map is standardised
per position with the mean and standard deviation of the training good images' own error maps
(`fit_statistics`, after training, no test image read), so a level or an image region that reconstructs
poorly on every good part (stochastic fine texture at stride 8, borders) stops raising false alarms.
Both attentions are cosine attentions with a capped per-head temperature (`qk_norm`): trained with
q.k / sqrt(d), the logits grew to 6.7e4 on real data, past the window mask, so the exported graph no
longer matched the model.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lineside.errors import LinesideError
from lineside.train.models.base import AnomalyModel, AnomalyOutput, TrainBatch, TrainingStage, register_model
from lineside.train.models.layers import UpsampleBlur
from lineside.train.models.local_attention import ConstantWindowAttention, MaskedAttention, TokenPool, window_mask

if TYPE_CHECKING:
    from lineside.train.features import PreparedSet

MAP_ERRORS = ("mse+cos", "cos")
STD_FLOOR = 0.1  # error std per position >= this share of its mean over positions
STATISTICS_BATCH = 32


def sincos_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding (1, H*W, dim): first half encodes x, second half y."""
    if dim % 4:
        raise ValueError(f"position embedding needs a dim divisible by 4, got {dim}")
    quarter = torch.arange(0, dim // 2, 2, dtype=torch.float64)
    freq = torch.exp(-math.log(1e4) * quarter / (dim // 2))  # (dim/4,)
    xs = torch.arange(width, dtype=torch.float64)[:, None] * freq  # (W, dim/4)
    ys = torch.arange(height, dtype=torch.float64)[:, None] * freq  # (H, dim/4)
    x_part = torch.stack([xs.sin(), xs.cos()], dim=-1).flatten(1)  # (W, dim/2), sin/cos interleaved
    y_part = torch.stack([ys.sin(), ys.cos()], dim=-1).flatten(1)  # (H, dim/2)
    grid = torch.cat([x_part[None].expand(height, -1, -1), y_part[:, None].expand(-1, width, -1)], dim=-1)
    return grid.reshape(1, height * width, dim).float()  # (1, L, dim)


class ReferenceLayer(nn.Module):
    """One RLR decoder layer: LN(2 * LCA + MLKA), then a residual FFN and LN."""

    def __init__(self, dim: int, heads: int, ffn_ratio: int, key_pool: TokenPool, qk_norm: bool) -> None:
        super().__init__()
        self.key_pool = key_pool  # MLKA's keys and values, pooled (identity at factor 1, the paper's form)
        self.lca = MaskedAttention(dim, heads, qk_norm)
        self.mlka = MaskedAttention(dim, heads, qk_norm)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim * ffn_ratio), nn.GELU(), nn.Linear(dim * ffn_ratio, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.baked_lca: ConstantWindowAttention | None = None  # inference form of `lca`, see `bake_windows`

    def forward(
        self, x: torch.Tensor, ref: torch.Tensor, lca_mask: torch.Tensor, mlka_mask: torch.Tensor
    ) -> torch.Tensor:
        """x (B, L, D), ref (1, L, D), masks (L, L) and (L, K) -> (B, L, D)."""
        local = self.lca(x, ref, ref, lca_mask) if self.baked_lca is None else self.baked_lca(x)  # (B, L, D)
        x = self.norm1(2.0 * local + self.mlka(x, self.key_pool(ref), self.key_pool(x), mlka_mask))  # (B, L, D)
        return self.norm2(x + self.ffn(x))  # (B, L, D)


class ReferenceDecoder(nn.Module):
    """Rebuilds one feature level (B, L, C) from a learnable reference (1, L, C)."""

    def __init__(
        self,
        channels: int,
        dim: int,
        grid: tuple[int, int],
        window: int,
        heads: int,
        layers: int,
        ffn_ratio: int,
        key_pool: int = 1,
        qk_norm: bool = False,
    ) -> None:
        super().__init__()
        height, width = grid
        pool = TokenPool(grid, key_pool)
        self.reference = nn.Parameter(torch.randn(1, height * width, channels))  # (1, L, C)
        self.embed = nn.Linear(channels, dim)
        self.ref_embed = nn.Linear(channels, dim)
        self.register_buffer("position", sincos_2d(dim, height, width), persistent=False)  # (1, L, D)
        self.register_buffer("lca_mask", window_mask(height, width, window, inside=True), persistent=False)
        mlka_mask = window_mask(height, width, window, inside=False, key_pool=key_pool)  # (L, L / key_pool^2)
        self.register_buffer("mlka_mask", mlka_mask, persistent=False)
        self.layers = nn.ModuleList(ReferenceLayer(dim, heads, ffn_ratio, pool, qk_norm) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.project = nn.Linear(dim, channels)
        self.grid, self.window = (height, width), window
        # per-position statistics of this level's error on good training images (identity until fitted)
        self.error_mean: torch.Tensor
        self.error_std: torch.Tensor
        self.register_buffer("error_mean", torch.zeros(height, width))
        self.register_buffer("error_std", torch.ones(height, width))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        for name in ("error_mean", "error_std"):  # checkpoints from before the statistics load as unfitted
            state_dict.setdefault(prefix + name, getattr(self, name))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    def reference_tokens(self) -> torch.Tensor:
        """The decoder's keys source: embedded reference + position, (1, L, D)."""
        return self.ref_embed(self.reference) + self.position

    def bake_windows(self) -> None:
        """Switch every layer's LCA to its gathered-window inference form (the reference is a constant now)."""
        with torch.no_grad():
            ref = self.reference_tokens()
        for layer in self.layers:
            layer.baked_lca = ConstantWindowAttention(layer.lca, ref, ref, self.grid, self.window)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L, C) -> reconstruction (B, L, C)."""
        x = self.embed(tokens) + self.position  # (B, L, D)
        ref = self.reference_tokens()  # (1, L, D)
        for layer in self.layers:
            x = layer(x, ref, self.lca_mask, self.mlka_mask)
        return self.project(self.norm(x))  # (B, L, C)


def feature_jitter(tokens: torch.Tensor, scale: float, prob: float) -> torch.Tensor:
    """UniAD/RLR feature jitter: add N(0, (scale * |f| / C)^2) noise to a `prob` share of tokens (B, L, C)."""
    batch, length, channels = tokens.shape
    magnitude = tokens.norm(dim=-1, keepdim=True) / channels * scale  # (B, L, 1)
    chosen = (torch.rand(batch, length, 1, device=tokens.device) < prob).to(tokens.dtype)  # (B, L, 1)
    return tokens + torch.randn_like(tokens) * magnitude * chosen


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity over the last dim, written out so it exports as plain ops: (..., C) -> (...)."""
    dot = (a * b).sum(dim=-1)
    return dot / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-8)


@dataclass(frozen=True)
class RLRConfig:
    """RLR hyper-parameters (defaults: the edge preset, but for `key_pools`, `map_error`, `standardise`, `qk_norm`).

    Levels are strides 8 and 16. `key_pools` pools MLKA's keys and values per level (1 = the paper's form);
    the edge preset pools the stride-8 level 2x2. These four default to the paper's form so that
    checkpoints written before they existed load and score as trained.
    """

    backbone: str = "efficientnet_lite2"
    input_size: tuple[int, int] = (256, 256)
    dims: tuple[int, int] = (64, 128)  # decoder width per level
    windows: tuple[int, int] = (7, 5)  # local window side per level
    key_pools: tuple[int, int] = (1, 1)  # MLKA key/value average pooling per level
    heads: int = 4
    layers: int = 1
    ffn_ratio: int = 2
    jitter_scale: float = 4.0
    jitter_prob: float = 1.0
    blur_sigma: float = 4.0
    map_error: str = "mse+cos"  # per-token map error: "mse+cos" (the paper) or "cos"
    standardise: bool = False  # z-score each level's map per position with good training statistics
    qk_norm: bool = False  # cosine attention with a capped temperature: logits bounded (see `MaskedAttention`)
    photometric_looks: int = 0  # brightness/contrast looks per training image (lineside.train.photometric)
    photometric_strength: float = 0.4  # their factors are drawn from U(1 - strength, 1 + strength)
    epochs: int = 10
    lr: float = 5e-3
    batch_size: int = 4


PRESETS: dict[str, RLRConfig] = {
    # tests and smoke runs: Lite0 (real weights), 128 px, one narrow layer
    "tiny": RLRConfig(
        backbone="efficientnet_lite0", input_size=(128, 128), dims=(32, 64), heads=4, layers=1, ffn_ratio=2,
        map_error="cos", standardise=True, qk_norm=True, epochs=30, lr=5e-3, batch_size=8,
    ),
    # the edge default: Lite2 (real weights), 256 px, one layer per level, trained on CPU from cached features;
    # MLKA reads 2x2-pooled keys/values at stride 8: a quarter of its dense (L, L) attention, which stays float in INT8;
    # the map is (1 - cos), standardised per position with good training statistics (real data: docs/models.md);
    # cosine attention bounds the logits (unbounded ones reached 6.7e4 on real data, past the window mask)
    # and each image is seen in one of three looks (itself, two brightness/contrast changes) per epoch
    "edge": RLRConfig(key_pools=(2, 1), map_error="cos", standardise=True, qk_norm=True, photometric_looks=2),
    # the paper: EfficientNet-B6 from a user weights file, 4 layers, widths 256/512, 200 epochs, batch 4, lr 1e-4
    "paper": RLRConfig(
        backbone="efficientnet_b6", input_size=(256, 256), dims=(256, 512), heads=8, layers=4, ffn_ratio=4,
        epochs=200, lr=1e-4, batch_size=4,
    ),
}  # fmt: skip


@register_model
class RLR(AnomalyModel):
    """Frozen encoder + one learnable-reference decoder per feature level (strides 8 and 16)."""

    name = "rlr"
    config_cls = RLRConfig
    presets = PRESETS
    cache_features = True

    def __init__(
        self,
        config: RLRConfig,
        classes: Sequence[str],
        backbone_weights: str | None = None,
        random_init_backbone: bool = False,
    ) -> None:
        super().__init__()
        if config.map_error not in MAP_ERRORS:
            raise LinesideError(f"rlr map_error {config.map_error!r}: use one of {', '.join(MAP_ERRORS)}")
        self._setup_encoder(config, classes, backbone_weights, random_init_backbone)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        levels = [level.shape for level in self.encode(torch.zeros(1, 3, *self.input_size))]  # [(1, C, h, w)] x 2
        height, width = self.input_size
        if [tuple(shape[-2:]) for shape in levels] != [(height // 8, width // 8), (height // 16, width // 16)]:
            raise LinesideError(
                f"RLR needs the last two {config.backbone} levels at strides 8 and 16 of {self.input_size}"
            )
        self.decoders = nn.ModuleList(
            ReferenceDecoder(c, dim, (h, w), win, config.heads, config.layers, config.ffn_ratio, pool, config.qk_norm)
            for (_, c, h, w), dim, win, pool in zip(levels, config.dims, config.windows, config.key_pools, strict=True)
        )
        self.map_tail = UpsampleBlur(self.input_size, config.blur_sigma, align_corners=True)

    def inference_form(self) -> RLR:
        """A frozen copy whose LCA reads pre-gathered windows of the constant reference (see `bake_windows`).

        Same outputs (to float rounding); the dense (L, L) masked LCA becomes (L, U) over each query
        block's union window (`ConstantWindowAttention`), which was most of the stride-8 decoder's cost
        in an exported graph, and the map tail becomes MatMuls.
        """
        form = copy.deepcopy(self).eval()
        for decoder in form.decoders:
            decoder.bake_windows()
        form.map_tail = form.map_tail.as_matrices([decoder.grid for decoder in form.decoders])
        return form

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Frozen features, 3x3 average pooled: (B, 3, H, W) -> [(B, C, H/8, W/8), (B, C', H/16, W/16)]."""
        with torch.no_grad():
            return [self.pool(level) for level in self.encoder(images)[-2:]]

    def reference_decoders(self) -> list[ReferenceDecoder]:
        """The per-level decoders, typed."""
        return [cast(ReferenceDecoder, decoder) for decoder in self.decoders]

    def level_terms(
        self, levels: Sequence[torch.Tensor], with_mse: bool
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per encoded level (B, C, h, w): the error terms (1 - cos) and, if asked, the MSE, each (B, 1, h, w)."""
        terms: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for level, decoder in zip(levels, self.decoders, strict=True):
            batch, _, height, width = level.shape
            tokens = level.flatten(2).transpose(1, 2)  # (B, L, C)
            recon = decoder(tokens)  # (B, L, C)
            cos = (1.0 - _cosine(tokens, recon)).reshape(batch, 1, height, width)
            mse = (tokens - recon).pow(2).mean(dim=-1).reshape(batch, 1, height, width) if with_mse else None
            terms.append((cos, mse))
        return terms

    def level_errors(self, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Raw per-position reconstruction error of each encoded level (`map_error`): [(B, 1, h, w)]."""
        with_mse = self.config.map_error == "mse+cos"
        return [cos if mse is None else cos + mse for cos, mse in self.level_terms(levels, with_mse)]

    def forward(self, images: torch.Tensor) -> AnomalyOutput:  # (B, 3, H, W) -> maps, scores
        errors = [
            (error - decoder.error_mean) / decoder.error_std
            for error, decoder in zip(self.level_errors(self.encode(images)), self.reference_decoders(), strict=True)
        ]  # [(B, 1, h, w)], standardised per position (identity before `fit_statistics`)
        anomaly_map = self.map_tail(errors)  # (B, 1, H, W)
        return AnomalyOutput(anomaly_map, anomaly_map.amax(dim=(1, 2, 3)))

    @torch.no_grad()
    def fit_statistics(self, prepared: PreparedSet, progress: bool = True) -> dict[str, Any] | None:
        """Per-position mean and std of each level's error over the good training images (`standardise`).

        The std is floored at `STD_FLOOR` of its mean over positions, so a position where every good part
        reconstructs alike cannot turn a tiny difference into a huge score. One set of statistics serves
        every class of a unified model (its graph does not know the class).
        """
        if not self.config.standardise:
            return None
        if prepared.features is None:
            raise RuntimeError("rlr statistics need the loop's cached features (cache_features)")
        started, was_training = time.perf_counter(), self.training
        self.eval()
        decoders = self.reference_decoders()
        device = decoders[0].error_mean.device
        count = len(prepared)
        sums = [torch.zeros(d.grid, dtype=torch.float64, device=device) for d in decoders]
        squares = [torch.zeros_like(s) for s in sums]
        for start in tqdm(range(0, count, STATISTICS_BATCH), desc="map statistics", disable=not progress):
            levels = [cached[start : start + STATISTICS_BATCH].to(device).float() for cached in prepared.features]
            for index, error in enumerate(self.level_errors(levels)):
                sums[index] += error[:, 0].double().sum(0)
                squares[index] += error[:, 0].double().pow(2).sum(0)
        for decoder, total, square in zip(decoders, sums, squares, strict=True):
            mean = total / count
            std = (square / count - mean.pow(2)).clamp_min(0).sqrt()
            decoder.error_mean.copy_(mean.float())
            decoder.error_std.copy_(std.clamp_min(STD_FLOOR * float(std.mean()) + 1e-12).float())
        self.train(was_training)
        return {"stage": "map statistics", "images": count, "seconds": round(time.perf_counter() - started, 2)}

    def loss_from_features(self, levels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """MSE + (1 - cos) between clean features and the reconstruction of jittered ones, summed over levels."""
        logs: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=levels[0].device)
        for index, (level, decoder) in enumerate(zip(levels, self.decoders, strict=True)):
            target = level.flatten(2).transpose(1, 2)  # (B, L, C)
            noisy = (
                feature_jitter(target, self.config.jitter_scale, self.config.jitter_prob) if self.training else target
            )
            recon = decoder(noisy)  # (B, L, C)
            mse = F.mse_loss(recon, target)
            cos = (1.0 - _cosine(recon, target)).mean()
            logs[f"mse{index}"], logs[f"cos{index}"] = mse.detach(), cos.detach()
            total = total + mse + cos
        return {"loss": total, **logs}

    def loss(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        """Training loss of one batch (cached encoder features when the loop provides them)."""
        levels = batch.features if batch.features is not None else self.encode(batch.images)
        return self.loss_from_features(levels)

    def training_stages(self) -> list[TrainingStage]:
        """One stage: the decoders (and their references) learn to rebuild normal features."""
        params = [p for p in self.decoders.parameters() if p.requires_grad]
        return [TrainingStage("reconstruct", params, self.config.epochs, self.config.lr, self.loss)]
