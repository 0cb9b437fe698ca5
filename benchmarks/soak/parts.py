"""Ground truth: the parts the line carries, drawn from a labelled (MVTec-layout) synthetic data set.

Each distinct test image of one category is written once as the JPEG the camera sends, and scored
once, fault-free, with the same bundle and backend the line runs: its clean verdict. A defect whose
clean verdict is PASS is a model miss, not a fault's doing; the soak counts it apart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import cv2

from lineside.bundle import load_bundle
from lineside.data.images import decode_image, list_images, load_image
from lineside.errors import LinesideError
from lineside.preprocess import resize_for_model
from lineside.runtime.backends.base import open_backend
from lineside.runtime.decision import Verdict, decide, resolve_threshold

JPEG_QUALITY = 95


@dataclass(frozen=True)
class Catalogue:
    """The distinct part images: JPEG files, defect labels, clean scores and the line's threshold."""

    category: str
    frames: list[Path]
    defect: list[bool]
    scores: list[float]
    threshold: float

    def clean_verdict(self, index: int) -> Verdict:
        return decide(self.scores[index], self.threshold)


def labelled_images(data: Path, category: str) -> list[tuple[Path, bool]]:
    """(image, is_defect) for DATA/CATEGORY/test/good (good) and every other DATA/CATEGORY/test/* (defect)."""
    test = data / category / "test"
    if not test.is_dir():
        raise LinesideError(f"--data {data}: no {category}/test folder (an MVTec-layout set from `lineside synth`)")
    labelled = [(p, folder.name != "good") for folder in sorted(test.iterdir()) if folder.is_dir()
                for p in list_images(folder)]  # fmt: skip
    if not any(d for _, d in labelled) or all(d for _, d in labelled):
        raise LinesideError(f"--data {data}: {category}/test needs both good and defect images")
    return labelled


def build_catalogue(data: Path, category: str, bundle_path: Path, out: Path, threads: int) -> Catalogue:
    """Write each test image of `category` as a JPEG under `out` and score it fault-free with the bundle."""
    bundle = load_bundle(bundle_path)
    threshold = resolve_threshold(bundle, None, category if category in bundle.manifest.classes else None)
    out.mkdir(parents=True, exist_ok=True)
    frames, defect, scores = [], [], []
    with open_backend(bundle, "ort", None, None, threads) as backend:
        for index, (path, is_defect) in enumerate(labelled_images(data, category)):
            ok, jpeg = cv2.imencode(".jpg", load_image(path), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise LinesideError(f"cannot encode {path} as JPEG")
            frame = out / f"frame{index:04d}.jpg"
            frame.write_bytes(jpeg.tobytes())
            image = resize_for_model(decode_image(jpeg.tobytes(), frame), backend.input_size)  # what the line sees
            scores.append(float(backend.infer(image[None]).score[0]))
            frames.append(frame)
            defect.append(is_defect)
    return Catalogue(category, frames, defect, scores, threshold)


def part_sequence(catalogue: Catalogue, parts: int, defect_rate: float, seed: int) -> list[int]:
    """The catalogue image of every part: a defect with probability `defect_rate`, else a good one."""
    rng = random.Random(seed)
    good = [i for i, d in enumerate(catalogue.defect) if not d]
    bad = [i for i, d in enumerate(catalogue.defect) if d]
    return [rng.choice(bad) if rng.random() < defect_rate else rng.choice(good) for _ in range(parts)]
