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


def window_mask(height: int, width: int, window: int, *, inside: bool) -> torch.Tensor:
    """Additive (H*W, H*W) mask over a row-major token grid for a `window` x `window` neighbourhood.

    Args:
        height: grid rows.
        width: grid columns.
        window: odd side of the square neighbourhood centred on each query (clipped at borders).
        inside: True keeps only the neighbourhood (local attention); False masks the
            neighbourhood out and keeps everything else (the RLR paper's masked key attention).
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    rows = torch.arange(height).repeat_interleave(width)  # (L,)
    cols = torch.arange(width).repeat(height)  # (L,)
    half = window // 2
    near = ((rows[:, None] - rows[None, :]).abs() <= half) & ((cols[:, None] - cols[None, :]).abs() <= half)  # (L, L)
    keep = near if inside else ~near
    if not bool(keep.any(dim=1).all()):
        raise ValueError(f"a {window}x{window} window leaves some query of a {height}x{width} grid nothing to attend")
    return torch.where(keep, 0.0, MASK_VALUE).to(torch.float32)


class MaskedAttention(nn.Module):
    """Multi-head attention with separate query/key/value inputs and an additive (L, L) mask."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, heads, L, D/heads)
        batch, length, dim = x.shape
        return x.reshape(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attend `query` (B, L, D) over `key`/`value` (B or 1, L, D) with `mask` (L, L); returns (B, L, D)."""
        q = self._split(self.q_proj(query))  # (B, h, L, d)
        k = self._split(self.k_proj(key)).expand(q.shape[0], -1, -1, -1)  # (B, h, L, d)
        v = self._split(self.v_proj(value)).expand(q.shape[0], -1, -1, -1)  # (B, h, L, d)
        # softmax(q k^T * scale + mask) v; fused on CPU/GPU in training, MatMul + Add + Softmax in ONNX
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)  # (B, h, L, d)
        batch, heads, length, head_dim = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, heads * head_dim))  # (B, L, D)
