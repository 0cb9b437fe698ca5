"""The validation split (held-out good training images) and the validation set export gates on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lineside.data import Sample
from lineside.data.split import held_out_count, names_by_category, split_validation
from lineside.errors import LinesideError


def _samples(category: str, count: int) -> list[Sample]:
    return [Sample(Path(f"/d/{category}/train/good/{i:03d}.png"), category, "train", "good") for i in range(count)]


@pytest.mark.parametrize(
    ("available", "fraction", "expected"),
    [(8, 0.1, 2), (60, 0.1, 6), (752, 0.1, 40), (334, 0.1, 33), (3, 0.1, 0), (60, 0.0, 0), (60, 0.5, 30)],
)
def test_held_out_count_is_a_fraction_clamped_to_2_40_and_leaves_training_images(available, fraction, expected):
    assert held_out_count(available, fraction) == expected


@pytest.mark.parametrize("fraction", [-0.1, 1.0, float("nan")])
def test_bad_fraction_is_a_user_error(fraction: float) -> None:
    with pytest.raises(LinesideError, match="--val-fraction"):
        held_out_count(10, fraction)


def test_split_is_disjoint_per_category_and_independent_of_order() -> None:
    samples = _samples("tile", 50) + _samples("pcb", 20)
    kept, held = split_validation(samples, 0.1)
    assert len(held) == 5 + 2 and len(kept) == 70 - 7
    assert not {s.image_path for s in kept} & {s.image_path for s in held}
    shuffled = list(reversed(samples))
    assert names_by_category(split_validation(shuffled, 0.1)[1]) == names_by_category(held)


def test_adding_images_keeps_most_earlier_choices() -> None:
    before = set(names_by_category(split_validation(_samples("tile", 100), 0.1)[1])["tile"])
    after = set(names_by_category(split_validation(_samples("tile", 110), 0.1)[1])["tile"])
    assert len(before & after) >= 8  # a hash rank, not a position: 11 picks of 110 share most of 10 of 100


def test_validation_set_has_good_images_and_masked_synthetic_defects(synth_data) -> None:
    pytest.importorskip("torch")
    from lineside.export.validation import load_validation_set

    found = sorted(p.name for p in (synth_data / "washer" / "train" / "good").iterdir())
    held = {"washer": found[:2]}
    eval_set, source = load_validation_set(synth_data, ["washer"], held, (64, 64))
    assert source.images == 2 and not source.seen_in_training
    assert int((eval_set.labels == 0).sum()) == 2 and int(eval_set.labels.sum()) == source.defects >= 4
    defect_masks = eval_set.masks[eval_set.labels == 1]
    assert all(mask.any() for mask in defect_masks) and not eval_set.masks[eval_set.labels == 0].any()
    changed = [np.abs(img.astype(int) - eval_set.images[0].astype(int)).sum() for img in eval_set.images[1:4]]
    assert min(changed) > 0  # each defect differs from its good image
    again, _ = load_validation_set(synth_data, ["washer"], held, (64, 64))
    assert all(np.array_equal(a, b) for a, b in zip(again.images, eval_set.images, strict=True))  # deterministic


def test_validation_set_refuses_a_data_set_without_the_held_out_images(synth_data) -> None:
    pytest.importorskip("torch")
    from lineside.export.validation import load_validation_set

    with pytest.raises(LinesideError, match="validation image"):
        load_validation_set(synth_data, ["washer"], {"washer": ["not-there.png"]}, (64, 64))


def test_old_checkpoint_falls_back_to_hash_chosen_images_marked_seen(synth_data) -> None:
    pytest.importorskip("torch")
    from lineside.export.validation import load_validation_set

    _, source = load_validation_set(synth_data, ["washer", "mesh"], None, (64, 64))
    assert source.seen_in_training and source.images == 4


def test_calibration_never_reads_test_images(tmp_path, synth_data) -> None:
    from lineside.calibration.calib_set import find_good_images

    only_test = tmp_path / "only_test" / "washer"
    (only_test / "test").mkdir(parents=True)
    (only_test / "test" / "good").symlink_to(synth_data / "washer" / "test" / "good")
    (only_test / "train").mkdir()
    with pytest.raises(LinesideError):
        find_good_images(tmp_path / "only_test")
    groups = find_good_images(synth_data)
    assert all("train" in path.parts for paths in groups.values() for path in paths)
