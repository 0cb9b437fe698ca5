"""benchmarks/rlr_maps.py on a tiny RLR trained for real: every map form scored, the deployed one reproduced."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import rlr_maps  # noqa: E402

from lineside.data import open_dataset  # noqa: E402
from lineside.train.runner import TrainRequest, train_run  # noqa: E402


@pytest.mark.slow
def test_every_form_is_scored_and_the_deployed_form_matches_the_model(synth_factory, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    data = synth_factory(categories=("wood",), n_train=12, n_test_good=6, n_test_defect=6, size=128)
    run = tmp_path / "run"
    summary = train_run(TrainRequest(data=data, model="rlr", out=run, preset="tiny", epochs=4, progress=False))
    result = rlr_maps.main(["--checkpoint", str(run / "model.pt"), "--data", str(data), "--train-images", "1000",
                            "--out", str(tmp_path / "out"), "--name", "synth", "--quiet"])  # fmt: skip
    rows = result["rows"]
    forms = len(rlr_maps.ERRORS) * len(rlr_maps.STANDARDISE) * len(rlr_maps.LEVELS) * len(rlr_maps.SCORES)
    assert len(rows) == forms and result["train_images"] == summary["train_images"]
    assert all(0 <= row["i_auroc"] <= 100 and 0 <= row["p_auroc"] <= 100 for row in rows)
    kinds = {s.defect_type for s in open_dataset(data).select(split="test") if s.label}
    assert kinds and all(set(row["per_type"]) == kinds for row in rows)  # every defect type of the test split
    # the tiny preset deploys (1 - cos), standardised per position over all its training images, score = max:
    # the same form recomputed here (float32 features, the model used float16 cached ones) scores alike
    deployed = next(r for r in rows if (r["error"], r["standardise"], r["levels"], r["score"]) ==
                    ("cos", "position", "both", "max"))  # fmt: skip
    assert abs(deployed["i_auroc"] - 100 * summary["eval"]["mean"]["image_auroc"]) <= 2.0
    saved = json.loads((tmp_path / "out" / "rlr_maps_synth.json").read_text())
    assert (
        saved["rows"] == rows and (tmp_path / "out" / "rlr_maps_synth.md").read_text().count("\n| ") == forms + 2
    )  # header, rule, rows


def test_a_non_rlr_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lineside.train.checkpoint import save_checkpoint
    from lineside.train.models import build_model

    model = build_model("patchcore", "tiny", ["part"], random_init_backbone=True)
    save_checkpoint(tmp_path / "pc.pt", model)
    with pytest.raises(SystemExit) as exit_info:
        rlr_maps.main(["--checkpoint", str(tmp_path / "pc.pt"), "--data", str(tmp_path), "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "reads RLR decoders" in capsys.readouterr().err
