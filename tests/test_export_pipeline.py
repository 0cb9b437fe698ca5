"""`lineside export` end to end on real tiny CRR and RLR models trained on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lineside.bundle import load_bundle
from lineside.cli import main

pytest.importorskip("onnxruntime")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

MODELS = ("crr", "rlr")
# Both tiny runs rank clearly better than chance (CRR above 0.6; RLR, 200 epochs, 0.98 measured).
MIN_AUROC = {"crr": 0.6, "rlr": 0.6}


@pytest.fixture(scope="module")
def bundles(tiny_run_factory, export_data, tmp_path_factory):
    """`bundles(name, precision)`: the model exported once through the CLI at that precision."""
    made: dict[tuple[str, str], Path] = {}

    def make(name: str, precision: str) -> Path:
        if (name, precision) not in made:
            out = tmp_path_factory.mktemp("bundles") / f"{name}_{precision}"
            argv = ["export", str(tiny_run_factory(name)), "--precision", precision, "--data", str(export_data)]
            assert main([*argv, "--calib-size", "16", "--out", str(out)]) == 0
            made[(name, precision)] = out
        return made[(name, precision)]

    return make


def _report(path: Path) -> dict:
    return json.loads((path / "report.json").read_text())


@pytest.mark.parametrize("name", MODELS)
def test_fp32_onnx_matches_torch(bundles, name: str) -> None:
    report = _report(bundles(name, "fp32"))
    parity = report["parity"]
    # parity and gates run on the validation set: 2 held-out good images per category (of 8) + 3 synthetic
    # defects each; the 64 test images are measured and reported, never gated on
    assert parity["real_images"] and parity["images"] == 16
    assert report["validation_source"] == {
        "good_images": 4,
        "synthetic_defects": 12,
        "seen_in_training": False,
        "source": "held-out good training images + synthetic defects (no test image)",
    }
    assert parity["map_max_abs_err_rel"] < 1e-3
    assert parity["score_max_abs_err"] < 1e-3 * max(parity["map_range"], 1e-6)
    assert parity["auroc_diff"] == 0.0
    assert report["inference_check"]["modules_in_train_mode"] == []
    assert report["inference_check"]["repeat_max_abs_diff"] == 0.0
    assert report["simplify"]["nodes_after"] < report["simplify"]["nodes_before"]
    form = report["inference_form"]  # the exported module is the cheaper form, checked against the trained one
    assert form["rewritten"] and form["max_abs_diff"] < 1e-3 * parity["map_range"]
    assert report["accuracy"]["fp32"]["mean"]["image_auroc"] >= MIN_AUROC[name]
    assert set(report["validation"]["fp32"]["mean"]) >= {"image_auroc", "pixel_auroc", "aupro"}


@pytest.mark.parametrize("name", MODELS)
def test_fp16_bundle_is_half_in_the_body_and_within_0_1_point(bundles, name: str) -> None:
    bundle = load_bundle(bundles(name, "fp16"))
    assert bundle.manifest.precision == "fp16" and bundle.manifest.cpu_model_file is None
    report = _report(bundle.path)
    fp16 = report["fp16"]
    # 2 good x 6 synthetic defects in each of 2 validation categories: one swapped pair is 100 / 12 / 2 points
    assert fp16["eval_resolution_points"] == pytest.approx(100 / 12 / 2)
    assert fp16["drop_limit_points"] == pytest.approx(max(0.1, 100 / 12 / 2))
    assert fp16["image_auroc_drop_points"] <= fp16["drop_limit_points"] + 1e-9
    counts = report["nodes"]["model.onnx"]["compute_ops_by_precision"]
    assert counts["float16"] > counts.get("float32", 0)
    fp32_size = _report(bundles(name, "fp32"))["file_sizes"]["model.onnx"]
    # the scoring tail's feeders (and RLR's learnable references they compare against) keep FP32 weights
    assert report["file_sizes"]["model.onnx"] < 0.7 * fp32_size


@pytest.mark.parametrize("name", MODELS)
def test_int8_bundle_has_both_flavours_within_max_drop(bundles, name: str) -> None:
    bundle = load_bundle(bundles(name, "int8"))
    manifest = bundle.manifest
    assert manifest.precision == "int8" and manifest.cpu_model_file == "model_cpu.onnx"
    assert manifest.inputs[0].dtype == "uint8" and manifest.inputs[0].shape == (1, 128, 128, 3)
    report = _report(bundle.path)
    int8 = report["int8"]
    limits = int8["gate_limits_points"]
    assert limits["pixel_auroc"] == 0.5 and limits["aupro"] == 1.5 and limits["image_auroc"] >= 0.5
    for flavour in ("s8s8", "u8s8"):  # every gated metric, measured on validation data, within its limit
        drops = int8[f"drop_points_{flavour}"]
        assert set(drops) == {"image_auroc", "pixel_auroc", "aupro"}
        assert all(drops[m] <= limits[m] + 1e-9 for m in drops)
    assert int8["calibration"]["per_category"] == {"mesh": 8, "washer": 8}
    for file in ("model.onnx", "model_cpu.onnx"):
        nodes = report["nodes"][file]
        assert nodes["quantize_linear"] > 0 and nodes["compute_ops_by_precision"]["int8"] > 0
    assert report["nodes"]["model.onnx"]["node_outputs_by_dtype"].get("int8", 0) > 0
    assert report["nodes"]["model_cpu.onnx"]["node_outputs_by_dtype"].get("uint8", 0) > 0
    accepted = [a for a in int8["attempts"] if a["passed"]]
    assert accepted and accepted[-1]["unquantized"] == len(int8["fallback_unquantized"])


def test_export_refuses_to_overwrite_and_bad_input(bundles, tiny_run_factory, tmp_path, capsys) -> None:
    existing = bundles("crr", "fp32")
    before = (existing / "manifest.json").read_bytes()
    checkpoint = str(tiny_run_factory("crr"))
    assert main(["export", checkpoint, "--out", str(existing)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (existing / "manifest.json").read_bytes() == before
    assert main(["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "b")]) == 2
    assert main(["export", checkpoint, "--precision", "int8", "--out", str(tmp_path / "b")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["export", checkpoint, "--calib-size", "0", "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()


def test_dynamic_batch_export_runs_batches(tiny_run_factory, tmp_path) -> None:
    import numpy as np

    from lineside.export.ort_run import cpu_session

    out = tmp_path / "dyn"
    assert main(["export", str(tiny_run_factory("rlr")), "--dynamic-batch", "--out", str(out)]) == 0
    bundle = load_bundle(out)
    assert bundle.manifest.dynamic_batch and bundle.manifest.inputs[0].shape[0] == "batch"
    session = cpu_session(bundle.model_path)
    images = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    maps, scores = session.run(None, {"image": images})
    assert maps.shape == (3, 1, 128, 128) and scores.shape == (3,)
    single = session.run(None, {"image": images[1:2]})[1]
    assert abs(float(single[0]) - float(scores[1])) < 1e-5
