"""benchmarks/real_data.py on two tiny synthetic 'real' sets: the rows' schema and ranges, the cache, the latency."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_data.py"
KEYS = {"trained_on", "dataset", "model", "category", "seed", "i_auroc", "p_auroc", "aupro", "i_ap", "train_seconds"}


def load_script():
    spec = importlib.util.spec_from_file_location("real_data_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sets(synth_factory) -> dict[str, Path]:  # noqa: ANN001 - shared conftest fixture
    small = {"n_train": 6, "n_test_good": 3, "n_test_defect": 3, "size": 128}
    return {"a": synth_factory(categories=("washer",), **small), "b": synth_factory(categories=("mesh",), **small)}


@pytest.fixture(scope="module")
def first_run(sets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real_data")
    argv = ["--models", "patchcore", "--set", f"a={sets['a']}", "--set", f"b={sets['b']}", "--sets", "a,b"]
    argv += ["--preset", "tiny", "--out", str(root / "out"), "--work", str(root / "work"), "--quiet", "--no-latency"]
    assert load_script().main(argv) == 0
    return {"out": root / "out", "work": root / "work", "argv": argv}


def test_rows_cover_each_set_alone_and_unified(first_run: dict[str, Path]) -> None:
    doc = json.loads((first_run["out"] / "real_data.json").read_text())
    rows = doc["rows"]
    assert doc["preset"] == "tiny" and all(KEYS <= set(r) for r in rows)
    cells = {(r["trained_on"], r["dataset"], r["category"]) for r in rows}
    assert cells == {
        ("a", "a", "washer"), ("a", "a", "mean"), ("b", "b", "mesh"), ("b", "b", "mean"),
        ("unified", "a", "washer"), ("unified", "a", "mean"), ("unified", "b", "mesh"), ("unified", "b", "mean"),
    }  # fmt: skip
    for row in rows:
        assert row["model"] == "patchcore" and row["seed"] == 0 and row["int8_u8s8_ms"] is None
        assert all(0.0 <= row[k] <= 100.0 for k in ("i_auroc", "p_auroc", "aupro", "i_ap"))
        assert row["train_seconds"] > 0 and row["train_images"] >= 4
    by_cell = {(r["trained_on"], r["dataset"], r["category"]): r for r in rows}
    assert by_cell[("a", "a", "mean")]["i_auroc"] == by_cell[("a", "a", "washer")]["i_auroc"]  # one category
    assert by_cell[("unified", "a", "washer")]["train_images"] > by_cell[("a", "a", "washer")]["train_images"]
    table = (first_run["out"] / "real_data.md").read_text()
    assert "| a | unified | patchcore | 0 |" in table and "## Per category" in table
    sheets = sorted(p.name for p in (first_run["out"] / "real_data_heatmaps").glob("*.png"))
    assert sheets == [
        f"{t}_patchcore_s0_on_{d}.png" for t, d in [("a", "a"), ("b", "b"), ("unified", "a"), ("unified", "b")]
    ]


def test_a_finished_cell_is_not_trained_again(first_run: dict[str, Path]) -> None:
    checkpoint = first_run["work"] / "a" / "patchcore" / "seed0" / "run" / "model.pt"
    stamp = checkpoint.stat().st_mtime_ns
    assert load_script().main(first_run["argv"]) == 0
    assert checkpoint.stat().st_mtime_ns == stamp
    argv = [*first_run["argv"], "--cached-only", "--note", "a test run"]
    argv[argv.index("patchcore")] = "patchcore,rlr"
    assert load_script().main(argv) == 0  # rlr has no finished cell: listed, not trained
    assert not (first_run["work"] / "a" / "rlr").exists()
    table = (first_run["out"] / "real_data.md").read_text()
    assert "- Not run (no finished cell): a/rlr/seed 0, b/rlr/seed 0, unified/rlr/seed 0." in table
    assert "- a test run" in table


def test_unified_only_runs_just_the_unified_cells(first_run: dict[str, Path]) -> None:
    assert load_script().main([*first_run["argv"], "--unified-only"]) == 0  # cached: tabulated, not retrained
    rows = json.loads((first_run["out"] / "real_data.json").read_text())["rows"]
    assert {r["trained_on"] for r in rows} == {"unified"} and {r["dataset"] for r in rows} == {"a", "b"}


@pytest.mark.slow  # one INT8 export of the tiny model (~20 s)
def test_latency_is_added_to_cached_cells(first_run: dict[str, Path]) -> None:
    argv = [a for a in first_run["argv"] if a != "--no-latency"]
    argv[argv.index("a,b")] = "a"
    assert load_script().main([*argv, "--no-unified"]) == 0
    rows = json.loads((first_run["out"] / "real_data.json").read_text())["rows"]
    assert {r["trained_on"] for r in rows} == {"a"}
    for row in rows:  # the export's own gates may refuse INT8 on 6 tiny images: then the refusal is recorded
        if row["int8_u8s8_ms"] is None:
            assert "refused" in row["int8_error"]
        else:
            assert 0 < row["int8_u8s8_ms"] < 10_000 and row["int8_threads"] == 1


def test_bad_options_are_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    script = load_script()
    assert script.main(["--sets", "nowhere", "--out", str(tmp_path)]) == 2
    assert "data set(s) not found: nowhere" in capsys.readouterr().err
    assert script.main(["--models", "knn", "--set", f"a={tmp_path}", "--sets", "a"]) == 2
    assert "--models" in capsys.readouterr().err
    assert script.main(["--unified-only", "--set", f"a={tmp_path}", "--sets", "a", "--out", str(tmp_path)]) == 2
    assert "--unified-only needs" in capsys.readouterr().err
