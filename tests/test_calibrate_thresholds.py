"""Threshold statistics: false-reject targets hold on held-out scores, F1 optimum, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lineside.calibration.score_tail import (
    empirical_threshold,
    min_samples_empirical,
    min_samples_tail,
    pareto_threshold,
    tail_threshold,
)
from lineside.calibration.thresholds import calibrate_class, f1_optimal_threshold, format_table
from lineside.errors import LinesideError

HELD_OUT = 400_000


def _binomial_ceiling(n: int, rate: float, alpha: float = 1e-4) -> int:
    """Most false rejects a rate-`rate` threshold can show on n parts before the test calls it wrong."""
    return int(stats.binom.isf(alpha, n, rate))


def test_min_samples_match_the_binomial_bound():
    assert min_samples_empirical(0.001, 0.95) == 2995
    assert min_samples_empirical(0.01, 0.95) == 299
    n = min_samples_empirical(0.001, 0.95)
    assert (1 - 0.001) ** n <= 0.05 < (1 - 0.001) ** (n - 1)
    assert min_samples_tail(0.001) == 300
    assert min_samples_tail(1e-5) == 10_000


@pytest.mark.parametrize("dist", ["lognormal", "gamma"])
def test_empirical_threshold_meets_rate_on_held_out(dist):
    rng = np.random.default_rng(7)
    draw = {
        "lognormal": lambda n: rng.lognormal(-2.0, 0.4, n),
        "gamma": lambda n: rng.gamma(3.0, 0.01, n),
    }[dist]
    rate = 0.001
    est = empirical_threshold(draw(4000), rate, 0.95)
    held = draw(HELD_OUT)
    rejected = int(np.sum(held > est.threshold))
    assert rejected <= _binomial_ceiling(HELD_OUT, rate)
    assert est.bound <= rate
    # conservative, not absurd: at least a tenth of the target still gets rejected
    assert rejected / HELD_OUT > rate / 10


def test_pareto_tail_extrapolates_beyond_the_sample():
    rng = np.random.default_rng(3)
    rate = 0.001
    good = rng.lognormal(-2.0, 0.4, 600)  # 600 < 2995: the empirical bound cannot certify 0.001
    with pytest.raises(LinesideError, match="needs 2995"):
        empirical_threshold(good, rate, 0.95)
    est = pareto_threshold(good, rate, 0.95)
    assert est.method == "pareto-tail"
    assert est.threshold > np.max(good) * 0.9
    held = rng.lognormal(-2.0, 0.4, HELD_OUT)
    true_rate = float(np.mean(held > est.threshold))
    assert true_rate <= 3 * rate  # the tail model is an estimate, not a guarantee: within 3x
    assert tail_threshold(good, rate, 0.95, "auto").method == "pareto-tail"
    assert tail_threshold(rng.lognormal(size=3000), rate, 0.95, "auto").method == "empirical"


def test_too_few_good_images_are_refused_with_the_needed_count():
    with pytest.raises(LinesideError, match=r"120 good images are too few.*needs 2995.*needs 300"):
        tail_threshold(np.linspace(0, 1, 120), 0.001, 0.95)
    with pytest.raises(LinesideError, match="class bolt: .*needs 2995"):
        calibrate_class("bolt", np.linspace(0, 1, 50), false_reject=0.001)
    with pytest.raises(LinesideError, match="between 0 and 0.5"):
        tail_threshold(np.linspace(0, 1, 5000), 0.0, 0.95)


def test_f1_optimal_threshold_matches_brute_force():
    rng = np.random.default_rng(11)
    good = np.round(rng.normal(0.0, 1.0, 300), 1)  # ties on purpose
    defect = np.round(rng.normal(2.0, 1.0, 60), 1)
    threshold, f1 = f1_optimal_threshold(good, defect)
    best = 0.0
    for t in np.unique(np.concatenate([good, defect])) - 1e-9:
        tp, fp = np.sum(defect > t), np.sum(good > t)
        best = max(best, 2 * tp / (2 * tp + fp + (defect.size - tp)))
    assert f1 == pytest.approx(best)
    tp, fp = np.sum(defect > threshold), np.sum(good > threshold)
    assert 2 * tp / (2 * tp + fp + defect.size - tp) == pytest.approx(best)


def test_calibrate_class_reports_rates():
    rng = np.random.default_rng(5)
    good, defect = rng.normal(0.0, 1.0, 400), rng.normal(4.0, 1.0, 50)
    fr = calibrate_class("washer", good, defect, false_reject=0.01, objective="false-reject")
    assert fr.method == "empirical" and fr.n_good == 400 and fr.n_defect == 50
    assert fr.miss_rate == pytest.approx(np.mean(defect <= fr.threshold))
    assert fr.false_reject_observed == pytest.approx(np.mean(good > fr.threshold))
    f1 = calibrate_class("washer", good, defect, objective="f1")
    assert f1.method == "f1" and f1.false_reject_bound is None and f1.f1 is not None
    assert f1.f1 >= fr.f1 - 1e-12
    table = format_table([fr, f1], 0.01, 0.95)
    assert "washer" in table and "empirical" in table and "f1" in table
    with pytest.raises(LinesideError, match="needs defect images"):
        calibrate_class("washer", good, objective="f1")
    with pytest.raises(LinesideError, match="non-finite"):
        calibrate_class("washer", np.array([np.nan] * 5000))
