"""`lineside bench` on real exported bundles and a real run: table, results.json, plots, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lineside.cli import main

pytest.importorskip("onnxruntime")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bench_bundles_side_by_side(tiny_run_factory, export_data, tmp_path, capsys) -> None:
    checkpoint = str(tiny_run_factory("crr"))
    bundles = []
    for precision in ("fp32", "int8"):
        out = tmp_path / precision
        assert (
            main(["export", checkpoint, "--precision", precision, "--data", str(export_data), "--out", str(out)]) == 0
        )
        bundles.append(str(out))
    capsys.readouterr()
    report = tmp_path / "report"
    argv = ["bench", *bundles, "--data", str(export_data), "--runs", "12", "--warmup", "1", "--report", str(report)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "crr ort fp32" in printed and "crr ort int8 u8s8" in printed and "p99 ms" in printed
    doc = json.loads((report / "results.json").read_text())
    assert doc["schema"] == "lineside-bench/1" and doc["runs"] == 12
    rows = {row["name"]: row for row in doc["variants"]}
    assert set(rows) == {"crr ort fp32", "crr ort int8 u8s8", "crr ort int8 s8s8"}
    for row in rows.values():
        latency = row["latency"]
        assert len(row["latencies_ms"]) == 12
        assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= latency["max_ms"]
        assert 0.5 < row["accuracy"]["image_auroc"] <= 1.0 and "aupro" in row["accuracy"]
    assert rows["crr ort fp32"]["speedup_vs_ort_fp32"] == 1.0
    assert rows["crr ort fp32"]["image_auroc_drop_points"] == 0.0
    assert rows["crr ort int8 u8s8"]["size_bytes"] < rows["crr ort fp32"]["size_bytes"]
    for png in ("latency.png", "accuracy_latency.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bench_run_adds_torch_eager(tiny_run_factory, tmp_path, capsys) -> None:
    run_dir = Path(tiny_run_factory("crr")).parent
    report = tmp_path / "report"
    argv = ["bench", str(run_dir), "--precisions", "fp32", "--runs", "5", "--warmup", "1", "--report", str(report)]
    assert main(argv) == 0
    doc = json.loads((report / "results.json").read_text())
    names = [row["name"] for row in doc["variants"]]
    assert names == ["torch eager fp32", "crr ort fp32"]
    assert all(row["accuracy"] is None for row in doc["variants"])  # no --data: latency only
    assert (report / "bundles" / "fp32" / "manifest.json").is_file()
    assert not (report / "accuracy_latency.png").exists()


def test_bench_bad_input(tmp_path, tiny_bundle_factory, capsys) -> None:
    assert main(["bench", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    bundle = tiny_bundle_factory(tmp_path / "b")
    assert main(["bench", str(bundle.path), "--precisions", "fp64"]) == 2
    assert "fp32,fp16,int8" in capsys.readouterr().err
    assert main(["bench", str(bundle.path), "--precisions", "int8"]) == 2
    assert "no bundle" in capsys.readouterr().err
    assert main(["bench", str(bundle.path), "--runs", "0"]) == 2


def test_bench_times_a_real_bundle_quickly(tmp_path, tiny_bundle_factory, capsys) -> None:
    bundle = tiny_bundle_factory(tmp_path / "b")
    assert main(["bench", str(bundle.path), "--runs", "20", "--warmup", "2", "--report", str(tmp_path / "r")]) == 0
    doc = json.loads((tmp_path / "r" / "results.json").read_text())
    (row,) = doc["variants"]
    assert row["name"] == "highpass ort fp32" and len(row["latencies_ms"]) == 20
    assert row["speedup_vs_ort_fp32"] == 1.0 and doc["machine"]["threads"] == 2
    assert "highpass ort fp32" in capsys.readouterr().out
