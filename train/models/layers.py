"""Export-friendly building blocks shared by the models: linear attention, blur, map tail, top-k score."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class LinearAttention(nn.Module):
    """Multi-head linear attention (elu + 1 kernels, as in Dinomaly): O(N C^2) instead of O(N^2 C)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, N, C)
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
        q, k, v = F.elu(qkv[0]) + 1.0, F.elu(qkv[1]) + 1.0, qkv[2]
        kv = k.transpose(-2, -1) @ v  # (B, h, d, d)
        norm = q @ k.sum(dim=2, keepdim=True).transpose(-2, -1)  # (B, h, N, 1)
        out = (q @ kv) / (norm + 1e-6)  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class ConvMlp(nn.Module):
    """Token MLP with a depthwise 3x3 conv on the token grid, so decoding uses local context."""

    def __init__(self, dim: int, hidden: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, N, C)
        b, n, _ = x.shape
        h = self.fc1(x)  # (B, N, Hd)
        h = h.transpose(1, 2).reshape(b, -1, *self.grid)  # (B, Hd, gh, gw)
        h = self.dwconv(h).flatten(2).transpose(1, 2)  # (B, N, Hd)
        return self.fc2(F.gelu(h))


class DecoderBlock(nn.Module):
    """Pre-norm transformer block: linear attention + conv MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, grid: tuple[int, int]) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = LinearAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, N, C)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GaussianBlur(nn.Module):
    """Fixed separable Gaussian blur (kernel 2*round(4 sigma)+1, reflect padding) for (B, 1, H, W) maps."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        radius = int(4 * sigma + 0.5)
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        self.radius = radius
        self.register_buffer("kernel_x", kernel.view(1, 1, 1, -1), persistent=False)  # (1, 1, 1, K)
        self.register_buffer("kernel_y", kernel.view(1, 1, -1, 1), persistent=False)  # (1, 1, K, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, 1, H, W)
        r = self.radius
        x = F.pad(x, (r, r, r, r), mode="reflect")
        return F.conv2d(F.conv2d(x, self.kernel_x), self.kernel_y)


class UpsampleBlur(nn.Module):
    """The models' map tail: (B, 1, h, w) maps bilinearly upsampled to `size`, summed, Gaussian blurred."""

    def __init__(self, size: tuple[int, int], sigma: float, align_corners: bool) -> None:
        super().__init__()
        self.size, self.align_corners = tuple(size), align_corners
        self.blur = GaussianBlur(sigma)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:  # [(B, 1, h, w)] -> (B, 1, H, W)
        full = sum(F.interpolate(m, size=self.size, mode="bilinear", align_corners=self.align_corners) for m in maps)
        return self.blur(full)  # type: ignore[arg-type]

    def axis_matrix(self, length: int, axis: int) -> torch.Tensor:
        """(size[axis], length): upsampling then blurring one axis, probed with the same 1D ops on a basis."""
        basis = torch.eye(length, dtype=torch.float64)[:, None]  # (n, 1, n)
        up = F.interpolate(basis, size=self.size[axis], mode="linear", align_corners=self.align_corners)
        r = self.blur.radius
        kernel = self.blur.kernel_x.reshape(1, 1, -1).double()
        return F.conv1d(F.pad(up, (r, r), mode="reflect"), kernel)[:, 0].T.float()  # (N, n)

    def as_matrices(self, grids: Sequence[tuple[int, int]]) -> MatrixUpsampleBlur:
        """The same tail for maps of the given (h, w) grids, as two small MatMuls per map."""
        return MatrixUpsampleBlur(
            [self.axis_matrix(h, 0) for h, _ in grids], [self.axis_matrix(w, 1).T for _, w in grids]
        )


class MatrixUpsampleBlur(nn.Module):
    """`UpsampleBlur` as sum_l rows_l @ map_l @ cols_l: both steps are separable linear maps per axis.

    An inference form: in an exported graph two MatMuls on (H, h) and (w, W) constants replace a
    Resize, a reflect pad and two 33-tap convolutions at full resolution (about 2 ms on a CPU core).
    """

    def __init__(self, rows: list[torch.Tensor], cols: list[torch.Tensor]) -> None:
        super().__init__()
        for index, (row, col) in enumerate(zip(rows, cols, strict=True)):
            self.register_buffer(f"rows{index}", row, persistent=False)  # (H, h)
            self.register_buffer(f"cols{index}", col, persistent=False)  # (w, W)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:  # [(B, 1, h, w)] -> (B, 1, H, W)
        parts = [getattr(self, f"rows{i}") @ m @ getattr(self, f"cols{i}") for i, m in enumerate(maps)]
        return sum(parts[1:], parts[0])


def top_mean_score(anomaly_map: torch.Tensor, fraction: float) -> torch.Tensor:
    """(B, 1, H, W) -> (B,) mean of the top `fraction` pixels; k is a static int for export."""
    flat = anomaly_map.flatten(1)  # (B, H*W)
    k = max(1, math.ceil(fraction * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B, H, W) 1 - cosine similarity over channels.

    Computed channels-last: in ONNX the three channel sums then run over contiguous memory, which
    ONNX Runtime's CPU ReduceSum does several times faster than a strided channel axis (CRR edge:
    six sums took 2 of the INT8 graph's 18 ms).
    """
    return 1.0 - F.cosine_similarity(a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1), dim=-1, eps=1e-6)
