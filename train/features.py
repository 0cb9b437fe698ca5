"""The in-memory training set: resized frames, pre-synthesised defects and cached encoder features.

The encoder is frozen, so a model with `cache_features` has its `encode()` run once per clean
image and once per synthetic defect variant; epochs then only run the trainable decoder. This is
what makes CPU training of the edge preset take minutes instead of hours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from lineside.train.models.base import AnomalyModel, TrainBatch
from lineside.train.photometric import LOOK_SEED, photometric_looks
from lineside.train.preprocess import Preprocess
from lineside.train.synthesis import DefectSynthesizer


@dataclass
class TrainData:
    """Good training images at the model's input size, with their class index."""

    images: np.ndarray  # (N, H, W, 3) uint8 BGR
    class_ids: np.ndarray  # (N,) int64
    classes: list[str]


@dataclass
class PreparedSet:
    """Tensors ready for batching; `defect_*` and `*features` are None where the model does not need them."""

    frames: torch.Tensor  # (N, H, W, 3) uint8
    class_ids: torch.Tensor  # (N,) int64
    features: list[torch.Tensor] | None  # per level (N, ...) float16
    defect_frames: torch.Tensor | None  # (N, V, H, W, 3) uint8
    defect_masks: torch.Tensor | None  # (N, V, H, W) uint8
    defect_features: list[torch.Tensor] | None  # per level (N, V, ...) float16
    look_frames: torch.Tensor | None = None  # (N, P, H, W, 3) uint8 photometric looks of `frames`
    look_features: list[torch.Tensor] | None = None  # per level (N, P, ...) float16
    defect_looks: torch.Tensor | None = None  # (N, V) int64: the look each defect variant was drawn on

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def looks(self) -> int:
        """Number of photometric looks per image besides the image itself (0 without them)."""
        return 0 if self.look_frames is None else self.look_frames.shape[1]

    @property
    def variants(self) -> int:
        """Number of synthetic defect variants per image (0 without defects)."""
        return 0 if self.defect_frames is None else self.defect_frames.shape[1]

    def batch(
        self,
        indices: torch.Tensor,
        variant: int,
        preprocess: Preprocess,
        device: torch.device,
        looks: torch.Tensor | None = None,
    ) -> TrainBatch:
        """The TrainBatch of `indices`, using defect variant `variant` and, per image, photometric look
        `looks[j]` (0: the image itself; None: all 0). With defects drawn on looks, the clean image is
        always taken in the look its defect variant was drawn on (`looks` is then ignored)."""
        if self.defect_looks is not None:
            looks = self.defect_looks[indices, variant]

        def levels(cached: list[torch.Tensor] | None, pick: tuple) -> list[torch.Tensor] | None:
            return None if cached is None else [c[pick].to(device).float() for c in cached]

        def looked(clean: torch.Tensor, jittered: torch.Tensor | None) -> torch.Tensor:
            out = clean[indices]
            if jittered is None or looks is None or not bool((looks > 0).any()):
                return out
            chosen = looks > 0
            out = out.clone()
            out[chosen] = jittered[indices[chosen], looks[chosen] - 1].to(out.dtype)
            return out

        features = None
        if self.features is not None:
            jittered: list[torch.Tensor | None] = [*(self.look_features or [None] * len(self.features))]
            features = [looked(c, j).to(device).float() for c, j in zip(self.features, jittered, strict=True)]
        batch = TrainBatch(
            images=preprocess(looked(self.frames, self.look_frames).to(device)),
            class_ids=self.class_ids[indices].to(device),
            features=features,
        )
        if self.defect_frames is not None:
            batch.defect_images = preprocess(self.defect_frames[indices, variant].to(device))
            batch.defect_masks = self.defect_masks[indices, variant].to(device).float().unsqueeze(1)  # (B, 1, H, W)
            batch.defect_features = levels(self.defect_features, (indices, variant))
        return batch


def synthesize_defects(
    images: np.ndarray,
    variants: int,
    seed: int,
    synthesizer: DefectSynthesizer,
    progress: bool = True,
    bases: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) -> defects (N, V, H, W, 3) uint8 and masks (N, V, H, W) uint8; image i, variant v is seeded.

    `bases` = (looks (N, V) int, look frames (N, P, H, W, 3)): variant v of image i is drawn on look
    looks[i, v] of it (0: the image itself).
    """
    n, h, w, _ = images.shape
    frames = np.empty((n, variants, h, w, 3), dtype=np.uint8)
    masks = np.empty((n, variants, h, w), dtype=np.uint8)
    for i in tqdm(range(n), desc="synthesising defects", unit="img", disable=not progress):
        for v in range(variants):
            rng = np.random.default_rng([seed, i, v])
            look = 0 if bases is None else int(bases[0][i, v])
            base = images[i] if bases is None or look == 0 else bases[1][i, look - 1]
            frames[i, v], mask = synthesizer(base, rng)
            masks[i, v] = mask.astype(np.uint8)
    return frames, masks


@torch.no_grad()
def encode_all(
    model: AnomalyModel,
    frames: torch.Tensor,
    device: torch.device,
    batch_size: int = 16,
    desc: str = "caching",
    progress: bool = True,
) -> list[torch.Tensor]:
    """model.encode over (N, H, W, 3) uint8 frames -> per level (N, ...) float16 on the CPU."""
    preprocess = Preprocess(model.mean, model.std).to(device)
    model.eval()
    chunks: list[list[torch.Tensor]] = []
    for start in tqdm(range(0, len(frames), batch_size), desc=desc, unit="batch", disable=not progress):
        levels = model.encode(preprocess(frames[start : start + batch_size].to(device)))
        chunks.append([level.half().cpu() for level in levels])
    return [torch.cat(parts) for parts in zip(*chunks, strict=True)]


def prepare(
    model: AnomalyModel,
    data: TrainData,
    *,
    seed: int,
    device: torch.device,
    synthesizer: DefectSynthesizer | None = None,
    progress: bool = True,
) -> PreparedSet:
    """Synthesise defects (if the model needs them), photometric looks (if its config asks for
    `photometric_looks`) and cache encoder features (if it allows)."""
    frames = torch.from_numpy(np.ascontiguousarray(data.images))
    prepared = PreparedSet(frames, torch.from_numpy(data.class_ids.astype(np.int64)), None, None, None, None)
    looks = int(getattr(model.config, "photometric_looks", 0))
    if looks > 0:
        strength = float(model.config.photometric_strength)
        prepared.look_frames = torch.from_numpy(photometric_looks(data.images, looks, seed, strength, progress))
    if model.needs_defects:
        variants = max(1, int(getattr(model.config, "defect_variants", 1)))
        bases = None
        if prepared.look_frames is not None:  # each defect variant is drawn on a random look of its image
            prepared.defect_looks = torch.randint(0, looks + 1, (len(frames), variants),
                                                  generator=torch.Generator().manual_seed(seed + LOOK_SEED))  # fmt: skip
            bases = (prepared.defect_looks.numpy(), prepared.look_frames.numpy())
        synthesizer = synthesizer or DefectSynthesizer()
        defects, masks = synthesize_defects(data.images, variants, seed, synthesizer, progress, bases)
        prepared.defect_frames, prepared.defect_masks = torch.from_numpy(defects), torch.from_numpy(masks)
    if model.cache_features:
        prepared.features = encode_all(model, frames, device, desc="caching features", progress=progress)
        if prepared.defect_frames is not None:
            n, v = prepared.defect_frames.shape[:2]
            flat = encode_all(
                model, prepared.defect_frames.flatten(0, 1), device, desc="caching defect features", progress=progress
            )
            prepared.defect_features = [level.unflatten(0, (n, v)) for level in flat]
        if prepared.look_frames is not None:
            n, p = prepared.look_frames.shape[:2]
            flat = encode_all(
                model, prepared.look_frames.flatten(0, 1), device, desc="caching look features", progress=progress
            )
            prepared.look_features = [level.unflatten(0, (n, p)) for level in flat]
    return prepared
