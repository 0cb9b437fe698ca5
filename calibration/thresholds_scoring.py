"""Score image folders with a bundle's model through the runtime's ONNX Runtime backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from lineside.bundle import Bundle
from lineside.data.images import IMAGE_SUFFIXES, list_images
from lineside.errors import LinesideError
from lineside.preprocess import resize_for_model

BATCH = 8  # images per inference call when the graph has a dynamic batch


def score_images(bundle: Bundle, paths: list[Path], *, threads: int | None = None, desc: str = "scoring") -> np.ndarray:
    """Image scores (N,) float64 of `paths` from the bundle's model on ONNX Runtime (CPU)."""
    from lineside.data.images import load_image
    from lineside.runtime.backends.onnxruntime import OrtBackend

    if not paths:
        return np.zeros(0)
    size = bundle.manifest.input_size
    scores: list[np.ndarray] = []
    with OrtBackend(bundle, providers=["CPUExecutionProvider"], threads=threads) as backend:
        batch = backend.batch_size or BATCH
        with tqdm(total=len(paths), desc=desc, unit="img") as progress:
            for start in range(0, len(paths), batch):
                chunk = paths[start : start + batch]
                frames = [resize_for_model(load_image(p), size) for p in chunk]  # each (H, W, 3) uint8 BGR
                pad = batch - len(frames) if backend.batch_size else 0
                images = np.stack(frames + [frames[-1]] * pad)  # (batch, H, W, 3)
                result = backend.infer(images)
                scores.append(result.score[: len(chunk)].astype(np.float64))
                progress.update(len(chunk))
    return np.concatenate(scores)


def good_and_defect_paths(good_dir: Path, defect_dir: Path | None) -> tuple[list[Path], list[Path]]:
    """Good images of a class and its defect images.

    Good: the images in `good_dir` (or `good_dir/good` when that exists). Defects: every image under
    `defect_dir` except those in a sub-folder named `good`, which count as good (so an MVTec
    `category/test` folder can be passed as is).
    """
    if not good_dir.is_dir():
        raise LinesideError(f"good image folder not found: {good_dir}")
    folder = good_dir / "good" if (good_dir / "good").is_dir() else good_dir
    good = list_images(folder)
    if not good:
        hint = ""
        if (good_dir / "train" / "good").is_dir():
            hint = (
                "; this looks like an MVTec category: pass good images the model was NOT trained on "
                "(training images score too low and give thresholds that reject good parts)"
            )
        raise LinesideError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}{hint}")
    defect: list[Path] = []
    if defect_dir is not None:
        if not defect_dir.is_dir():
            raise LinesideError(f"defect image folder not found: {defect_dir}")
        for path in list_images(defect_dir, recursive=True):
            is_good = "good" in path.relative_to(defect_dir).parts[:-1]
            (good if is_good else defect).append(path)
        if not defect:
            raise LinesideError(f"no defect images under {defect_dir} (images in 'good' sub-folders count as good)")
    return good, defect
