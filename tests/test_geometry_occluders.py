"""Occluders above a floor: what two views leave without depth hides the floor behind it in a third view."""

from __future__ import annotations

import torch

from cameo.cameras import camera_rays, look_at, project_points
from cameo.geometry.cloud import PointCloud, fuse_depth, render_cloud
from cameo.geometry.occluders import HEIGHT_CAP, Occluders, occluders_above_floor

SIZE = 48
BOX = torch.tensor([[-0.3, -0.3, 0.0], [0.3, 0.3, 0.8]])  # an axis-aligned box standing on the floor z = 0
UP = torch.tensor([0.0, 0.0, 1.0])


def _cameras(eyes: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    c2w = torch.stack([look_at(torch.tensor(e), torch.tensor([0.0, 0.0, 0.3]), UP) for e in eyes])
    K = torch.tensor([[40.0, 0.0, SIZE / 2], [0.0, 40.0, SIZE / 2], [0.0, 0.0, 1.0]]).expand(len(eyes), 3, 3)
    return K.clone(), c2w


def _box_hit(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Distance along each ray to the box (inf on a miss): the slab test."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (BOX[0] - origins) * inv, (BOX[1] - origins) * inv
    near, far = torch.minimum(t0, t1).amax(-1), torch.maximum(t0, t1).amin(-1)
    return torch.where((far >= near) & (far > 0), near.clamp_min(0), torch.full_like(near, float("inf")))


def _floor_and_box(K: torch.Tensor, c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per view the z-depth of the floor where it is seen (NaN where the box is in front) and the box's mask."""
    origins, dirs = camera_rays(c2w, K, SIZE, SIZE)
    to_floor = -origins[..., 2] / dirs[..., 2]
    box = _box_hit(origins, dirs) < to_floor
    z_per_t = (dirs * c2w[:, None, None, :3, 2]).sum(-1)  # z-depth per unit of ray length
    depth = torch.where(box | (to_floor <= 0), torch.full_like(to_floor, float("nan")), to_floor * z_per_t)
    return depth, box


def test_the_box_without_depth_hides_the_floor_behind_it() -> None:
    K, c2w = _cameras([[3.0, -1.2, 2.0], [3.0, 1.2, 2.0], [3.4, 0.0, 1.6]])
    depth, box = _floor_and_box(K, c2w)
    plane = torch.tensor([0.0, 0.0, 1.0, 0.0])
    occluders = occluders_above_floor(depth[:2], torch.zeros(2, SIZE, SIZE, dtype=torch.bool), K[:2], c2w[:2], plane)
    assert len(occluders) > 0
    heights = occluders.points[:, 2]
    assert heights.min() > 0 and heights.max() <= HEIGHT_CAP * 2.0 + 1e-4
    for view in range(2):  # every occluder lies in both views' silhouettes of the unmatched box
        uv, z = project_points(occluders.points, K[view], c2w[view])
        col, row = uv[:, 0].floor().long(), uv[:, 1].floor().long()
        assert ((col >= 0) & (col < SIZE) & (row >= 0) & (row < SIZE) & (z > 0)).all()
        assert torch.isnan(depth[view][row, col]).all()

    images = torch.full((2, 3, SIZE, SIZE), 0.5)
    cloud = fuse_depth(images, depth[:2], K[:2], c2w[:2])
    bare = render_cloud(cloud, K[2:], c2w[2:], SIZE, SIZE).mask[0]
    cloud.occluders = occluders
    hidden = render_cloud(cloud, K[2:], c2w[2:], SIZE, SIZE).mask[0]
    box_pixels, floor_pixels = box[2], ~box[2] & torch.isfinite(depth[2])
    assert bare[box_pixels].float().mean() > 0.5  # without occluders the floor behind the box shows through it
    assert hidden[box_pixels].float().mean() < 0.1
    assert hidden[floor_pixels].float().mean() > 0.8 * bare[floor_pixels].float().mean()


def test_floor_coloured_pixels_start_no_occluders_and_let_the_other_view_see_past() -> None:
    K, c2w = _cameras([[3.0, -1.2, 2.0], [3.0, 1.2, 2.0]])
    depth, _ = _floor_and_box(K, c2w)
    plane = torch.tensor([0.0, 0.0, 1.0, 0.0])
    everything_floor = torch.ones(2, SIZE, SIZE, dtype=torch.bool)
    assert len(occluders_above_floor(depth, everything_floor, K, c2w, plane)) == 0
    one_side = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    one_side[1] = True  # view 1 sees floor wherever it looks: nothing stays occupied
    assert len(occluders_above_floor(depth, one_side, K, c2w, plane)) == 0


def test_what_only_one_view_sees_unmatched_holds_no_occluder() -> None:
    K, c2w = _cameras([[3.0, -1.2, 2.0], [3.0, 1.2, 2.0]])
    depth, box = _floor_and_box(K, c2w)
    plane = torch.tensor([0.0, 0.0, 1.0, 0.0])
    nothing = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    matched = depth.clone()
    matched[1] = torch.where(box[1], torch.full_like(depth[1], 3.0), depth[1])  # view 1 placed the box (wrongly)
    assert len(occluders_above_floor(depth, nothing, K, c2w, plane)) > 0
    assert len(occluders_above_floor(matched, nothing, K, c2w, plane)) == 0
    away = c2w.clone()
    away[1] = look_at(c2w[1, :3, 3], torch.tensor([0.0, 4.0, 0.0]), UP)  # view 1 turns from the box to the floor
    depth_away, box_away = _floor_and_box(K, away)
    assert not box_away[1].any() and len(occluders_above_floor(torch.stack([depth[0], depth_away[1]]), nothing,
                                                               K, away, plane)) == 0


def test_pixels_the_points_win_keep_their_colour() -> None:
    K, c2w = _cameras([[3.0, -1.2, 2.0], [3.0, 1.2, 2.0], [3.4, 0.0, 1.6]])
    depth, _ = _floor_and_box(K, c2w)
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    cloud = fuse_depth(images, depth[:2], K[:2], c2w[:2])
    bare = render_cloud(cloud, K[2:], c2w[2:], SIZE, SIZE)
    cloud.occluders = occluders_above_floor(depth[:2], torch.zeros(2, SIZE, SIZE, dtype=torch.bool), K[:2], c2w[:2],
                                            torch.tensor([0.0, 0.0, 1.0, 0.0]))
    hidden = render_cloud(cloud, K[2:], c2w[2:], SIZE, SIZE)
    both = bare.mask & hidden.mask
    assert both.float().mean() > 0.3
    same = (hidden.rgb - bare.rgb).abs().amax(1)[both] < 1e-5
    assert same.float().mean() > 0.99  # (a few pixels at the box's edge show a farther floor point instead)
    assert (hidden.rgb.permute(0, 2, 3, 1)[~hidden.mask] == 0).all()


def test_a_pixel_shared_with_an_occluder_shows_its_points_undarkened() -> None:
    K = torch.tensor([[[10.0, 0.0, 2.0], [0.0, 10.0, 2.0], [0.0, 0.0, 1.0]]])
    c2w = torch.eye(4)[None]
    # two points and an occluder on one surface, all inside pixel (2, 2): the pixel averages the three
    points = torch.tensor([[0.01, 0.01, 1.0], [0.03, 0.03, 1.0]])
    cloud = PointCloud(points, torch.tensor([[0.2, 0.4, 0.6], [0.4, 0.6, 0.8]]), torch.zeros(2),
                       Occluders(torch.tensor([[0.02, 0.02, 1.0]]), torch.zeros(1)))
    shown = render_cloud(cloud, K, c2w, 4, 4)
    assert shown.mask[0, 2, 2] and shown.mask.sum() == 1
    torch.testing.assert_close(shown.rgb[0, :, 2, 2], torch.tensor([0.3, 0.5, 0.7]))
    cloud.occluders = Occluders(torch.tensor([[0.02, 0.02, 1.0], [0.025, 0.025, 1.0]]), torch.zeros(2))
    assert not render_cloud(cloud, K, c2w, 4, 4).mask.any()  # occluders are half the pixel: it stays empty
