"""benchmarks/lighting_shift.py on a synthetic set whose good test images were brightened on disk."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import lighting_shift  # noqa: E402

from lineside.train.runner import TrainRequest, train_run  # noqa: E402


def _brightened_copy(data: Path, tmp_path: Path, offset: int) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    for path in (copy / "wood" / "test" / "good").iterdir():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        cv2.imwrite(str(path), np.clip(image.astype(np.int16) + offset, 0, 255).astype(np.uint8))
    return copy


def test_a_brighter_good_test_split_is_measured_and_scored(synth_factory, tmp_path: Path) -> None:
    data = _brightened_copy(
        synth_factory(categories=("wood",), n_train=24, n_test_good=6, n_test_defect=6), tmp_path, 60
    )
    run = tmp_path / "run"
    train_run(TrainRequest(data=data, model="patchcore", out=run, preset="tiny", progress=False))
    out = tmp_path / "out"
    result = lighting_shift.main(["--data", str(data), "--checkpoint", str(run / "model.pt"), "--out", str(out),
                                  "--name", "synth", "--quiet"])  # fmt: skip
    (report,) = result["categories"]
    groups = report["groups"]
    assert [groups[g]["images"] for g in lighting_shift.GROUPS] == [22, 2, 6, 6]  # 24 train: 2 held out
    train, test_good = groups["train good"]["brightness"]["mean"], groups["test good"]["brightness"]["mean"]
    assert 40 < test_good - train < 61  # +60 on every channel, clipped at 255
    assert abs(groups["test defect"]["brightness"]["mean"] - train) < 25
    assert all("score" in group for group in groups.values())
    assert 0 <= report["i_auroc_vs_test_good"] < report["i_auroc_vs_validation_good"] <= 100  # the shift costs
    assert -1 <= groups["test good"]["score_brightness_correlation"] <= 1
    assert json.loads((out / "lighting_shift_synth.json").read_text()) == result
    assert (out / "lighting_shift_synth.md").read_text().count("\n| wood |") == 4
    assert (out / "lighting_shift_synth.png").stat().st_size > 5000


def test_without_a_checkpoint_only_the_light_is_reported(synth_factory, tmp_path: Path) -> None:
    data = synth_factory(categories=("wood",), n_train=8, n_test_good=4, n_test_defect=4)
    result = lighting_shift.main(["--data", str(data), "--out", str(tmp_path), "--quiet"])
    (report,) = result["categories"]
    assert "i_auroc_vs_test_good" not in report and "score" not in report["groups"]["test good"]
    assert report["groups"]["test good"]["brightness"]["mean"] > 0


def test_an_unknown_category_is_one_line_and_exit_2(synth_factory, tmp_path: Path) -> None:
    import subprocess

    data = synth_factory(categories=("wood",), n_train=8, n_test_good=4, n_test_defect=4)
    script = Path(lighting_shift.__file__)
    done = subprocess.run([sys.executable, str(script), "--data", str(data), "--categories", "steel", "--out",
                           str(tmp_path), "--quiet"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "steel" in done.stderr, done.stderr
