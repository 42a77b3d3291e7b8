"""render_points: a point lands on the pixel it projects to, the nearest surface wins, sizes set the footprint,
slanted surfaces keep their own texture and dense clouds are area-averaged."""

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
    dense = render_points(points, colors, K, EYE, 16, 16, torch.tensor([0.05]))  # half-width 0.25 px: own pixel
    source = render_points(points, colors, K, EYE, 16, 16, torch.tensor([0.1]))  # 0.5 px (source scale): 3x3
    large = render_points(points, colors, K, EYE, 16, 16, torch.tensor([1.0]), max_radius=2)  # 5 px, clamped
    assert single.mask.sum() == 1 and dense.mask.sum() == 1
    assert source.mask.sum() == 9 and large.mask.sum() == 25


def _slanted_plane(
    size: int, focal: float, slant: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One point per pixel of a ``size``-pixel camera (focal ``focal``) on a plane slanting away to the right
    (depth 1 at the left edge, ``1 + slant`` at the right), coloured by its pixel column; returns points, colours,
    sizes, K."""
    Ks = torch.tensor([[[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]]])
    v, u = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    z = 1.0 + slant * u / size
    x, y = (u - size / 2) / focal * z, (v - size / 2) / focal * z
    points = torch.stack([x, y, z], -1).reshape(-1, 3)
    colors = (u / size).reshape(-1, 1).expand(-1, 3).contiguous()
    return points, colors, (0.5 * z / focal).reshape(-1), Ks


def test_self_warp_of_a_slanted_surface_is_exact() -> None:
    """Each pixel shows its own point, not a nearer neighbour's footprint (which shifted texture on slants)."""
    points, colors, sizes, Ks = _slanted_plane(32, 40.0)
    out = render_points(points, colors, Ks, EYE, 32, 32, sizes)
    assert bool(out.mask.all())
    assert torch.allclose(out.rgb[0].permute(1, 2, 0).reshape(-1, 3), colors, atol=1e-6)


def test_dense_cloud_rendered_small_is_area_averaged() -> None:
    """A 64 px cloud rendered at 16 px: each pixel the mean of the 4x4 points it covers (a downsampled image).
    The slant is gentler than above: within one small pixel its depth must stay within the tolerance."""
    points, colors, sizes, Ks = _slanted_plane(64, 80.0, slant=0.5)
    small_K = Ks.clone()
    small_K[:, :2] /= 4
    out = render_points(points, colors, small_K, EYE, 16, 16, sizes)
    expected = colors[:, 0].reshape(64, 64).reshape(16, 4, 16, 4).mean(dim=(1, 3))
    assert bool(out.mask.all())
    assert torch.allclose(out.rgb[0, 0], expected, atol=1e-5)
