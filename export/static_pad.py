"""Freeze timm's dynamic TF-'same' padding to constants for the static export size.

timm's `tf_` models compute 'same' padding from the input shape at run time (`Conv2dSame`,
`pad_same`). Traced for ONNX, that becomes hundreds of Shape/Gather/Concat ops and hides spatial
sizes from the exporter's shape inference, which then cannot export ops such as
`adaptive_avg_pool2d`. With the size fixed at export, each such conv's padding is a constant:
replace the module by a `ZeroPad2d` + plain `Conv2d` sharing the same weights.
"""

from __future__ import annotations

import torch
from torch import nn


class StaticSameConv2d(nn.Conv2d):
    """A Conv2d with a fixed (left, right, top, bottom) zero padding computed for one input size."""

    def __init__(self, conv: nn.Conv2d, pads: tuple[int, int, int, int]) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride,  # type: ignore[arg-type]
            padding=0,
            dilation=conv.dilation,  # type: ignore[arg-type]
            groups=conv.groups,
            bias=conv.bias is not None,
        )
        self.weight = conv.weight
        self.bias = conv.bias
        self.pads = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', H', W')
        return super().forward(zero_pad(x, self.pads))


def zero_pad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Zero padding (left, right, top, bottom) as Slice*0 + Concat.

    `F.pad` exports through ConstantOfShape/Reshape/Slice ops that the TorchScript exporter's shape
    inference cannot see through; concatenating zeroed slices keeps every shape static.
    """
    left, right, top, bottom = pads
    parts = [x[..., :left] * 0] if left else []  # (B, C, H, left)
    parts += [x] + ([x[..., :right] * 0] if right else [])
    x = torch.cat(parts, dim=-1) if len(parts) > 1 else x  # (B, C, H, W + left + right)
    parts = [x[..., :top, :] * 0] if top else []
    parts += [x] + ([x[..., :bottom, :] * 0] if bottom else [])
    return torch.cat(parts, dim=-2) if len(parts) > 1 else x  # (B, C, H + top + bottom, W')


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    total = max((-(size // -stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _dynamic_same_convs(module: nn.Module) -> dict[str, nn.Conv2d]:
    try:
        from timm.layers import Conv2dSame
    except ImportError:
        return {}
    return {name: m for name, m in module.named_modules() if isinstance(m, Conv2dSame)}


def freeze_same_padding(module: nn.Module, example: torch.Tensor) -> int:
    """Replace every dynamic-'same' conv in `module` by a static one for `example`'s size; returns the count."""
    convs = _dynamic_same_convs(module)
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        conv.register_forward_pre_hook(lambda _m, args, n=name: sizes.__setitem__(n, tuple(args[0].shape[-2:])))
        for name, conv in convs.items()
    ]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for hook in hooks:
            hook.remove()
    for name, conv in convs.items():
        (height, width), (kh, kw) = sizes[name], conv.kernel_size
        top, bottom = _same_pads(height, kh, conv.stride[0], conv.dilation[0])
        left, right = _same_pads(width, kw, conv.stride[1], conv.dilation[1])
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, StaticSameConv2d(conv, (left, right, top, bottom)))
    return len(convs)
