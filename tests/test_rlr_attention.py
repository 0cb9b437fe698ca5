"""The masked local attention of RLR against an independent unfold-based local-attention reference."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lineside.train.models.local_attention import (
    MASK_VALUE,
    MAX_TEMPERATURE,
    ConstantWindowAttention,
    MaskedAttention,
    TokenPool,
    block_side,
    block_windows,
    window_mask,
)

torch.set_num_threads(1)


def test_window_mask_counts_neighbours_clipped_at_borders() -> None:
    mask = window_mask(6, 9, 5, inside=True)  # (54, 54)
    allowed = (mask == 0).sum(dim=1).reshape(6, 9)
    assert allowed[0, 0] == 9  # corner: 3x3 of the 5x5 window is inside the grid
    assert allowed[3, 4] == 25  # interior
    assert allowed[0, 4] == 15  # top edge: 3 rows x 5 cols
    outside = window_mask(6, 9, 5, inside=False)
    assert torch.equal((outside == 0), (mask != 0))
    assert set(mask.unique().tolist()) == {0.0, MASK_VALUE}


def test_window_mask_refuses_a_window_that_leaves_nothing() -> None:
    with pytest.raises(ValueError, match="nothing to attend"):
        window_mask(4, 4, 5, inside=False)
    with pytest.raises(ValueError, match="odd"):
        window_mask(8, 8, 4, inside=True)


def _unfold_reference(
    attn: MaskedAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    grid: tuple[int, int],
    window: int,
    inside: bool,
) -> torch.Tensor:
    """Local attention computed window by window with F.unfold, in float64, no (L, L) mask anywhere."""
    attn = copy.deepcopy(attn).double()
    height, width = grid
    heads = attn.heads
    batch, length, dim = query.shape
    head_dim = dim // heads

    def heads_of(x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, h, L, d)
        return x.double().expand(batch, -1, -1).reshape(batch, length, heads, head_dim).transpose(1, 2)

    def split(x: torch.Tensor) -> torch.Tensor:  # (B, h, L, d) -> (B*h, L, d)
        return x.reshape(batch * heads, length, head_dim)

    if attn.qk_norm:  # cosine logits times each head's temperature
        temperature = attn.log_temperature.exp()  # (h, 1, 1)
        q = split(F.normalize(heads_of(attn.q_proj(query.double())), dim=-1))
        k = split(F.normalize(heads_of(attn.k_proj(key.double())), dim=-1) * temperature)
    else:
        q = split(heads_of(attn.q_proj(query.double())) * head_dim**-0.5)
        k = split(heads_of(attn.k_proj(key.double())))
    v = split(heads_of(attn.v_proj(value.double())))
    pad = window // 2

    def neighbours(x: torch.Tensor) -> torch.Tensor:  # (B*h, L, d) -> (B*h, L, K, d)
        image = x.transpose(1, 2).reshape(-1, head_dim, height, width)
        cols = F.unfold(image, window, padding=pad)  # (B*h, d*K, L)
        return cols.reshape(-1, head_dim, window * window, length).permute(0, 3, 2, 1)

    valid = F.unfold(torch.ones(1, 1, height, width, dtype=torch.float64), window, padding=pad)[0].T > 0  # (L, K)
    local_logits = torch.einsum("nld,nlkd->nlk", q, neighbours(k))  # (B*h, L, K)
    if inside:
        weights = local_logits.masked_fill(~valid, float("-inf")).softmax(dim=-1)
        out = torch.einsum("nlk,nlkd->nld", weights, neighbours(v))
    else:  # everything except the window: full softmax sums minus the window's share
        full_logits = q @ k.transpose(1, 2)  # (B*h, L, L)
        shift = full_logits.amax(dim=-1, keepdim=True)
        all_e = (full_logits - shift).exp()
        win_e = (local_logits - shift).exp() * valid
        numerator = all_e @ v - torch.einsum("nlk,nlkd->nld", win_e, neighbours(v))
        out = numerator / (all_e.sum(dim=-1) - win_e.sum(dim=-1))[..., None]
    out = out.reshape(batch, heads, length, head_dim).transpose(1, 2).reshape(batch, length, dim)
    return attn.out_proj(out)


@pytest.mark.parametrize("qk_norm", [False, True], ids=["dot-product", "cosine"])
@pytest.mark.parametrize("inside", [True, False], ids=["local-cross-attention", "masked-key-attention"])
@pytest.mark.parametrize(("grid", "window"), [((7, 11), 5), ((9, 8), 7), ((10, 10), 3)])
def test_masked_attention_matches_unfold_reference(
    grid: tuple[int, int], window: int, inside: bool, qk_norm: bool
) -> None:
    torch.manual_seed(0)
    dim, heads, batch = 32, 4, 2
    length = grid[0] * grid[1]
    attn = MaskedAttention(dim, heads, qk_norm).eval()
    if qk_norm:  # distinct temperatures per head, all below the cap
        attn.log_temperature.data = torch.tensor([0.5, 3.0, 20.0, 60.0]).log().reshape(4, 1, 1)
    query = torch.randn(batch, length, dim)
    reference = torch.randn(1, length, dim)  # learnable-reference style key, broadcast over the batch
    value = query if not inside else reference  # MLKA: value = input; LCA: key = value = reference
    mask = window_mask(*grid, window, inside=inside)
    with torch.no_grad():
        ours = attn(query, reference, value, mask)
        expected = _unfold_reference(attn, query, reference, value, grid, window, inside)
    assert ours.shape == (batch, length, dim)
    torch.testing.assert_close(ours.double(), expected, rtol=0, atol=1e-5)


def test_cosine_attention_bounds_the_logits_whatever_the_weights() -> None:
    torch.manual_seed(2)
    dim, heads = 32, 4
    query, key = torch.randn(2, 49, dim), torch.randn(1, 49, dim)
    largest = {}
    for qk_norm in (False, True):
        attn = MaskedAttention(dim, heads, qk_norm)
        with torch.no_grad():
            for proj in (attn.q_proj, attn.k_proj):
                proj.weight.mul_(300.0)  # the weight growth that pushed real-data logits to 6.7e4
            if qk_norm:
                attn.log_temperature.fill_(20.0)  # asks for e^20: the cap must hold
            q = attn.query_factor(attn._split(attn.q_proj(query)))
            k = attn.key_factor(attn._split(attn.k_proj(key)))
        largest[qk_norm] = float((q @ k.transpose(-1, -2)).abs().max())
    assert largest[False] > -MASK_VALUE  # a dot-product logit outgrows the window mask
    assert largest[True] <= MAX_TEMPERATURE * (1 + 1e-5)  # |cos| <= 1 times the capped temperature


def test_mask_actually_limits_what_a_query_sees() -> None:
    torch.manual_seed(1)
    grid, window, dim = (8, 8), 3, 16
    attn = MaskedAttention(dim, 2).eval()
    query = torch.randn(1, 64, dim)
    value = torch.randn(1, 64, dim)
    changed = value.clone()
    changed[0, 63] += 10.0  # bottom-right token
    mask = window_mask(*grid, window, inside=True)
    with torch.no_grad():
        delta = (attn(query, value, changed, mask) - attn(query, value, value, mask)).abs().amax(dim=-1)[0]  # (L,)
    seen = delta.reshape(8, 8) > 1e-6
    assert seen[6:, 6:].all() and seen.sum() == 4  # only the 2x2 corner block has the token in its 3x3 window


@pytest.mark.parametrize(
    ("grid", "window", "side"), [((8, 8), 7, 4), ((6, 9), 3, 3), ((10, 10), 5, 2), ((7, 11), 5, 1)]
)
def test_block_windows_keep_exactly_each_querys_window(grid: tuple[int, int], window: int, side: int) -> None:
    assert block_side(*grid) == side
    index, mask = block_windows(*grid, window, side)
    dense = torch.full((grid[0] * grid[1],) * 2, MASK_VALUE)  # rebuild the (L, L) mask from the blocks
    rows = torch.arange(grid[0]).reshape(-1, side).repeat_interleave(grid[1] // side, 0)  # block-major queries
    cols = torch.arange(grid[1]).reshape(-1, side).repeat(grid[0] // side, 1)
    queries = (rows[:, :, None] * grid[1] + cols[:, None, :]).reshape(len(index), side * side)  # (n, s^2)
    for block in range(len(index)):
        for slot, query in enumerate(queries[block]):
            kept = index[block][mask[block, slot] == 0]
            dense[query, kept] = 0.0
    torch.testing.assert_close(dense, window_mask(*grid, window, inside=True), rtol=0, atol=0)


@pytest.mark.parametrize("qk_norm", [False, True], ids=["dot-product", "cosine"])
@pytest.mark.parametrize(("grid", "window"), [((8, 8), 7), ((6, 9), 3), ((10, 10), 5), ((7, 11), 5)])
def test_constant_window_attention_equals_the_masked_form(grid: tuple[int, int], window: int, qk_norm: bool) -> None:
    torch.manual_seed(0)
    dim, length = 32, grid[0] * grid[1]
    attn = MaskedAttention(dim, 4, qk_norm).eval()
    query, reference = torch.randn(2, length, dim), torch.randn(1, length, dim)
    baked = ConstantWindowAttention(attn, reference, reference, grid, window)
    with torch.no_grad():
        expected = attn(query, reference, reference, window_mask(*grid, window, inside=True))
        torch.testing.assert_close(baked(query), expected, rtol=0, atol=1e-5)
    assert baked.keys.shape[-1] == (block_side(*grid) + window - 1) ** 2  # logits over the block's union window


@pytest.mark.parametrize(("grid", "window", "pool"), [((12, 12), 7, 2), ((6, 9), 3, 3), ((8, 6), 3, 2)])
def test_pooled_key_mask_drops_every_block_touching_the_window(grid: tuple[int, int], window: int, pool: int) -> None:
    height, width = grid
    mask = window_mask(height, width, window, inside=False, key_pool=pool)
    assert mask.shape == (height * width, height * width // pool**2)
    half = window // 2
    for query in range(height * width):
        row, col = divmod(query, width)
        for key in range(mask.shape[1]):
            top, left = divmod(key, width // pool)
            cells = [(top * pool + dr, left * pool + dc) for dr in range(pool) for dc in range(pool)]
            touches = any(abs(r - row) <= half and abs(c - col) <= half for r, c in cells)
            assert (mask[query, key] == MASK_VALUE) == touches
    torch.testing.assert_close(
        window_mask(height, width, window, inside=False, key_pool=1), window_mask(*grid, window, inside=False)
    )


def test_token_pool_averages_grid_blocks_and_refuses_a_ragged_grid() -> None:
    tokens = torch.arange(2 * 24 * 3, dtype=torch.float32).reshape(2, 24, 3)  # (B, 4x6 grid, D)
    pooled = TokenPool((4, 6), 2)(tokens)
    assert pooled.shape == (2, 6, 3)
    grid = tokens.reshape(2, 4, 6, 3)
    torch.testing.assert_close(pooled[:, 0], grid[:, :2, :2].mean(dim=(1, 2)))  # top-left block
    torch.testing.assert_close(pooled[:, 5], grid[:, 2:, 4:].mean(dim=(1, 2)))  # bottom-right block
    assert TokenPool((4, 6), 1)(tokens) is tokens
    with pytest.raises(ValueError, match="cannot be pooled"):
        TokenPool((5, 6), 2)
