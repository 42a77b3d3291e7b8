"""The visual hull above a floor: what two views leave without depth stands in the way of the floor behind it."""

from __future__ import annotations

import torch

from cameo.cameras import camera_rays, look_at, project_points
from cameo.geometry.cloud import PointCloud, fuse_depth, render_cloud
from cameo.geometry.hull import HEIGHT_CAP, VisualHull, hull_above_floor
from cameo.priors import PROXY_CONFIDENCE, cloud_priors

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


PLANE = torch.tensor([0.0, 0.0, 1.0, 0.0])
NO_FLOOR_COLOUR = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
RED, BLUE = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])


def _photos(box: torch.Tensor) -> torch.Tensor:
    """Views ``[V,3,SIZE,SIZE]``: a red box on a blue floor."""
    return torch.where(box[:, None], RED[None, :, None, None], BLUE[None, :, None, None])


def test_the_unmatched_box_stands_in_the_way_of_the_floor_behind_it() -> None:
    K, c2w = _cameras([[3.0, -1.2, 2.0], [3.0, 1.2, 2.0], [3.4, 0.0, 1.6]])
    depth, box = _floor_and_box(K, c2w)
    images = _photos(box)
    hull = hull_above_floor(images[:2], depth[:2], NO_FLOOR_COLOUR, K[:2], c2w[:2], PLANE)
    assert len(hull) > 0
    heights = hull.points[:, 2]
    assert heights.min() > 0 and heights.max() <= HEIGHT_CAP * 2.0 + 1e-4
    for view in range(2):  # every hull point lies in both views' silhouettes of the unmatched box
        uv, z = project_points(hull.points, K[view], c2w[view])
        col, row = uv[:, 0].floor().long(), uv[:, 1].floor().long()
        assert ((col >= 0) & (col < SIZE) & (row >= 0) & (row < SIZE) & (z > 0)).all()
        assert torch.isnan(depth[view][row, col]).all()
    torch.testing.assert_close(hull.colors, RED.expand_as(hull.colors))  # both photos see the box there

    cloud = fuse_depth(images[:2], depth[:2], K[:2], c2w[:2])
    bare = render_cloud(cloud, K[2:], c2w[2:], SIZE, SIZE)
    cloud.hull = hull
    seen = render_cloud(cloud, K[2:], c2w[2:], SIZE, SIZE)
    box_pixels, floor_pixels = box[2], ~box[2] & torch.isfinite(depth[2])
    assert bare.measured[0][box_pixels].float().mean() > 0.5  # without the hull the floor shows through the box
    assert seen.measured[0][box_pixels].float().mean() < 0.1 and seen.guessed[0][box_pixels].float().mean() > 0.9
    assert seen.measured[0][floor_pixels].float().mean() > 0.8 * bare.measured[0][floor_pixels].float().mean()
    torch.testing.assert_close(seen.rgb[0].permute(1, 2, 0)[seen.guessed[0]].mean(0), RED, atol=1e-4, rtol=0)

    priors = cloud_priors(cloud, K[2:], c2w[2:], SIZE, SIZE)  # a model without guessed surfaces: holes
    assert (priors[0, 3][seen.guessed[0]] == 0).all() and (priors[0, :3][:, seen.guessed[0]] == 0).all()
    guessed = cloud_priors(cloud, K[2:], c2w[2:], SIZE, SIZE, PROXY_CONFIDENCE)
    assert (guessed[0, 3][seen.guessed[0]] == PROXY_CONFIDENCE).all() and (guessed[0, 3][seen.measured[0]] == 1).all()


def test_floor_coloured_pixels_neither_start_nor_hold_the_hull() -> None:
    K, c2w = _cameras([[3.0, -1.2, 2.0], [3.0, 1.2, 2.0]])
    depth, box = _floor_and_box(K, c2w)
    everything_floor = torch.ones(2, SIZE, SIZE, dtype=torch.bool)
    assert len(hull_above_floor(_photos(box), depth, everything_floor, K, c2w, PLANE)) == 0
    one_side = NO_FLOOR_COLOUR.clone()
    one_side[1] = True  # view 1 sees floor wherever it looks: nothing stays in the hull
    assert len(hull_above_floor(_photos(box), depth, one_side, K, c2w, PLANE)) == 0


def test_what_only_one_view_leaves_unmatched_is_not_in_the_hull() -> None:
    K, c2w = _cameras([[3.0, -1.2, 2.0], [3.0, 1.2, 2.0]])
    depth, box = _floor_and_box(K, c2w)
    images = _photos(box)
    matched = depth.clone()
    matched[1] = torch.where(box[1], torch.full_like(depth[1], 3.0), depth[1])  # view 1 placed the box (wrongly)
    assert len(hull_above_floor(images, depth, NO_FLOOR_COLOUR, K, c2w, PLANE)) > 0
    assert len(hull_above_floor(images, matched, NO_FLOOR_COLOUR, K, c2w, PLANE)) == 0
    away = c2w.clone()
    away[1] = look_at(c2w[1, :3, 3], torch.tensor([0.0, 4.0, 0.0]), UP)  # view 1 turns from the box to the floor
    depth_away, box_away = _floor_and_box(K, away)
    assert not box_away[1].any()
    assert len(hull_above_floor(images, torch.stack([depth[0], depth_away[1]]), NO_FLOOR_COLOUR, K, away, PLANE)) == 0


def test_pixels_the_points_win_keep_their_colour() -> None:
    K, c2w = _cameras([[3.0, -1.2, 2.0], [3.0, 1.2, 2.0], [3.4, 0.0, 1.6]])
    depth, box = _floor_and_box(K, c2w)
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    cloud = fuse_depth(images, depth[:2], K[:2], c2w[:2])
    bare = render_cloud(cloud, K[2:], c2w[2:], SIZE, SIZE)
    cloud.hull = hull_above_floor(images, depth[:2], NO_FLOOR_COLOUR, K[:2], c2w[:2], PLANE)
    seen = render_cloud(cloud, K[2:], c2w[2:], SIZE, SIZE)
    both = bare.measured & seen.measured
    assert both.float().mean() > 0.3
    same = (seen.rgb - bare.rgb).abs().amax(1)[both] < 1e-5
    assert same.float().mean() > 0.99  # (a few pixels at the box's edge show a farther floor point instead)
    assert (seen.rgb.permute(0, 2, 3, 1)[~seen.measured & ~seen.guessed] == 0).all()


def _one_pixel_hull(points: list[list[float]], colour: list[float]) -> VisualHull:
    count = len(points)
    return VisualHull(torch.tensor(points), torch.zeros(count), torch.tensor(colour).expand(count, 2, 3).clone(),
                      torch.tensor([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]))


def test_a_pixel_shared_with_the_hull_shows_the_surface_most_of_it_holds() -> None:
    K = torch.tensor([[[10.0, 0.0, 2.0], [0.0, 10.0, 2.0], [0.0, 0.0, 1.0]]])
    c2w = torch.eye(4)[None]
    # two points and a hull point on one surface, all inside pixel (2, 2): the pixel averages the three
    points = torch.tensor([[0.01, 0.01, 1.0], [0.03, 0.03, 1.0]])
    cloud = PointCloud(points, torch.tensor([[0.2, 0.4, 0.6], [0.4, 0.6, 0.8]]), torch.zeros(2),
                       _one_pixel_hull([[0.02, 0.02, 1.0]], [1.0, 0.0, 0.0]))
    shown = render_cloud(cloud, K, c2w, 4, 4)
    assert shown.measured[0, 2, 2] and shown.measured.sum() == 1 and not shown.guessed.any()
    torch.testing.assert_close(shown.rgb[0, :, 2, 2], torch.tensor([0.3, 0.5, 0.7]))  # not darkened by the hull
    cloud.hull = _one_pixel_hull([[0.02, 0.02, 1.0], [0.025, 0.025, 1.0], [0.015, 0.015, 1.0]], [1.0, 0.0, 0.0])
    shown = render_cloud(cloud, K, c2w, 4, 4)
    assert not shown.measured.any() and shown.guessed[0, 2, 2]
    torch.testing.assert_close(shown.rgb[0, :, 2, 2], torch.tensor([1.0, 0.0, 0.0]))


def test_a_camera_at_a_photo_sees_that_photos_colours() -> None:
    hull = _one_pixel_hull([[0.0, 0.0, 1.0]], [0.0, 0.0, 0.0])
    c2w = torch.eye(4).repeat(3, 1, 1)
    c2w[1, 0, 3], c2w[2, 0, 3] = 5.0, 2.5
    weights = hull.weights_for(c2w)
    assert weights[0, 0] > 0.999 and weights[1, 1] > 0.999
    torch.testing.assert_close(weights[2], torch.tensor([0.5, 0.5]))
