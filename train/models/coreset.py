"""Greedy coreset subsampling (k-center greedy, PatchCore's memory-bank reduction), exact and fast on a CPU.

PatchCore (Roth et al. 2022) picks bank entries one at a time: the next pick is the point farthest
from everything picked so far, distances measured after a fixed Gaussian random projection to
`dims` dimensions (Johnson-Lindenstrauss). Done literally, each pick reads all N points once, which
is memory-bound (N = 770k patches, 16k picks: minutes). Here each round picks a *batch* that is
still exactly the sequential greedy's sequence:

- take the `pool` points with the largest current min-distance; every point outside the pool has a
  min-distance <= `bound`, the largest one outside it;
- run the sequential greedy inside the pool (pool x pool distances, small); its next pick is the
  global one while its value is >= `bound`, because updates only lower min-distances;
- then update the min-distances of all N points against the round's picks with one chunked MatMul.

Ties aside, the result equals the one-at-a-time greedy; the MatMuls are compute-bound and fast.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

CHUNK_ROWS = 65536  # rows per distance-update MatMul: bounds the temporary (CHUNK_ROWS, picks) matrix


def random_projection(dims_in: int, dims_out: int, seed: int) -> torch.Tensor:
    """(dims_in, dims_out) Gaussian projection scaled by 1/sqrt(dims_out): preserves distances in expectation."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(dims_in, dims_out, generator=generator) / dims_out**0.5


def _squared_distances(points: torch.Tensor, norms: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """(n, d), (n,), (k, d) -> (n, k) squared Euclidean distances, clamped at 0."""
    return (norms[:, None] - 2 * points @ picks.T + (picks * picks).sum(1)[None]).clamp_min_(0)


def _update(points: torch.Tensor, norms: torch.Tensor, min_dist: torch.Tensor, picks: torch.Tensor) -> None:
    """min_dist <- min(min_dist, distance to the nearest of `picks`), in row chunks.

    min_j ||p - s_j||^2 = ||p||^2 + min_j (||s_j||^2 - 2 p.s_j): one fused MatMul-add and a row min per chunk.
    """
    picks_sq = (picks * picks).sum(1)[None]  # (1, k)
    for start in range(0, len(points), CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        nearest = torch.addmm(picks_sq, points[rows], picks.T, alpha=-2).amin(1).add_(norms[rows]).clamp_min_(0)
        torch.minimum(min_dist[rows], nearest, out=min_dist[rows])


def _pool_greedy(values: torch.Tensor, pool_points: torch.Tensor, bound: float, limit: int) -> list[int]:
    """Sequential greedy inside the pool: positions picked while the best value is >= `bound` (at least one)."""
    norms = (pool_points * pool_points).sum(1)
    values = values.clone()
    picked: list[int] = []
    while len(picked) < limit:
        best = int(values.argmax())
        if picked and float(values[best]) < max(bound, 0.0):
            break
        picked.append(best)
        nearest = _squared_distances(pool_points, norms, pool_points[best : best + 1])[:, 0]
        torch.minimum(values, nearest, out=values)
        values[best] = -1.0
    return picked


def greedy_coreset(
    features: torch.Tensor, size: int, *, dims: int = 128, seed: int = 0, pool: int = 2048, progress: bool = False
) -> torch.Tensor:
    """Indices (size,) of a k-center greedy coreset of `features` (N, D), in pick order.

    `dims` is the random projection's width (0: no projection); the first pick is random (seeded).
    """
    n = len(features)
    if size >= n:
        return torch.arange(n)
    points = features.float()
    if 0 < dims < points.shape[1]:
        points = points @ random_projection(points.shape[1], dims, seed)
    points = points.contiguous()
    norms = (points * points).sum(1)
    first = int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(seed)))
    min_dist = torch.full((n,), float("inf"))
    chosen = [torch.tensor([first])]
    _update(points, norms, min_dist, points[first : first + 1])
    min_dist[first] = -1.0
    count = 1
    with tqdm(total=size, initial=1, desc="coreset", unit="pick", disable=not progress) as bar:
        while count < size:
            k = min(pool + 1, n)
            top = min_dist.topk(k)
            bound = float(top.values[-1]) if k < n else -0.5
            candidates = top.indices[: k - 1] if k < n else top.indices
            local = _pool_greedy(top.values[: len(candidates)], points[candidates], bound, size - count)
            picks = candidates[local]
            _update(points, norms, min_dist, points[picks])
            min_dist[picks] = -1.0
            chosen.append(picks)
            count += len(picks)
            bar.update(len(picks))
    return torch.cat(chosen)
