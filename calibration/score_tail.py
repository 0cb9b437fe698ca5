"""Upper-tail estimates of a good-part score distribution: where to put a reject threshold.

Two estimators, both returning a threshold `t` such that a good part is rejected (score > t)
with probability at most the target false-reject rate `rate`, with the stated confidence:

* **Empirical order statistic** (distribution-free). For n i.i.d. good scores, the true
  false-reject rate of the r-th smallest score, 1 - F(X_(r)), follows Beta(n - r + 1, r). We take
  the smallest r with P(Bin(n, 1 - rate) >= r) <= 1 - confidence. Needs n >= ln(1-conf)/ln(1-rate)
  good images (2995 for rate 0.001 at 95 %).
* **Fitted tail** (peaks over threshold, Siffer et al. KDD 2017 "SPOT"; extreme value theory):
  the scores above a high quantile u follow a generalised Pareto distribution; its quantile
  extrapolates below 1/n. A bootstrap over the good scores gives the conservative bound. This is
  an estimate, not a guarantee (see docs/calibrate.md for its measured coverage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lineside.errors import LinesideError, missing_extra

TAIL_FRACTION = 0.1  # share of the highest good scores the Pareto tail is fitted to
MIN_TAIL_POINTS = 30  # fewest exceedances a Pareto fit is trusted with
MAX_EXTRAPOLATION = 10.0  # the tail may reach at most 10x beyond the empirical resolution 1/n
BOOTSTRAP_ROUNDS = 1000


@dataclass(frozen=True)
class TailEstimate:
    """A threshold and what it promises.

    Attributes:
        threshold: reject when score > threshold.
        method: "empirical" or "pareto-tail".
        bound: upper confidence bound of the false-reject rate at `threshold` (<= target).
        estimate: point estimate of the false-reject rate at `threshold`.
    """

    threshold: float
    method: str
    bound: float
    estimate: float


def _stats():  # noqa: ANN202 - scipy.stats module
    try:
        from scipy import stats
    except ImportError as exc:
        raise missing_extra("scipy", "calibrate") from exc
    return stats


def min_samples_empirical(rate: float, confidence: float) -> int:
    """Fewest good scores for which the empirical bound can certify `rate` at `confidence`."""
    return math.ceil(math.log(1.0 - confidence) / math.log1p(-rate))


def min_samples_tail(rate: float) -> int:
    """Fewest good scores for a Pareto tail fit that extrapolates to `rate`."""
    return max(math.ceil(MIN_TAIL_POINTS / TAIL_FRACTION), math.ceil(1.0 / (MAX_EXTRAPOLATION * rate)))


def empirical_threshold(scores: np.ndarray, rate: float, confidence: float) -> TailEstimate:
    """Distribution-free threshold: an order statistic whose false-reject rate is <= `rate` w.p. `confidence`."""
    stats = _stats()
    ordered = np.sort(np.asarray(scores, dtype=np.float64))  # (n,)
    n = ordered.size
    if n < min_samples_empirical(rate, confidence):
        raise LinesideError(
            f"{n} good scores cannot certify a false-reject rate of {rate:g}: "
            f"the empirical bound needs {min_samples_empirical(rate, confidence)}"
        )
    ranks = np.arange(1, n + 1)  # candidate r (1-based rank of the threshold)
    risk = stats.binom.sf(ranks - 1, n, 1.0 - rate)  # P(Bin(n, 1-rate) >= r)
    rank = int(ranks[np.argmax(risk <= 1.0 - confidence)])
    bound = float(stats.beta.ppf(confidence, n - rank + 1, rank))
    return TailEstimate(
        threshold=float(ordered[rank - 1]),
        method="empirical",
        bound=bound,
        estimate=(n - rank + 0.5) / (n + 1),
    )


def _pareto_quantiles(samples: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Peaks-over-threshold `rate` quantile of each row of `samples` (B, n), all rows at once.

    The generalised Pareto distribution is fitted to the excesses over u (the top TAIL_FRACTION
    of each row) by probability-weighted moments (Hosking & Wallis 1987, closed form). A bounded
    tail (negative shape) is replaced by the exponential tail (shape 0, scale = mean excess): a few
    hundred points must never promise a hard maximum. Returns (quantile, u, shape, scale), each (B,).
    """
    ordered = np.sort(samples, axis=1)  # (B, n)
    n = ordered.shape[1]
    n_tail = max(MIN_TAIL_POINTS, int(round(TAIL_FRACTION * n)))
    u = ordered[:, n - n_tail - 1]  # (B,)
    excess = ordered[:, n - n_tail :] - u[:, None]  # (B, n_tail) ascending, >= 0
    plotting = (np.arange(1, n_tail + 1) - 0.35) / n_tail  # (n_tail,) plotting positions
    a0 = excess.mean(axis=1)  # (B,)
    a1 = (excess * (1.0 - plotting)).mean(axis=1)  # (B,)
    denom = np.maximum(a0 - 2.0 * a1, 1e-300)
    shape = 2.0 - a0 / denom  # (B,)
    scale = 2.0 * a0 * a1 / denom  # (B,)
    bounded = shape < 0.0
    shape, scale = np.where(bounded, 0.0, shape), np.where(bounded, a0, scale)
    ratio = rate / (n_tail / n)
    flat = np.abs(shape) < 1e-6
    safe = np.where(flat, 1.0, shape)
    quantile = np.where(flat, u - scale * np.log(ratio), u + scale / safe * (ratio ** (-safe) - 1.0))
    return quantile, u, shape, scale


def _pareto_exceedance(model: tuple[float, float, float, float], threshold: float) -> float:
    """P(score > threshold) under a fitted tail model (u, shape, scale, share)."""
    u, shape, scale, share = model
    if threshold <= u:
        return share
    if scale <= 0.0:
        return 0.0
    z = (threshold - u) / scale
    if abs(shape) < 1e-6:
        return share * math.exp(-z)
    base = 1.0 + shape * z
    return 0.0 if base <= 0.0 else share * base ** (-1.0 / shape)


def pareto_threshold(scores: np.ndarray, rate: float, confidence: float, seed: int = 0) -> TailEstimate:
    """Fitted-tail threshold: bootstrap `confidence` quantile of the Pareto tail's `rate` quantile."""
    values = np.asarray(scores, dtype=np.float64)
    n = values.size
    if n < min_samples_tail(rate):
        raise LinesideError(
            f"{n} good scores are too few for a fitted tail at a false-reject rate of {rate:g}: "
            f"it needs {min_samples_tail(rate)}"
        )
    point, u, shape, scale = (float(v[0]) for v in _pareto_quantiles(values[None, :], rate))
    rng = np.random.default_rng(seed)
    boot = _pareto_quantiles(values[rng.integers(0, n, (BOOTSTRAP_ROUNDS, n))], rate)[0]  # (B,)
    threshold = max(point, float(np.quantile(boot, confidence)))
    share = max(MIN_TAIL_POINTS, int(round(TAIL_FRACTION * n))) / n
    estimate = _pareto_exceedance((u, shape, scale, share), threshold)
    return TailEstimate(threshold=threshold, method="pareto-tail", bound=rate, estimate=estimate)


def tail_threshold(scores: np.ndarray, rate: float, confidence: float, method: str = "auto") -> TailEstimate:
    """Threshold for a target false-reject rate by `method` ("empirical", "tail" or "auto").

    "auto" uses the distribution-free bound when there are enough scores, else the fitted tail.
    Raises LinesideError naming how many good images each method needs when there are too few.
    """
    if not 0.0 < rate < 0.5:
        raise LinesideError(f"--false-reject must be between 0 and 0.5, got {rate:g}")
    if not 0.5 <= confidence < 1.0:
        raise LinesideError(f"--confidence must be in [0.5, 1), got {confidence:g}")
    n = int(np.asarray(scores).size)
    need_empirical = min_samples_empirical(rate, confidence)
    need_tail = min_samples_tail(rate)
    if method == "empirical" or (method == "auto" and n >= need_empirical):
        return empirical_threshold(scores, rate, confidence)
    if method == "tail" or (method == "auto" and n >= need_tail):
        return pareto_threshold(scores, rate, confidence)
    raise LinesideError(
        f"{n} good images are too few for a false-reject rate of {rate:g}: the distribution-free bound needs "
        f"{need_empirical}, a fitted Pareto tail needs {need_tail}; add good images or raise --false-reject"
    )
