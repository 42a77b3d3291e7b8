"""render_points: a point lands on the pixel it projects to, the nearest surface wins, sizes set the footprint."""

from __future__ import annotations

import torch

from cameo.geometry.warp import render_points

K = torch.tensor([[[10.0, 0, 8], [0, 10.0, 8], [0, 0, 1]]])
EYE = torch.eye(4)[None]


def test_point_lands_on_its_pixel_with_its_depth() -> None:
    points = torch.tensor([[0.25, -0.15, 2.0]])  # u = 10 * 0.125 + 8 = 9.25, v = 10 * -0.075 + 8 = 7.25
    out = render_points(points, torch.tensor([[1.0, 0.5, 0.0]]), K, EYE, 16, 16)
    assert out.mask.sum() == 1 and bool(out.mask[0, 7, 9])
    assert torch.allclose(out.rgb[0, :, 7, 9], torch.tensor([1.0, 0.5, 0.0]))
    assert float(out.depth[0, 7, 9]) == 2.0 and float(out.depth[0, 0, 0]) == 0.0


def test_nearest_point_wins_and_points_behind_are_dropped() -> None:
    points = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 1.5], [0.0, 0.0, -1.0]])
    colors = torch.eye(3)
    out = render_points(points, colors, K, EYE, 16, 16)
    assert out.mask.sum() == 1
    assert torch.allclose(out.rgb[0, :, 8, 8], colors[1]) and float(out.depth[0, 8, 8]) == 1.5


def test_sizes_widen_the_footprint_up_to_max_radius() -> None:
    points, colors = torch.tensor([[0.0, 0.0, 2.0]]), torch.ones(1, 3)
    single = render_points(points, colors, K, EYE, 16, 16)  # no sizes: one pixel
    small = render_points(points, colors, K, EYE, 16, 16, torch.tensor([0.05]))  # 0.25 px: ceil -> 3x3
    large = render_points(points, colors, K, EYE, 16, 16, torch.tensor([1.0]), max_radius=2)  # 5 px, clamped
    assert single.mask.sum() == 1 and small.mask.sum() == 9 and large.mask.sum() == 25
