"""Token / pixel correspondences on exact synthetic geometry."""

import math

import numpy as np
import pytest
import torch

from cameo.cameras import unproject_depth
from cameo.correspondence import pixel_correspondences, token_correspondences

SIZE, FOCAL, DEPTH = 16, 16.0, 2.0


def _K() -> torch.Tensor:
    return torch.tensor([[FOCAL, 0, SIZE / 2], [0, FOCAL, SIZE / 2], [0, 0, 1]])


def _pose(tx: float = 0.0) -> torch.Tensor:
    c2w = torch.eye(4)
    c2w[0, 3] = tx
    return c2w


def _plane_pointmap(tx: float = 0.0, depth: torch.Tensor | None = None) -> torch.Tensor:
    """World pointmap [3, H, W] of the plane z = DEPTH seen by a camera translated by tx along x."""
    d = torch.full((SIZE, SIZE), DEPTH) if depth is None else depth
    return unproject_depth(d, _K(), _pose(tx)).permute(2, 0, 1)


def test_translation_in_front_of_plane_gives_known_disparity():
    disparity = 4  # pixels = FOCAL * tx / DEPTH
    tx = disparity * DEPTH / FOCAL
    pm = torch.stack([_plane_pointmap(0.0), _plane_pointmap(tx)])[None]
    corr = token_correspondences(pm, (SIZE, SIZE), tau=1.5)
    rows, cols = np.divmod(np.arange(SIZE * SIZE), SIZE)
    idx01 = corr.index[0, 0, 1].numpy()
    inside = cols >= disparity  # the point of view-0 column c is at column c - disparity in view 1
    assert np.array_equal(idx01[inside], rows[inside] * SIZE + cols[inside] - disparity)
    assert corr.valid[0, 0, 1][torch.from_numpy(inside)].all()
    # Tokens that leave the image by 2+ tokens fail the round trip.
    assert not corr.valid[0, 0, 1][torch.from_numpy(cols <= disparity - 2)].any()
    # The reverse pair is the inverse shift.
    idx10 = corr.index[0, 1, 0].numpy()
    back = cols < SIZE - disparity
    assert np.array_equal(idx10[back], rows[back] * SIZE + cols[back] + disparity)


def test_occluded_and_invalid_tokens_are_masked():
    base = _plane_pointmap()
    occluded = base.clone()
    occluded[:, 5:11, 5:11] = _plane_pointmap(depth=torch.full((SIZE, SIZE), 1.0))[:, 5:11, 5:11]  # nearer patch
    occluded[:, :, 14:] = float("nan")  # no surface
    corr = token_correspondences(torch.stack([base, occluded])[None], (SIZE, SIZE))
    valid = corr.valid[0, 0, 1].view(SIZE, SIZE)
    assert not valid[7:9, 7:9].any()  # hidden behind the patch in view 1
    assert not valid[:, 15].any()  # its partner area has no surface
    assert valid[:3, :12].all() and valid[12:, :12].all()  # visible in both
    assert not corr.valid[0, 1, 0].view(SIZE, SIZE)[:, 14:].any()  # NaN queries are never valid
    assert not corr.valid[0, torch.arange(2), torch.arange(2)].any()  # diagonal


def test_infinite_tau_keeps_all_finite_tokens():
    torch.manual_seed(0)
    pm = torch.randn(2, 3, 3, 8, 8)
    pm[0, 1, :, 2:4, 2:4] = float("nan")
    corr = token_correspondences(pm, (8, 8), tau=math.inf)
    finite = torch.isfinite(pm).all(2).flatten(2)  # [B, F, N]
    off = ~torch.eye(3, dtype=torch.bool)
    expected = finite[:, :, None, :] & off[None, :, :, None]
    assert torch.equal(corr.valid, expected)
    assert corr.index.shape == (2, 3, 3, 64) and corr.index.dtype == torch.long


def test_swapping_views_inverts_the_map_on_valid_tokens():
    torch.manual_seed(1)
    pm = torch.randn(1, 4, 3, 32, 32)  # generic pointmaps, bilinearly resized to 12x12 tokens
    corr = token_correspondences(pm, (12, 12), tau=0.0)
    for i in range(4):
        for j in range(4):
            v = corr.valid[0, i, j]
            fwd = corr.index[0, i, j][v]
            assert torch.equal(corr.index[0, j, i][fwd], torch.nonzero(v).squeeze(1))


def test_backends_and_chunking_agree():
    torch.manual_seed(2)
    pm = torch.randn(2, 3, 3, 10, 10)
    pm[1, 2, :, :3] = float("nan")
    a = token_correspondences(pm, (10, 10), backend="kdtree")
    b = token_correspondences(pm, (10, 10), backend="matmul")
    c = token_correspondences(pm, (10, 10), backend="matmul", max_chunk_entries=1)
    finite = torch.isfinite(pm).all(2).flatten(2)[:, :, None].expand_as(a.valid)
    assert torch.equal(a.index[finite], b.index[finite]) and torch.equal(a.valid, b.valid)
    assert torch.equal(b.index, c.index) and torch.equal(b.valid, c.valid)


def test_pixel_mode_matches_known_disparity():
    disparity = 3
    tx = disparity * DEPTH / FOCAL
    pi = _plane_pointmap(0.0).permute(1, 2, 0).numpy()
    pj = _plane_pointmap(tx).permute(1, 2, 0).numpy()
    pj[:2] = np.nan
    index, valid = pixel_correspondences(pi, pj, tau=1.5)
    rows, cols = np.divmod(np.arange(SIZE * SIZE), SIZE)
    ok = (cols >= disparity) & (rows >= 2)
    assert np.array_equal(index[ok], rows[ok] * SIZE + cols[ok] - disparity)
    assert valid[ok].all() and not valid[rows < 1].any() and not valid[cols <= disparity - 2].any()


@pytest.mark.parametrize("token_hw", [(4, 4), (8, 6)])
def test_tokens_of_a_resized_pointmap_use_bilinear_cell_averages(token_hw):
    pm = torch.stack([_plane_pointmap(), _plane_pointmap()])[None]
    corr = token_correspondences(pm, token_hw)
    n = token_hw[0] * token_hw[1]
    assert torch.equal(corr.index[0, 0, 1], torch.arange(n)) and corr.valid[0, 0, 1].all()
