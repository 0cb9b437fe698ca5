"""The synthetic defect data set: determinism, exact masks, layout, variation, CLI and video helper."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineside.cli import main
from lineside.data import open_dataset
from lineside.errors import LinesideError
from lineside.synth import CATEGORIES, generate_dataset, render_sample
from lineside.synth.scene import CLOSE_KERNEL, DIFF_LEVEL, MIN_AREA_BY_TYPE, MIN_DEFECT_AREA
from lineside.synth.video import write_parts_video

ALL_DEFECTS = [(c, d) for c, cat in CATEGORIES.items() for d in cat.defect_types]


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))}


def test_categories_cover_textures_objects_and_defect_kinds():
    assert {"mesh", "brushed_metal", "wood", "washer", "screw", "capsule"} <= set(CATEGORIES)
    kinds = {d for _, d in ALL_DEFECTS}
    assert {"scratch", "crack", "hole", "pit", "stain", "contamination", "missing", "bent"} <= kinds


@pytest.mark.parametrize(("category", "defect"), ALL_DEFECTS)
def test_mask_is_exactly_where_the_defect_changed_the_image(category, defect):
    for index in range(2):
        s = render_sample(category, 3, "test", defect, index, 128)
        changed = (s.image != s.clean).any(axis=2)
        assert not (changed & ~s.mask).any(), "the image differs from its clean twin outside the mask"
        strong = np.abs(s.image.astype(int) - s.clean.astype(int)).max(axis=2) >= DIFF_LEVEL
        closed = cv2.morphologyEx(strong.astype(np.uint8), cv2.MORPH_CLOSE, CLOSE_KERNEL).astype(bool)
        np.testing.assert_array_equal(s.mask, closed)  # mask = closed set of clearly changed pixels
        assert s.mask.sum() >= MIN_AREA_BY_TYPE.get(defect, MIN_DEFECT_AREA) * (128 / 256) ** 2
        assert s.mask.mean() < 0.12, "defects are local, not whole-image"
        inside = np.abs(s.image.astype(int) - s.clean.astype(int)).max(axis=2)[s.mask]
        assert np.median(inside) >= DIFF_LEVEL
        assert np.percentile(inside, 90) < 250, "not a saturated blob"


def test_good_images_have_empty_masks_and_vary():
    for category in CATEGORIES:
        a, b = (render_sample(category, 0, "train", "good", i, 128) for i in range(2))
        assert not a.mask.any() and (a.image == a.clean).all()
        diff = np.abs(a.image.astype(int) - b.image.astype(int))
        assert diff.mean() > 4, f"{category}: good images must differ in lighting, pose or texture phase"


def test_render_is_a_pure_function_of_its_arguments():
    a = render_sample("screw", 11, "test", "bent", 2, 96)
    b = render_sample("screw", 11, "test", "bent", 2, 96)
    c = render_sample("screw", 12, "test", "bent", 2, 96)
    assert (a.image == b.image).all() and (a.mask == b.mask).all()
    assert (a.image != c.image).any()


def test_generate_writes_mvtec_layout_read_back_by_the_reader(tmp_path):
    out = tmp_path / "d"
    summary = generate_dataset(
        out, categories=["washer", "wood"], n_train=5, n_test_good=3, n_test_defect=6, size=96, progress=False
    )
    assert summary.n_images == 2 * (5 + 3 + 6) and summary.categories == ("washer", "wood")
    ds = open_dataset(out)
    assert ds.layout == "mvtec" and ds.categories == ["washer", "wood"]
    assert ds.counts()["washer"] == {
        "test/crack": 2,
        "test/good": 3,
        "test/missing": 2,
        "test/scratch": 1,
        "test/stain": 1,
        "train/good": 5,
    }
    for sample in ds.select(split="test", category="wood"):
        image, mask = sample.load()
        assert image.shape == (96, 96, 3)
        raw = cv2.imread(str(sample.mask_path), cv2.IMREAD_UNCHANGED) if sample.mask_path else None
        if sample.label:
            assert set(np.unique(raw)) == {0, 255} and mask.any()
            index = int(sample.image_path.stem)
            expected = render_sample("wood", 0, "test", sample.defect_type, index, 96)
            np.testing.assert_array_equal(image, expected.image)
            np.testing.assert_array_equal(mask, expected.mask)
        else:
            assert not mask.any()
    preview = cv2.imread(str(out / "preview.png"))
    assert preview is not None and preview.shape[0] > 100 and preview.std() > 10
    assert not list(tmp_path.glob(".*partial*")), "staging folder left behind"


def test_same_seed_gives_byte_identical_files(tmp_path):
    kwargs = dict(categories=["mesh", "capsule"], n_train=3, n_test_good=2, n_test_defect=4, size=64, progress=False)
    generate_dataset(tmp_path / "a", seed=5, **kwargs)
    generate_dataset(tmp_path / "b", seed=5, **kwargs)
    generate_dataset(tmp_path / "c", seed=6, **kwargs)
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert a == b and len(a) == 2 * (3 + 2 + 4) + 2 * 4 + 1  # images + masks + preview
    assert sum(a[k] != c[k] for k in a) > len(a) // 2


@pytest.mark.slow
def test_worker_processes_write_the_same_bytes(tmp_path):
    kwargs = dict(categories=["wood", "screw"], n_train=50, n_test_good=5, n_test_defect=10, size=64, progress=False)
    generate_dataset(tmp_path / "serial", workers=1, **kwargs)
    generate_dataset(tmp_path / "pool", workers=2, **kwargs)
    assert _digests(tmp_path / "serial") == _digests(tmp_path / "pool")


def test_refuses_a_non_empty_out_without_force(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    kwargs = dict(categories=1, n_train=2, n_test_good=1, n_test_defect=1, size=64, progress=False)
    with pytest.raises(LinesideError, match="not empty.*--force"):
        generate_dataset(out, **kwargs)
    assert (out / "keep.txt").read_text() == "user data"
    generate_dataset(out, force=True, **kwargs)
    assert not (out / "keep.txt").exists() and (out / "mesh" / "train" / "good" / "000.png").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    generate_dataset(empty, **kwargs)  # an existing empty folder is fine


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(categories=0), "--categories must be 1..6"),
        (dict(categories="mesh,bottle"), "unknown synthetic categories \\['bottle'\\]"),
        (dict(n_train=0), "--train >= 1"),
        (dict(n_test_defect=-1), "counts must be >= 0"),
        (dict(size=16), "--size 16 is out of range"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(LinesideError, match=message):
        generate_dataset(tmp_path / "d", progress=False, **kwargs)
    assert not (tmp_path / "d").exists()


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "d"
    args = ["synth", str(out), "--categories", "screw,capsule", "--train", "2", "--test-good", "1"]
    assert main([*args, "--test-defect", "2", "--size", "64", "--seed", "4"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("wrote 10 images (2 categories: screw, capsule) of 64x64 px, seed 4")
    assert main([*args, "--size", "64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and "--force" in err
    assert main([*args, "--size", "64", "--force", "--categories", "2"]) == 0
    assert open_dataset(out).categories == ["brushed_metal", "mesh"]
    assert main(["synth", str(tmp_path / "e"), "--categories", "nope"]) == 2


def test_parts_video_round_trip(tmp_path):
    frames = [render_sample("washer", 0, "test", "good", i, 64).image for i in range(3)]
    path = tmp_path / "parts.avi"
    assert write_parts_video(path, frames, fps=5, repeat=2) == 6
    cap = cv2.VideoCapture(str(path))
    read = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        read.append(frame)
    cap.release()
    assert len(read) == 6 and read[0].shape == (64, 64, 3)
    assert np.abs(read[2].astype(int) - frames[1]).mean() < 6  # MJPG is lossy but close
    with pytest.raises(LinesideError, match=r"\.avi"):
        write_parts_video(tmp_path / "x.mp4", frames)
    with pytest.raises(LinesideError, match="all video frames must be 64x64"):
        write_parts_video(tmp_path / "y.avi", [frames[0], np.zeros((32, 32, 3), np.uint8)])
    assert not (tmp_path / "y.avi").exists() and not list(tmp_path.glob(".*partial*"))


def test_docs_category_table_matches_the_generator():
    import re

    docs = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text(encoding="utf-8")
    docs = docs.split("### Categories", 1)[1].split("###", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|$", docs, flags=re.M)
    table = {name: tuple(t.strip() for t in types.split(",")) for name, types in rows}
    assert table == {name: cat.defect_types for name, cat in CATEGORIES.items()}


def test_cli_help_lists_every_category():
    from lineside.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["synth"]  # type: ignore[union-attr]
    help_text = " ".join(sub.format_help().split())
    for name in CATEGORIES:
        assert name in help_text


def test_lossless_parts_video_reads_back_bit_exact(tmp_path):
    frames = [render_sample("washer", 0, "test", "good", i, 64).image for i in range(2)]
    path = tmp_path / "parts.avi"
    assert write_parts_video(path, frames, fps=5, codec="FFV1") == 2
    cap = cv2.VideoCapture(str(path))
    read = [cap.read()[1] for _ in frames]
    cap.release()
    assert all(np.array_equal(got, want) for got, want in zip(read, frames, strict=True))
