"""`lineside bench` on real bundles and real runs: tables, results.json schema, plots, report, bad input.

No benchmark figure is asserted: only that every measurement exists, is ordered and is written.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lineside.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
FAST = ["--runs", "6", "--warmup", "1", "--batch-runs", "2"]


def documented_keys(section: str) -> set[str]:
    """Keys listed as `section.key` (or top-level `key` for section '') in docs/bench.md's schema tables."""
    text = (ROOT / "docs" / "bench.md").read_text(encoding="utf-8")
    schema = text.split("### results.json", 1)[1].split("\n## ", 1)[0]
    keys = re.findall(r"^\| `([\w.\[\]]+)` \|", schema, flags=re.M)
    if not section:
        return {k for k in keys if "." not in k}
    return {k.removeprefix(f"{section}.") for k in keys if k.startswith(f"{section}.")}


def check_schema(doc: dict) -> None:
    """The document has exactly the documented keys, and every latency series is ordered."""
    assert doc["schema"] == "lineside-bench" and doc["schema_version"] == 2
    assert set(doc) == documented_keys("")
    assert set(doc["machine"]) == documented_keys("machine")
    assert set(doc["settings"]) == documented_keys("settings")
    assert set(doc["stages"]) == {"decode", "resize", "preprocess", "postprocess", "decision", "actuation"}
    assert doc["stages"]["preprocess"]["in_graph"] is True
    for row in doc["variants"]:
        assert set(row) == documented_keys("variants[]")
        for stats in (row["latency"], row["end_to_end"], *(doc["stages"][s] for s in ("decode", "actuation"))):
            assert 0 <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
        assert row["end_to_end"]["mean_ms"] > row["latency"]["mean_ms"]
        assert len(row["latencies_ms"]) == doc["settings"]["runs"]
    assert doc["machine"]["versions"]["onnxruntime"] and doc["machine"]["versions"]["numpy"]
    assert doc["machine"]["load_average_end"] is not None


def check_report(folder: Path, with_accuracy: bool) -> str:
    """All files written; report.md names every table and links its plots."""
    for png in ("latency.png", "stages.png"):
        assert (folder / png).read_bytes()[:8] == PNG
    assert (folder / "accuracy_latency.png").exists() == with_accuracy
    report = (folder / "report.md").read_text()
    for title in ("Latency per variant", "Latency per stage", "Throughput", "Accuracy", "lineside bench "):
        assert title in report
    assert "](latency.png)" in report and "](stages.png)" in report
    return report


def test_bench_tiny_bundle_writes_tables_json_plots_report(tmp_path, tiny_bundle_factory, capsys) -> None:
    bundle = tiny_bundle_factory(tmp_path / "b")  # dynamic batch: throughput at batch 2 and 4 too
    report = tmp_path / "r"
    argv = ["bench", str(bundle.path), *FAST, "--batch-sizes", "2,4", "--report", str(report)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for title in ("Latency per variant", "Latency per stage", "Throughput", "Accuracy", "e2e p99", "load average"):
        assert title in printed
    doc = json.loads((report / "results.json").read_text())
    check_schema(doc)
    (row,) = doc["variants"]
    assert row["name"] == "highpass ort fp32" and row["speedup_vs_ort_fp32"] == 1.0
    assert [t["batch"] for t in row["throughput"]] == [1, 2, 4]
    assert row["memory"]["peak_rss_mb"] >= row["memory"]["model_rss_mb"] > 0
    assert row["accuracy"] is None and doc["eval_set"] is None
    assert doc["settings"]["actuator"] == "serial://loop://" and doc["settings"]["camera"]["jpeg_bytes"] > 10_000
    assert (
        doc["skipped"] == [{"what": "highpass tensorrt fp32", "reason": doc["skipped"][0]["reason"]}]
        and "lineside build" in doc["skipped"][0]["reason"]
    )
    assert doc["command"][:3] == ["lineside", "bench", str(bundle.path)]
    check_report(report, with_accuracy=False)


def test_bench_with_data_runs_without_torch(tmp_path, tiny_bundle_factory, synth_data) -> None:
    """The runtime-only install (a Jetson: no torch, onnx, scipy) benchmarks bundles with accuracy."""
    bundle = tiny_bundle_factory(tmp_path / "b")
    report = tmp_path / "r"
    argv = [
        "bench",
        str(bundle.path),
        "--data",
        str(synth_data),
        *FAST,
        "--actuator",
        "log://",
        "--report",
        str(report),
    ]
    code = (
        "import sys\nfor m in ('torch', 'onnx', 'scipy', 'sklearn'): sys.modules[m] = None\n"
        f"from lineside.cli import main\nsys.exit(main({argv!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads((report / "results.json").read_text())
    check_schema(doc)
    (row,) = doc["variants"]
    assert set(row["accuracy_delta_points"]) == {"image_auroc", "pixel_auroc", "aupro"}
    assert doc["eval_set"]["images"] == 16 and doc["eval_set"]["categories"] == 2
    check_report(report, with_accuracy=True)


def test_bench_records_an_engine_it_cannot_run(tmp_path, tiny_bundle_factory, capsys) -> None:
    """A real TensorRT-RTX engine next to the bundle: without a GPU the TensorRT variant is skipped with the reason."""
    pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX: pip install 'lineside[tensorrt-rtx]'")
    bundle = tiny_bundle_factory(tmp_path / "b")
    assert (
        main(
            [
                "build",
                str(bundle.path),
                "--target",
                "sm86",
                "--out",
                str(bundle.path / "model.engine"),
                "--max-batch",
                "4",
            ]
        )
        == 0
    )
    from lineside.cuda_device import current_gpu

    if current_gpu(0) is not None:
        pytest.skip("a GPU is present: the TensorRT variant runs (covered by the ratios, not asserted)")
    capsys.readouterr()
    assert main(["bench", str(bundle.path), *FAST, "--no-memory"]) == 0
    out = capsys.readouterr()
    assert "skipped highpass tensorrt fp32" in out.out and "GPU" in out.out
    assert main(["bench", str(bundle.path), *FAST, "--backends", "tensorrt"]) == 2
    assert "GPU" in capsys.readouterr().err


def test_bench_bad_input(tmp_path, tiny_bundle_factory, capsys) -> None:
    bundle = str(tiny_bundle_factory(tmp_path / "b").path)
    twin = str(tiny_bundle_factory(tmp_path / "twin").path)
    cases = [
        ([bundle, twin], "one bundle per precision"),
        ([str(tmp_path / "missing")], "not found"),
        ([bundle, "--precisions", "fp64"], "fp32,fp16,int8"),
        ([bundle, "--precisions", "int8"], "no bundle"),
        ([bundle, "--runs", "0"], "--runs"),
        ([bundle, "--backends", "cuda"], "torch,ort,tensorrt"),
        ([bundle, "--backends", "torch"], "model.pt"),
        ([bundle, "--backends", "tensorrt"], "lineside build"),
        ([bundle, "--camera", "big"], "WIDTHxHEIGHT"),
        ([bundle, "--batch-sizes", "1,x"], "--batch-sizes"),
        ([bundle, "--actuator", "telnet://plc"], "unknown actuator"),
    ]
    for extra, message in cases:
        assert main(["bench", *extra, "--no-memory"]) == 2
        assert message in capsys.readouterr().err, extra


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bench_bundles_and_torch_side_by_side(tiny_run_factory, export_data, tmp_path, capsys) -> None:
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
    argv = ["bench", *bundles, checkpoint, "--data", str(export_data), *FAST, "--report", str(report)]
    assert main(argv) == 0
    doc = json.loads((report / "results.json").read_text())
    check_schema(doc)
    rows = {row["name"]: row for row in doc["variants"]}
    assert set(rows) == {"crr torch fp32", "crr ort fp32", "crr ort int8 u8s8", "crr ort int8 s8s8"}
    ratios = {r["name"] for r in doc["ratios"]}
    assert ratios == {
        "crr ort fp32 vs crr torch fp32",
        "crr ort int8 u8s8 vs crr ort fp32",
        "crr ort int8 s8s8 vs crr ort fp32",
    }
    for row in rows.values():
        assert 0.5 < row["accuracy"]["image_auroc"] <= 1.0 and "aupro" in row["accuracy"]
        assert row["memory"]["model_rss_mb"] > 0
    assert rows["crr ort fp32"]["accuracy_delta_points"]["image_auroc"] == 0.0
    assert rows["crr ort int8 u8s8"]["accuracy_reference"] == "crr ort fp32"
    assert rows["crr ort int8 u8s8"]["size_bytes"] < rows["crr ort fp32"]["size_bytes"]
    assert [t["batch"] for t in rows["crr torch fp32"]["throughput"]] == [1, 4, 8]  # torch takes any batch
    assert [t["batch"] for t in rows["crr ort fp32"]["throughput"]] == [1]  # static batch-1 export
    check_report(report, with_accuracy=True)


def test_memory_child_failure_is_reported_not_raised(tmp_path) -> None:
    from lineside.export.bench.memory import measure
    from lineside.export.bench.variants import BackendSpec

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    result = measure(BackendSpec("ort", str(broken), threads=1), (8, 8))
    assert set(result) == {"error"} and "cannot load" in result["error"]


def test_docs_usage_block_lists_every_bench_option(capsys) -> None:
    usage = (ROOT / "docs" / "bench.md").read_text(encoding="utf-8").split("```", 2)[1]
    documented = set(re.findall(r"\[(--[\w-]+)", usage))
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    options = set(re.findall(r"^\s+(--[\w-]+)", capsys.readouterr().out, flags=re.M)) - {"--help"}
    assert documented == options
