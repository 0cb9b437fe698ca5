"""CRR end to end through the CLI: tiny preset trains, beats chance clearly, eval reproduces it; DDP on gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lineside.cli import main


@pytest.fixture(scope="module")
def crr_data(synth_factory):
    return synth_factory(categories=("washer", "mesh"), n_train=20, n_test_good=8, n_test_defect=8, size=128)


@pytest.mark.slow
def test_tiny_preset_trains_and_evaluates_clearly_better_than_chance(crr_data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", str(crr_data), "--model", "crr", "--preset", "tiny", "--out", str(run), "--threads", "1"]
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    mean = metrics["eval"]["mean"]
    assert metrics["classes"] == ["mesh", "washer"] and metrics["train_images"] == 36
    assert metrics["validation_images"] == 4  # 2 of each category's 20 good images held out for export's gates
    assert mean["image_auroc"] > 0.75, mean
    assert mean["pixel_auroc"] > 0.9, mean
    assert mean["aupro"] > 0.6, mean
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["stage"] == "reconstruct+repair" and log[-1]["stage"] == "segmentation"
    assert log[len(log) // 2 - 1]["loss"] < log[0]["loss"]
    capsys.readouterr()

    heat = tmp_path / "heat"
    out_json = tmp_path / "eval.json"
    args = ["eval", str(run / "model.pt"), "--data", str(crr_data), "--json", str(out_json), "--heatmaps", str(heat)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mean" in printed and "I-AUROC" in printed
    again = json.loads(out_json.read_text())
    assert again["mean"]["image_auroc"] == pytest.approx(mean["image_auroc"], abs=1e-6)
    assert len(list(heat.glob("*.png"))) == 2 * 2 * 3  # 2 categories x (3 false passes + 3 high goods)

    assert main(argv) == 2  # existing run without --resume is refused
    assert "--resume" in capsys.readouterr().err


def test_bad_data_folder_is_one_line_exit_2(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / "missing"), "--model", "crr", "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such data set folder" in err
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--model", "crr", "--out", str(tmp_path / "r")]) == 2
    assert main(["eval", str(tmp_path / "none.pt"), "--data", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(crr_data, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "lineside", "train", "--data", str(crr_data), "--model", "crr", "--preset", "tiny",
           "--out", str(run), "--epochs", "1", "--no-eval", "--threads", "1", "--category", "washer"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["epoch"] == 1 and log[-1]["stage"] == "segmentation"
    from lineside.train.checkpoint import load_checkpoint

    assert load_checkpoint(run / "model.pt").classes == ["washer"]
