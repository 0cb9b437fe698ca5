"""Multi-head attention restricted by a fixed additive mask, for local windows on a token grid.

A local window is a precomputed (L, L) additive mask (0 where a query may attend, `MASK_VALUE`
elsewhere) added to the attention logits, so eval and export see only MatMul + Add + Softmax:
no gather, unfold or data-dependent indexing, which keeps the graph friendly to ONNX and TensorRT.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Large finite negative instead of -inf: exp() of it underflows to exactly 0 in FP32, it stays
# representable in FP16 (max 65504), and a row can never turn into NaN.
MASK_VALUE = -1.0e4
# Cosine attention (`qk_norm`): logits are cos(q, k) times a learnt per-head temperature capped here
# (Swin Transformer V2's bound), so no logit can reach the mask and nothing overflows FP16 or an INT8 scale.
MAX_TEMPERATURE = 100.0
INITIAL_TEMPERATURE = 10.0


def unit_vectors(x: torch.Tensor) -> torch.Tensor:
    """x / |x| over the last dim, written out (Mul, ReduceSum, Sqrt, Div) like RLR's `_cosine`: plain ONNX ops."""
    return x / (x * x).sum(dim=-1, keepdim=True).clamp_min(1e-12).sqrt()


def window_mask(height: int, width: int, window: int, *, inside: bool, key_pool: int = 1) -> torch.Tensor:
    """Additive (H*W, H*W / key_pool^2) mask over a row-major token grid for a `window` x `window` neighbourhood.

    Args:
        height: grid rows.
        width: grid columns.
        window: odd side of the square neighbourhood centred on each query (clipped at borders).
        inside: True keeps only the neighbourhood (local attention); False masks the
            neighbourhood out and keeps everything else (the RLR paper's masked key attention).
        key_pool: keys are `key_pool` x `key_pool` average-pooled blocks of the grid (see `TokenPool`);
            a block is in the neighbourhood when any of its cells is.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    rows = torch.arange(height).repeat_interleave(width)  # (L,)
    cols = torch.arange(width).repeat(height)  # (L,)
    key_rows = torch.arange(0, height, key_pool).repeat_interleave(width // key_pool)  # (K,) first row of a block
    key_cols = torch.arange(0, width, key_pool).repeat(height // key_pool)  # (K,)

    def gap(query: torch.Tensor, first: torch.Tensor) -> torch.Tensor:  # (L, K) distance to the block's span
        return (first[None] - query[:, None]).clamp_min(0) + (query[:, None] - first[None] - key_pool + 1).clamp_min(0)

    half = window // 2
    near = (gap(rows, key_rows) <= half) & (gap(cols, key_cols) <= half)  # (L, K)
    keep = near if inside else ~near
    if not bool(keep.any(dim=1).all()):
        raise ValueError(f"a {window}x{window} window leaves some query of a {height}x{width} grid nothing to attend")
    return torch.where(keep, 0.0, MASK_VALUE).to(torch.float32)


class TokenPool(nn.Module):
    """Average-pools (B, H*W, D) row-major grid tokens by `factor` x `factor`: (B, H*W / factor^2, D)."""

    def __init__(self, grid: tuple[int, int], factor: int) -> None:
        super().__init__()
        if factor < 1 or grid[0] % factor or grid[1] % factor:
            raise ValueError(f"a {grid[0]}x{grid[1]} token grid cannot be pooled by {factor}")
        self.grid, self.factor = grid, factor

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return tokens
        batch, _, dim = tokens.shape
        grid = tokens.transpose(1, 2).reshape(batch, dim, *self.grid)  # (B, D, H, W)
        return F.avg_pool2d(grid, self.factor).flatten(2).transpose(1, 2)  # (B, L / factor^2, D)


class MaskedAttention(nn.Module):
    """Multi-head attention with separate query/key/value inputs and an additive (L, L) mask.

    Logits are q.k / sqrt(d) (the transformer's form) or, with `qk_norm`, cos(q, k) times a learnt
    per-head temperature <= `MAX_TEMPERATURE` (cosine attention, Swin Transformer V2): bounded whatever
    the weights learn.
    """

    def __init__(self, dim: int, heads: int, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.log_temperature = (
            nn.Parameter(torch.full((heads, 1, 1), math.log(INITIAL_TEMPERATURE))) if qk_norm else None
        )

    @property
    def qk_norm(self) -> bool:
        """Whether the logits are bounded cosines (see the class docstring)."""
        return self.log_temperature is not None

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, heads, L, D/heads)
        batch, length, dim = x.shape
        return x.reshape(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def query_factor(self, q: torch.Tensor) -> torch.Tensor:
        """Per-head queries (B, h, L, d) as they enter the logit: unchanged, or unit vectors (`qk_norm`)."""
        return unit_vectors(q) if self.qk_norm else q

    def key_factor(self, k: torch.Tensor) -> torch.Tensor:
        """Per-head keys (., h, K, d) as they enter the logit: k / sqrt(d), or temperature * unit(k) (`qk_norm`)."""
        if self.log_temperature is None:
            return k * self.scale
        return unit_vectors(k) * self.log_temperature.clamp(max=math.log(MAX_TEMPERATURE)).exp()

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attend `query` (B, L, D) over `key`/`value` (B or 1, K, D) with `mask` (L, K); returns (B, L, D)."""
        q = self.query_factor(self._split(self.q_proj(query)))  # (B, h, L, d)
        k = self.key_factor(self._split(self.k_proj(key))).expand(q.shape[0], -1, -1, -1)  # (B, h, K, d)
        v = self._split(self.v_proj(value)).expand(q.shape[0], -1, -1, -1)  # (B, h, K, d)
        # softmax(q k^T + mask) v; fused on CPU/GPU in training, MatMul + Add + Softmax in ONNX
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)  # (B, h, L, d)
        batch, heads, length, head_dim = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, heads * head_dim))  # (B, L, D)


def block_side(height: int, width: int) -> int:
    """Side of the query blocks that share one gathered key window: the largest of 4, 3, 2, 1 dividing the grid."""
    return next(side for side in (4, 3, 2, 1) if height % side == 0 and width % side == 0)


def block_windows(height: int, width: int, window: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys each `side` x `side` query block may need, and the additive mask of each query's own window.

    Returns indices (n_blocks, U) of the block's union window, U = (side + window - 1)^2, row-major
    (out-of-grid cells point at token 0), and a mask (n_blocks, side^2, U): 0 where a key lies inside
    that query's window and the grid, `MASK_VALUE` elsewhere.
    """
    half, span = window // 2, side + 2 * (window // 2)
    block_rows = torch.arange(0, height, side).repeat_interleave(width // side)  # (n,) top row of each block
    block_cols = torch.arange(0, width, side).repeat(height // side)  # (n,)
    key_rows = block_rows[:, None] - half + torch.arange(span).repeat_interleave(span)[None]  # (n, U)
    key_cols = block_cols[:, None] - half + torch.arange(span).repeat(span)[None]  # (n, U)
    inside_grid = (key_rows >= 0) & (key_rows < height) & (key_cols >= 0) & (key_cols < width)
    keys = torch.where(inside_grid, key_rows * width + key_cols, 0)  # (n, U)
    query_rows = block_rows[:, None] + torch.arange(side).repeat_interleave(side)[None]  # (n, side^2)
    queries = query_rows * width + block_cols[:, None] + torch.arange(side).repeat(side)[None]  # (n, side^2)
    dense = window_mask(height, width, window, inside=True)  # (L, L)
    mask = torch.where(inside_grid[:, None], dense[queries[..., None], keys[:, None]], MASK_VALUE)  # (n, side^2, U)
    return keys, mask


class ConstantWindowAttention(nn.Module):
    """`MaskedAttention(q, key, value, window_mask(inside=True))` for constant key/value, as an inference form.

    With constant keys and values the windows can be gathered once. Queries go in `side` x `side`
    blocks; each block attends over the union of its queries' windows with a per-query mask, so the
    logits shrink from (L, L) to (L, U) and the graph is two batched MatMuls (side^2 rows each) +
    Add + Softmax. Masked keys contribute exp(-1e4) = 0 in FP32 in both forms: same outputs to rounding.
    """

    def __init__(
        self, attention: MaskedAttention, key: torch.Tensor, value: torch.Tensor, grid: tuple[int, int], window: int
    ) -> None:
        super().__init__()
        self.heads, self.q_proj, self.out_proj = attention.heads, attention.q_proj, attention.out_proj
        self.grid, self.side, self.unit_queries = grid, block_side(*grid), attention.qk_norm
        with torch.no_grad():
            keys = attention.key_factor(attention._split(attention.k_proj(key)))[0]  # (h, L, d), its factor folded in
            values = attention._split(attention.v_proj(value))[0]  # (h, L, d)
        index, mask = block_windows(*grid, window, self.side)  # (n, U), (n, side^2, U)
        self.register_buffer("keys", keys[:, index].transpose(-1, -2).contiguous())  # (h, n, d, U)
        self.register_buffer("values", values[:, index].contiguous())  # (h, n, U, d)
        self.register_buffer("mask", mask)  # (n, side^2, U)

    def _to_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, L, d) row-major tokens -> (B, h, n, side^2, d) row-major blocks."""
        (height, width), side = self.grid, self.side
        x = x.reshape(*x.shape[:2], height // side, side, width // side, side, x.shape[-1])
        return x.permute(0, 1, 2, 4, 3, 5, 6).reshape(*x.shape[:2], -1, side**2, x.shape[-1])

    def _from_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, n, side^2, d) row-major blocks -> (B, h, L, d) row-major tokens."""
        (height, width), side = self.grid, self.side
        x = x.reshape(*x.shape[:2], height // side, width // side, side, side, x.shape[-1])
        return x.permute(0, 1, 2, 4, 3, 5, 6).reshape(*x.shape[:2], height * width, x.shape[-1])

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        """`query` (B, L, D) -> (B, L, D)."""
        q = self.q_proj(query)
        batch, length, dim = q.shape
        q = q.reshape(batch, length, self.heads, dim // self.heads).transpose(1, 2)  # (B, h, L, d)
        q = self._to_blocks(unit_vectors(q) if self.unit_queries else q)  # (B, h, n, s, d)
        weights = torch.softmax(q @ self.keys + self.mask, dim=-1)  # (B, h, n, s, U)
        out = self._from_blocks(weights @ self.values)  # (B, h, L, d)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))  # (B, L, D)
