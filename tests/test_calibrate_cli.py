"""`lineside calibrate` end to end: synthetic good parts, a real ONNX bundle on ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from lineside.bundle import load_bundle
from lineside.calibration.thresholds_scoring import list_images, score_images
from lineside.cli import main

CLASSES = ("washer", "mesh")
N_GOOD = 240  # per class; half calibrates, half is held out
RATE = 0.05


@pytest.fixture(scope="module")
def split(synth_factory, tmp_path_factory):
    """Good images split into calibration and held-out folders per class (symlinks), plus the data root."""
    root = synth_factory(categories=CLASSES, n_train=N_GOOD, n_test_good=10, n_test_defect=20, size=64, seed=3)
    base = tmp_path_factory.mktemp("calib_split")
    for name in CLASSES:
        images = list_images(root / name / "train" / "good")
        assert len(images) == N_GOOD
        for part, chunk in (("calib", images[::2]), ("held", images[1::2])):
            folder = base / part / name
            folder.mkdir(parents=True)
            for image in chunk:
                (folder / image.name).symlink_to(image)
    return root, base


@pytest.mark.slow
def test_thresholds_meet_the_false_reject_rate_on_held_out_parts(split, tiny_bundle_factory, tmp_path, capsys):
    root, base = split
    bundle = tiny_bundle_factory(tmp_path / "bundle", classes=CLASSES)
    args = ["calibrate", str(bundle.path), "--good", str(base / "calib"), "--false-reject", str(RATE)]
    assert main([*args, "--plot", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "empirical" in out and "thresholds written to" in out
    calibrated = load_bundle(bundle.path)  # checksums still verify after the atomic manifest update
    assert set(calibrated.manifest.thresholds) == set(CLASSES)
    n_held = N_GOOD // 2
    ceiling = int(stats.binom.isf(1e-3, n_held, RATE))  # P(more false rejects | rate <= RATE) < 0.1 %
    for name in CLASSES:
        threshold = calibrated.manifest.thresholds[name]
        held = score_images(calibrated, list_images(base / "held" / name))
        rejected = int(np.sum(held > threshold))
        assert rejected <= ceiling, f"{name}: {rejected}/{n_held} good parts rejected at threshold {threshold}"
        calib = score_images(calibrated, list_images(base / "calib" / name))
        assert np.mean(calib > threshold) <= RATE  # the bound never sits below the calibration quantile
        png = tmp_path / "plots" / f"{name}_scores.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_defects_give_f1_threshold_and_miss_rates(split, tiny_bundle_factory, tmp_path, capsys):
    root, base = split
    bundle = tiny_bundle_factory(tmp_path / "bundle", classes=CLASSES)
    args = ["calibrate", str(bundle.path), "--good", str(base / "calib"), "--defect", str(root), "--class", "washer"]
    assert main(args) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("washer"))
    assert " f1 " in row
    threshold = load_bundle(bundle.path).manifest.thresholds["washer"]
    defects = [p for p in list_images(root / "washer" / "test", recursive=True) if p.parent.name != "good"]
    scores = score_images(load_bundle(bundle.path), defects)
    miss = float(np.mean(scores <= threshold))
    assert f"{miss:.2%}" in row.split()
    assert set(json.loads((bundle.path / "manifest.json").read_text())["thresholds"]) == {"washer"}


@pytest.mark.slow
def test_too_few_good_images_are_refused(split, tiny_bundle_factory, tmp_path, capsys):
    _, base = split
    bundle = tiny_bundle_factory(tmp_path / "bundle", classes=CLASSES)
    before = (bundle.path / "manifest.json").read_bytes()
    assert main(["calibrate", str(bundle.path), "--good", str(base / "calib"), "--false-reject", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "120 good images are too few for a false-reject rate of 0.001" in err and "needs 2995" in err
    assert (bundle.path / "manifest.json").read_bytes() == before


def test_bad_arguments_are_one_line_errors(tiny_bundle_factory, tmp_path, capsys):
    bundle = tiny_bundle_factory(tmp_path / "bundle", classes=CLASSES)
    assert main(["calibrate", str(bundle.path), "--good", str(tmp_path / "nope")]) == 2
    assert "good image folder not found" in capsys.readouterr().err
    assert main(["calibrate", str(bundle.path), "--good", str(tmp_path), "--class", "bolt"]) == 2
    assert "bolt not in the bundle; it has: washer, mesh" in capsys.readouterr().err
    (tmp_path / "washer").mkdir()
    assert main(["calibrate", str(bundle.path), "--good", str(tmp_path), "--class", "washer"]) == 2
    assert "no images" in capsys.readouterr().err
