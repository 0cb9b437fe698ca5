"""benchmarks/precisions.py on a real tiny run: exports, benchmarks, records a refused precision and goes on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "precisions.py"


def load_script():
    spec = importlib.util.spec_from_file_location("precisions_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_precisions_records_a_refused_precision_and_benches_the_rest(
    tiny_run_factory, export_data, tmp_path, monkeypatch
) -> None:
    import lineside.export.pipeline as pipeline

    real_export = pipeline.export_bundle

    def refuse_fp16(checkpoint, options):
        # The FP16 gate refuses only a model whose ranking FP16 changes; the tiny model's does not, so the
        # refusal (the gate's own message) is injected here and everything else is the real export.
        if options.precision == "fp16":
            raise RuntimeError("FP16 loses 0.125 I-AUROC points (limit 0.100): conversion is broken")
        return real_export(checkpoint, options)

    monkeypatch.setattr(pipeline, "export_bundle", refuse_fp16)
    run_dir = Path(tiny_run_factory("crr")).parent
    out = tmp_path / "out"
    argv = ["--model", f"tiny={run_dir}", "--data", str(export_data), "--out", str(out)]
    assert load_script().main([*argv, "--precisions", "fp32,fp16", "--runs", "4", "--eval-limit", "8"]) == 0
    doc = json.loads((out / "tiny" / "results.json").read_text())
    assert [row["name"] for row in doc["variants"]] == ["crr torch fp32", "crr ort fp32"]
    (skipped,) = [s for s in doc["skipped"] if s["what"] == "fp16 export"]
    assert skipped["reason"].startswith("refused: FP16 loses")
    assert (out / "tiny" / "bundles" / "fp32" / "manifest.json").is_file()
    assert not (out / "tiny" / "bundles" / "fp16").exists()
    summary = (out / "summary.md").read_text()
    assert "skipped fp16 export: refused" in summary and "crr ort fp32 vs crr torch fp32" in summary
    assert "| tiny | crr ort fp32 |" in summary and (out / "tiny" / "report.md").is_file()


def test_precisions_bad_model_spec(tmp_path, capsys) -> None:
    assert load_script().main(["--model", "crr", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "NAME=RUN" in capsys.readouterr().err
