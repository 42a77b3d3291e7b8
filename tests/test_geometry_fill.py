"""Plain stereo holes get depth interpolated from the matches around them; textured holes, holes across a depth
step and holes far from any match stay empty."""

from __future__ import annotations

import torch

from cameo.geometry.fill import fill_plain_holes, plain_pixels, push_pull

H, W = 64, 96


def _slanted_plane() -> torch.Tensor:
    """Z-depth ``[1,H,W]`` of a plane: its inverse depth is affine in the pixel coordinates."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    return (1.0 / (0.5 + 0.001 * u + 0.0005 * v))[None]


def _half_textured() -> torch.Tensor:
    image = torch.full((1, 3, H, W), 0.8)
    image[..., : W // 2] = torch.rand(1, 3, H, W // 2, generator=torch.Generator().manual_seed(1))
    return image


def test_push_pull_keeps_valid_pixels_and_fills_between_them() -> None:
    values = torch.arange(2 * 9 * 11, dtype=torch.float32).reshape(2, 9, 11)
    valid = torch.rand(2, 9, 11, generator=torch.Generator().manual_seed(0)) > 0.5
    filled = push_pull(values, valid)
    assert torch.equal(filled[valid], values[valid])
    assert torch.isfinite(filled).all()
    assert (filled >= values.min()).all() and (filled <= values.max()).all()  # means never overshoot
    constant = push_pull(torch.where(valid, 3.0, float("nan")), valid)
    torch.testing.assert_close(constant, torch.full_like(constant, 3.0))


def test_plain_holes_filled_close_to_the_plane_textured_holes_left_empty() -> None:
    truth, image = _slanted_plane(), _half_textured()
    depth = truth.clone()
    depth[..., 60:68] = float("nan")  # stereo lost a plain band ...
    depth[..., 8:12, 8:12] = float("nan")  # ... and a textured patch (an occlusion, say)
    filled, mask = fill_plain_holes(depth, image)
    plain = plain_pixels(image, 0.01, 5)
    assert plain[..., 60:68].all() and not plain[..., 8:12, 8:12].any()
    assert torch.equal(mask, plain & torch.isnan(depth))
    assert torch.isnan(filled[..., 8:12, 8:12]).all()
    rel = ((filled - truth).abs() / truth)[..., 60:68]
    assert float(rel.max()) < 0.02, float(rel.max())
    assert torch.equal(filled[~torch.isnan(depth)], depth[~torch.isnan(depth)])


def test_holes_across_a_depth_step_or_far_from_matches_stay_empty() -> None:
    image = torch.full((1, 3, H, W), 0.8)
    depth = torch.full((1, H, W), float("nan"))
    depth[..., :40] = 1.0  # a near surface on the left ...
    depth[..., 56:] = 4.0  # ... a far one on the right, a plain gap between them
    filled, mask = fill_plain_holes(depth, image)
    assert not mask[..., 44:52].any() and torch.isnan(filled[..., 44:52]).all()
    sparse = torch.full((1, H, W), float("nan"))
    sparse[..., 0, 0] = 2.0  # one match in a corner: no support for the rest of the image
    assert not fill_plain_holes(sparse, image)[1][..., H // 2:, W // 2:].any()


def test_a_view_without_depth_stays_empty() -> None:
    depth = torch.stack([_slanted_plane()[0], torch.full((H, W), float("nan"))])
    depth[0, :, 88:] = float("nan")
    filled, mask = fill_plain_holes(depth, torch.full((2, 3, H, W), 0.5))
    assert torch.isfinite(filled[0]).all() and torch.isnan(filled[1]).all() and not mask[1].any()
