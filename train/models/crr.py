"""CRR: Collaborative Reconstruction and Repair (arXiv 2512.11401), adapted for edge backbones.

encoder (frozen) -> group targets on a common grid -> bottleneck MLP (feature masking + dropout,
training only) -> linear-attention decoder -> one head per layer group -> per-group (1 - cos) maps
-> conv segmentation head -> map = 0.7 recon + 0.3 seg -> Gaussian blur -> score = top-1% mean.
Stage 1 trains reconstruction of clean features from clean AND synthetically defected inputs
(repair); stage 2 trains the segmentation head with focal loss, reconstruction frozen.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lineside.errors import LinesideError
from lineside.train.models.base import AnomalyModel, AnomalyOutput, TrainBatch, TrainingStage, register_model
from lineside.train.models.layers import DecoderBlock, UpsampleBlur, cosine_distance, top_mean_score


@dataclass(frozen=True)
class CRRConfig:
    """Architecture and training schedule of a CRR model."""

    backbone: str = "efficientnet_lite2"
    input_size: tuple[int, int] = (256, 256)
    groups: tuple[tuple[int, ...], ...] = ((0, 1), (2,))  # encoder levels per loose-reconstruction group
    grid_stride: int = 8  # common token grid = input / stride (CNN); ViTs use their patch grid
    embed_dim: int = 96
    depth: int = 2  # decoder blocks, split evenly over the groups
    heads: int = 4
    mlp_ratio: float = 2.0
    feature_mask: float = 0.4  # fraction of bottleneck input elements zeroed in training
    dropout: float = 0.2
    hard_quantile: float = 0.9  # pixels below this distance quantile are "easy"...
    easy_weight: float = 0.1  # ...and their loss gradient is shrunk by this factor
    seg_channels: int = 32
    recon_weight: float = 0.7  # map = recon_weight * recon + (1 - recon_weight) * seg
    blur_sigma: float = 4.0
    top_fraction: float = 0.01
    recon_epochs: int = 12
    seg_epochs: int = 4
    lr: float = 2e-3
    seg_lr: float = 5e-3
    batch_size: int = 8
    defect_variants: int = 2  # pre-synthesised defects per training image (features cached)
    photometric_looks: int = 0  # brightness/contrast looks per training image (lineside.train.photometric)
    photometric_strength: float = 0.4  # their factors are drawn from U(1 - strength, 1 + strength)


PRESETS: dict[str, CRRConfig] = {
    "tiny": CRRConfig(
        backbone="efficientnet_lite0",
        input_size=(128, 128),
        embed_dim=96,
        depth=2,
        heads=2,
        recon_epochs=8,
        seg_epochs=2,
        lr=2e-3,
        seg_lr=5e-3,
        defect_variants=2,
    ),  # fmt: skip
    "edge": CRRConfig(),  # EfficientNet-Lite2 (real weights), 256 px, 32x32 grid: trains on CPU in minutes
    "paper": CRRConfig(
        backbone="dinov2_vitb14_reg",
        input_size=(392, 392),
        groups=((0, 1, 2, 3), (4, 5, 6, 7)),
        embed_dim=768,
        depth=8,
        heads=12,
        mlp_ratio=4.0,
        recon_epochs=100,
        seg_epochs=10,
        lr=2e-3,
        seg_lr=5e-3,
        batch_size=16,
    ),  # fmt: skip
}


@register_model
class CRR(AnomalyModel):
    """Multi-class CRR anomaly model; `forward` is export-clean (no data-dependent control flow)."""

    name = "crr"
    config_cls = CRRConfig
    presets = PRESETS
    needs_defects = True
    cache_features = True

    def __init__(
        self,
        config: CRRConfig,
        classes: list[str],
        backbone_weights: str | None = None,
        random_init_backbone: bool = False,
    ) -> None:
        super().__init__()
        self._setup_encoder(config, classes, backbone_weights, random_init_backbone)
        self.vit = self.encoder.spec.kind == "vit"
        probe = self.encoder(torch.zeros(1, 3, *self.input_size))  # [(1, C_i, h_i, w_i)]
        if self.vit:
            self.grid = tuple(probe[0].shape[-2:])
        else:
            self.grid = (self.input_size[0] // config.grid_stride, self.input_size[1] // config.grid_stride)
        self.pool = [max(1, level.shape[-2] // self.grid[0]) for level in probe]  # static pooling per level (export)
        channels = [probe[g[0]].shape[1] if self.vit else sum(probe[i].shape[1] for i in g) for g in config.groups]
        self.group_channels = channels
        dim = config.embed_dim
        if config.depth % len(channels):
            raise LinesideError(f"CRR depth {config.depth} must be a multiple of the {len(channels)} layer groups")
        self.bottleneck_in = nn.Linear(sum(channels), dim)
        self.bottleneck_out = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(
            DecoderBlock(dim, config.heads, config.mlp_ratio, self.grid) for _ in range(config.depth)
        )
        self.heads = nn.ModuleList(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, c)) for c in channels)
        n_groups, hidden = len(channels), config.seg_channels
        self.seg_head = nn.Sequential(
            nn.Conv2d(n_groups, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, 1, 1),
        )  # fmt: skip
        self.map_tail = UpsampleBlur(self.input_size, config.blur_sigma, align_corners=False)

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> per-group clean targets [(B, C_g, gh, gw)] on the common grid."""
        levels = self.encoder(images)
        if self.vit:  # Dinomaly: a group target is the mean of its blocks' tokens
            return [torch.stack([levels[i] for i in g]).mean(0) for g in self.config.groups]
        targets = []
        for group in self.config.groups:  # per-level unit norm, so each level weighs equally in the cosine
            maps = [F.normalize(self._to_grid(levels[i], self.pool[i]), dim=1) for i in group]
            targets.append(torch.cat(maps, dim=1))
        return targets

    def _to_grid(self, level: torch.Tensor, pool: int) -> torch.Tensor:  # (B, C, h, w) -> (B, C, gh, gw)
        if pool > 1:
            return F.avg_pool2d(level, pool)
        return F.interpolate(level, size=self.grid, mode="bilinear", align_corners=False)

    def reconstruct(self, targets: list[torch.Tensor], noisy: bool) -> list[torch.Tensor]:
        """Group targets -> group reconstructions [(B, C_g, gh, gw)]; `noisy` adds masking and dropout."""
        b = targets[0].shape[0]
        x = torch.cat(targets, dim=1).flatten(2).transpose(1, 2)  # (B, N, sum C_g)
        x = F.dropout(x, self.config.feature_mask, training=noisy)  # feature-level random masking
        x = F.dropout(F.gelu(self.bottleneck_in(x)), self.config.dropout, training=noisy)  # (B, N, D)
        x = F.dropout(self.bottleneck_out(x), self.config.dropout, training=noisy)
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)  # (B, N, D)
        chunks = torch.stack(outputs).chunk(len(self.heads))  # deepest decoder chunk -> shallowest group
        preds = []
        for g, head in enumerate(self.heads):
            fused = chunks[len(self.heads) - 1 - g].mean(0)  # (B, N, D)
            preds.append(head(fused).transpose(1, 2).reshape(b, -1, *self.grid))
        return preds

    def distances(self, targets: list[torch.Tensor], noisy: bool = False) -> torch.Tensor:
        """(B, G, gh, gw) per-group (1 - cos) maps between targets and their reconstruction."""
        preds = self.reconstruct(targets, noisy)
        return torch.stack([cosine_distance(t, p) for t, p in zip(targets, preds, strict=True)], dim=1)

    def forward(self, images: torch.Tensor) -> AnomalyOutput:  # (B, 3, H, W) -> (B, 1, H, W), (B,)
        dist = self.distances(self.encode(images))  # (B, G, gh, gw)
        seg = torch.sigmoid(self.seg_head(dist))  # (B, 1, gh, gw)
        w = self.config.recon_weight
        grid_map = w * dist.mean(dim=1, keepdim=True) + (1 - w) * seg  # (B, 1, gh, gw)
        anomaly_map = self.map_tail([grid_map])  # (B, 1, H, W)
        return AnomalyOutput(anomaly_map, top_mean_score(anomaly_map, self.config.top_fraction))

    def inference_form(self) -> CRR:
        """A frozen copy whose upsample + blur tail runs as two MatMuls (same outputs to float rounding)."""
        form = copy.deepcopy(self).eval()
        form.map_tail = form.map_tail.as_matrices([self.grid])
        return form

    def training_stages(self) -> list[TrainingStage]:
        modules = (self.bottleneck_in, self.bottleneck_out, self.blocks, self.heads)
        recon = [p for m in modules for p in m.parameters()]
        cfg = self.config
        return [
            TrainingStage("reconstruct+repair", recon, cfg.recon_epochs, cfg.lr, self._recon_loss),
            TrainingStage("segmentation", list(self.seg_head.parameters()), cfg.seg_epochs, cfg.seg_lr, self._seg_loss),
        ]

    def _features(self, batch: TrainBatch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        clean = batch.features if batch.features is not None else self.encode(batch.images)
        defect = batch.defect_features
        if defect is None:
            defect = self.encode(batch.defect_images)
        return [t.float() for t in clean], [t.float() for t in defect]

    def _hard_cosine(self, target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Hard-mined cosine distance: easy pixels (below the quantile) keep a shrunk weight."""
        dist = cosine_distance(target, pred).flatten()  # (B*gh*gw,)
        k = max(1, int(self.config.hard_quantile * dist.numel()))
        threshold = dist.detach().kthvalue(k).values
        weight = torch.where(dist.detach() >= threshold, 1.0, self.config.easy_weight)
        return (dist * weight).sum() / weight.sum()

    def _recon_loss(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        clean, defect = self._features(batch)
        recon = sum(self._hard_cosine(t, p) for t, p in zip(clean, self.reconstruct(clean, noisy=True), strict=True))
        repair = sum(self._hard_cosine(t, p) for t, p in zip(clean, self.reconstruct(defect, noisy=True), strict=True))
        return {"loss": recon + repair, "recon": recon.detach(), "repair": repair.detach()}

    def _seg_loss(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        clean, defect = self._features(batch)
        with torch.no_grad():
            dist = torch.cat([self.distances(clean), self.distances(defect)])  # (2B, G, gh, gw)
        masks = torch.cat([torch.zeros_like(batch.defect_masks), batch.defect_masks])  # (2B, 1, H, W)
        logits = F.interpolate(self.seg_head(dist), size=masks.shape[-2:], mode="bilinear", align_corners=False)
        ce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
        p = torch.sigmoid(logits)
        p_true = p * masks + (1 - p) * (1 - masks)
        focal = (ce * (1 - p_true) ** 2).sum() / masks.sum().clamp_min(1.0)  # RetinaNet: per defect pixel
        return {"loss": focal, "focal": focal.detach()}
