"""Plain stereo holes get depth interpolated from the matches around them; textured holes, holes across a depth
step and holes far from any match stay empty. Holes only one view can see (beyond the other's frame) get depth
extrapolated from the whole view."""

from __future__ import annotations

import torch

from cameo.geometry.fill import (beyond_other_frame, extrapolate_beyond_overlap, fill_plain_holes, plain_pixels,
                                 push_pull)

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


def _side_by_side_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """``K [2,3,3]``, ``c2w [2,4,4]``: two cameras 1 apart along x, both facing a wall at z = 2 (a 25 px shift)."""
    K = torch.tensor([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]]).expand(2, 3, 3)
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[1, 0, 3] = 1.0
    return K, c2w


def test_beyond_other_frame_marks_what_only_one_camera_sees() -> None:
    K, c2w = _side_by_side_pair()
    beyond = beyond_other_frame(torch.full((2, H, W), 2.0), K, c2w)
    assert beyond[0, :, :25].all() and not beyond[0, :, 25:].any()  # camera 1 sits to the right
    assert beyond[1, :, 71:].all() and not beyond[1, :, :71].any()
    assert beyond_other_frame(torch.full((2, H, W), float("nan")), K, c2w).all()


def test_holes_beyond_the_other_frame_get_the_view_s_depth_holes_inside_stay() -> None:
    K, c2w = _side_by_side_pair()
    depth = torch.full((2, H, W), 2.0)
    depth[0, :, :25] = depth[1, :, 71:] = float("nan")  # what stereo cannot match ...
    depth[:, 30:34, 40:44] = float("nan")  # ... and an occlusion inside the overlap
    filled, mask = extrapolate_beyond_overlap(depth, K, c2w)
    assert mask[0, :, :25].all() and mask[1, :, 71:].all()
    assert int(mask.sum()) == H * (25 + 25)
    torch.testing.assert_close(filled[mask], torch.full_like(filled[mask], 2.0))
    assert torch.isnan(filled[:, 30:34, 40:44]).all()
    alone = depth.clone()
    alone[1] = float("nan")  # a view without any depth stays empty
    filled, mask = extrapolate_beyond_overlap(alone, K, c2w)
    assert torch.isnan(filled[1]).all() and not mask[1].any() and mask[0, :, :25].all()


def test_too_few_matches_leave_a_view_without_depth_before_anything_is_extrapolated(monkeypatch) -> None:
    from cameo.geometry import cloud
    from cameo.geometry.stereo import StereoResult

    depth = torch.full((2, H, W), 2.0)
    depth[0, :, 3:] = float("nan")  # view 0 matched on 3 of 96 columns (3 %): streaks, not a surface
    torch.testing.assert_close(cloud.drop_sparse_views(depth, 0.02), depth, equal_nan=True)
    dropped = cloud.drop_sparse_views(depth, 0.05)
    assert torch.isnan(dropped[0]).all() and torch.equal(dropped[1], depth[1])
    K, c2w = _side_by_side_pair()
    found = StereoResult(depth, torch.isfinite(depth).float(), torch.isfinite(depth), torch.zeros_like(depth).bool())
    monkeypatch.setattr(cloud, "two_view_depth", lambda *args, **kwargs: found)
    pair = cloud.stereo_depth(torch.full((2, 3, H, W), 0.5), K, c2w)
    filled, confidence = pair.depth, pair.confidence
    assert torch.isnan(filled[0]).all() and float(confidence[0].abs().sum()) == 0  # nothing to extrapolate from
    assert torch.isfinite(filled[1]).all()
    kept = cloud.stereo_depth(torch.full((2, 3, H, W), 0.5), K, c2w, min_match_share=0.0).depth
    assert float(torch.isfinite(kept[0]).float().mean()) > 0.2  # without the rule the 3 % spread over a quarter


def test_level_sweep_depth_is_kept_but_seeds_no_fill(monkeypatch) -> None:
    """Depth from the level-plane sweep (a floor) is kept as matched, but it does not spread into the holes: only the
    fronto-parallel matches are interpolated and extrapolated."""
    from cameo.geometry import cloud
    from cameo.geometry.stereo import StereoResult

    depth = torch.full((2, H, W), float("nan"))
    depth[0, 30:, :] = 3.0  # view 0: only floor, from the level sweep
    depth[1, :, :71] = 2.0  # view 1: fronto-parallel matches inside the overlap
    level = torch.zeros_like(depth).bool()
    level[0] = torch.isfinite(depth[0])
    found = StereoResult(depth, torch.isfinite(depth).float(), torch.isfinite(depth), level)
    monkeypatch.setattr(cloud, "two_view_depth", lambda *args, **kwargs: found)
    K, c2w = _side_by_side_pair()
    filled = cloud.stereo_depth(torch.full((2, 3, H, W), 0.5), K, c2w).depth
    torch.testing.assert_close(filled[0], depth[0], equal_nan=True)  # the floor as matched, nothing more
    assert torch.isfinite(filled[1]).all()  # the fronto matches extrapolated beyond the overlap
