"""Real stand-ins for the runtime tests: a tiny rule-based ONNX detector in a bundle, and synthetic parts.

The detector is a real ONNX graph with the bundle IO contract (uint8 (1, H, W, 3) BGR ->
anomaly_map (1, 1, H, W), score (1,)): the map is the 5x5 local mean brightness, the score its
maximum, so a part with a bright blob scores ~1 and a plain grey part ~0.45.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lineside.bundle import Bundle, Manifest, TensorSpec, write_bundle

SIZE = (64, 64)
THRESHOLD = 0.7


def export_detector(path: Path, size: tuple[int, int] = SIZE) -> Path:
    """Export the brightness detector to ONNX with torch (tests may use torch; the runtime may not)."""
    import torch
    from torch import nn

    class Brightness(nn.Module):
        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (1, H, W, 3) uint8
            grey = image.float().mean(dim=3, keepdim=True).permute(0, 3, 1, 2) / 255.0  # (1, 1, H, W)
            amap = nn.functional.avg_pool2d(grey, 5, stride=1, padding=2, count_include_pad=False)  # (1, 1, H, W)
            return amap, amap.flatten(1).amax(dim=1)  # (1, 1, H, W), (1,)

    torch.set_num_threads(1)
    dummy = torch.zeros((1, *size, 3), dtype=torch.uint8)
    torch.onnx.export(
        Brightness(), (dummy,), str(path), input_names=["image"], output_names=["anomaly_map", "score"],
        opset_version=17, dynamo=False,
    )  # fmt: skip
    return path


def make_bundle(out: Path, thresholds: dict[str, float] | None = None, size: tuple[int, int] = SIZE) -> Bundle:
    """A real bundle around the detector; thresholds default to {"part": THRESHOLD}."""
    onnx_path = export_detector(out.parent / f"{out.name}.onnx", size)
    manifest = Manifest(
        model="brightness-test",
        preset="test",
        classes=("part",),
        input_size=size,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        precision="fp32",
        inputs=(TensorSpec("image", (1, *size, 3), "uint8"),),
        outputs=(TensorSpec("anomaly_map", (1, 1, *size), "float32"), TensorSpec("score", (1,), "float32")),
        thresholds={"part": THRESHOLD} if thresholds is None else thresholds,
    )
    return write_bundle(out, manifest, {"model.onnx": onnx_path})


def render_part(defect: bool, seed: int, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    """(H, W, 3) uint8 BGR: a grey disc with texture on a dark belt; a defect adds a bright scratch blob."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = rng.integers(10, 30, (height, width, 3), dtype=np.uint8)
    centre = (width // 2 + int(rng.integers(-8, 9)), height // 2 + int(rng.integers(-8, 9)))
    cv2.circle(image, centre, min(height, width) // 3, (105, 110, 115), -1)
    if defect:
        offset = (centre[0] + int(rng.integers(-12, 13)), centre[1] + int(rng.integers(-12, 13)))
        cv2.circle(image, offset, 9, (250, 250, 250), -1)
    return image


def write_video(path: Path, defects: list[bool], fps: float = 10.0, seed: int = 0) -> Path:
    """An MJPG AVI with one part per frame; `defects[i]` says whether part i has a defect."""
    first = render_part(False, seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (first.shape[1], first.shape[0]))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MJPG video here")
    for index, defect in enumerate(defects):
        writer.write(render_part(defect, seed + index))
    writer.release()
    return path


def write_folder(folder: Path, defects: list[bool], seed: int = 0) -> Path:
    """One PNG per part, named in order."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, defect in enumerate(defects):
        cv2.imwrite(str(folder / f"part{index:04d}.png"), render_part(defect, seed + index))
    return folder
