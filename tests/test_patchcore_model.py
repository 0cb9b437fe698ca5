"""PatchCore: the exact batched greedy coreset, the memory bank, the distance map and the checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lineside.errors import LinesideError  # noqa: E402
from lineside.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from lineside.train.features import TrainData, prepare  # noqa: E402
from lineside.train.models import MODELS, build_model  # noqa: E402
from lineside.train.models.coreset import greedy_coreset, random_projection  # noqa: E402


def greedy_gaps(features: torch.Tensor, picks: list[int], dims: int, seed: int) -> list[float]:
    """Per pick after the first: how far (relative) it falls short of the farthest point from the earlier picks.

    The textbook k-center greedy takes the farthest point every time: all gaps are 0 (up to float32 near-ties).
    """
    points = (features @ random_projection(features.shape[1], dims, seed)).double()
    min_dist = torch.full((len(points),), float("inf"), dtype=torch.float64)
    gaps = []
    for index, pick in enumerate(picks):
        if index:
            gaps.append(float(1 - min_dist[pick] / min_dist.max()))
        min_dist = torch.minimum(min_dist, ((points - points[pick]) ** 2).sum(1))
    return gaps


@pytest.mark.parametrize("pool", [8, 64, 4096])
def test_batched_coreset_is_the_sequential_greedy(pool: int) -> None:
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(3000, 48, generator=generator) * torch.rand(3000, 1, generator=generator)  # uneven density
    picks = greedy_coreset(features, 200, dims=16, seed=5, pool=pool).tolist()
    assert len(set(picks)) == 200
    assert max(greedy_gaps(features, picks, 16, 5)) < 1e-5
    assert picks[:20] == greedy_coreset(features, 20, dims=16, seed=5, pool=2).tolist()


def test_coreset_edge_cases() -> None:
    features = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    assert greedy_coreset(features, 80).tolist() == list(range(50))  # asking for more keeps everything
    picks = greedy_coreset(features, 49, dims=0, pool=4)
    assert len(set(picks.tolist())) == 49  # never picks a point twice, even when nearly all are taken
    assert greedy_coreset(features, 10, seed=3).tolist() == greedy_coreset(features, 10, seed=3).tolist()
    # the first pick covers the farthest point next: a greedy prefix is itself the smaller coreset
    assert greedy_coreset(features, 5, seed=3).tolist() == greedy_coreset(features, 10, seed=3)[:5].tolist()


@pytest.fixture(scope="module")
def fitted():
    """A tiny PatchCore (real EfficientNet-Lite0 weights) whose bank is built from 6 random 'good' images."""
    torch.set_num_threads(2)
    model = build_model("patchcore", "tiny", ["a", "b"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 128, 128, 3), dtype=np.uint8)
    data = TrainData(images, np.array([0, 0, 0, 1, 1, 1]), ["a", "b"])
    prepared = prepare(model, data, seed=0, device=torch.device("cpu"), progress=False)
    record = model.fit_memory(prepared, seed=0, progress=False)
    return model.eval(), images, record


def test_bank_size_follows_the_preset_and_is_registered(fitted) -> None:
    model, _, record = fitted
    assert MODELS["patchcore"] is type(model) and model.training_stages() == []
    patches = 6 * 16 * 16  # 128 px at stride 8
    assert record["patches"] == patches and record["bank"] == round(0.1 * patches) == model.bank.shape[0]
    assert model.bank.shape[1] == 40 + 112  # EfficientNet-Lite0 strides 8 and 16, concatenated
    assert model.bank_size(10**6) == 1024  # the tiny preset's cap
    assert model.bank_t.shape == (152, record["bank"]) and torch.allclose(model.bank_t, -2 * model.bank.T)


def test_distance_is_zero_on_bank_entries_and_matches_brute_force(fitted) -> None:
    model, _, _ = fitted
    generator = torch.Generator().manual_seed(0)
    queries = torch.cat([model.bank[:5], torch.randn(7, model.bank.shape[1], generator=generator)])[None]
    nearest = model.nearest(queries)[0]
    brute = torch.cdist(queries[0].double(), model.bank.double()).min(1).values
    # ||x||^2 - 2 x.b + ||b||^2 in float32: the squared distance is exact up to rounding of ||x||^2
    scale = (queries[0].double() ** 2).sum(1)
    assert ((nearest.double() ** 2 - brute**2).abs() / scale).max() < 1e-5
    assert float(nearest[:5].max()) < 0.02 * float(nearest[5:].min())


def test_anomaly_map_and_score_and_the_inference_form(fitted) -> None:
    model, images, _ = fitted
    from lineside.train.preprocess import Preprocess

    batch = Preprocess(model.mean, model.std)(torch.from_numpy(images[:2]))
    with torch.no_grad():
        out = model(batch)
        form = model.inference_form()(batch)
    assert out.anomaly_map.shape == (2, 1, 128, 128) and out.score.shape == (2,)
    torch.testing.assert_close(out.score, out.anomaly_map.flatten(1).amax(1))
    assert form is not None and model.bank_chunk > 0 == model.inference_form().bank_chunk
    torch.testing.assert_close(form.anomaly_map, out.anomaly_map, atol=1e-4, rtol=1e-4)
    noise = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        assert float(model(noise).score[0]) > float(out.score.max())  # far from every good patch


def test_checkpoint_round_trip_restores_the_bank(fitted, tmp_path: Path) -> None:
    model, images, _ = fitted
    save_checkpoint(tmp_path / "model.pt", model)
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert loaded.model_name == "patchcore" and loaded.classes == ["a", "b"]
    torch.testing.assert_close(loaded.model.bank, model.bank)
    torch.testing.assert_close(loaded.model.bank_sq, model.bank_sq)
    x = torch.zeros(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x).anomaly_map, model(x).anomaly_map)


def test_an_empty_bank_is_a_clear_error() -> None:
    model = build_model("patchcore", "tiny", ["a"]).eval()
    with pytest.raises(LinesideError, match="empty memory bank"), torch.no_grad():
        model(torch.zeros(1, 3, 128, 128))


def test_projection_option_reduces_the_patch_width() -> None:
    model = build_model("patchcore", "tiny", ["a"], projection_dim=32)
    with torch.no_grad():
        (features,) = model.encode(torch.zeros(1, 3, 128, 128))
    assert features.shape == (1, 32, 16, 16) and model.bank.shape == (0, 32)
