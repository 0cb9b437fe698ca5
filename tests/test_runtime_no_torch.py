"""`lineside.runtime` must run on a Jetson without torch: import every module and infer with torch blocked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runtime_support import make_bundle, render_part

CHILD = r"""
import importlib, pkgutil, sys
for blocked in ("torch", "torchvision", "timm", "lineside.train", "lineside.export"):
    sys.modules[blocked] = None  # any import of these now raises ImportError
import cv2
import lineside.runtime
names = [m.name for m in pkgutil.walk_packages(lineside.runtime.__path__, "lineside.runtime.")]
for name in names:
    importlib.import_module(name)
from lineside.bundle import load_bundle
from lineside.preprocess import resize_for_model
from lineside.runtime.backends.base import open_backend
with open_backend(load_bundle(sys.argv[1]), "ort") as backend:
    image = resize_for_model(cv2.imread(sys.argv[2]), backend.input_size)
    result = backend.infer(image[None])
import json
print(json.dumps({"modules": names, "shape": list(result.anomaly_map.shape), "score": float(result.score[0])}))
"""


def test_runtime_imports_and_infers_without_torch(tmp_path: Path):
    import cv2

    bundle = make_bundle(tmp_path / "bundle")
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), render_part(True, 3))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(bundle.path), str(image)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {
        "lineside.runtime.pipeline",
        "lineside.runtime.backends.tensorrt",
        "lineside.runtime.actuators.modbus",
    } <= set(report["modules"])
    assert report["shape"] == [1, 1, 64, 64]
    assert report["score"] > 0.9  # the defect blob is found
