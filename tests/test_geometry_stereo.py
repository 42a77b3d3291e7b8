"""Two-view stereo and the fused cloud on exact synthetic geometry (ray-cast renders with exact z-depth)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from cameo.cameras import look_at
from cameo.data.primitives import Box, Plane
from cameo.data.render import SceneSpec, render_views
from cameo.data.textures import SolidTexture
from cameo.geometry.cloud import scene_point_cloud
from cameo.geometry.plane_growth import with_grown_floor
from cameo.geometry import stereo
from cameo.geometry.stereo import StereoOptions, two_view_depth
from cameo.geometry.warp import render_points

SIZE = 64
TEXTURE = SolidTexture("field", ((0.9, 0.2, 0.1), (0.1, 0.6, 0.9), (0.9, 0.9, 0.2)), 3.0, (1.0, 0.0, 0.0), 5)


def _flat(points: torch.Tensor) -> torch.Tensor:
    """A material without any texture."""
    return torch.full((points.shape[0], 3), 0.5, dtype=points.dtype)


def _K() -> torch.Tensor:
    f = SIZE / (2 * math.tan(math.radians(25)))
    return torch.tensor([[f, 0, SIZE / 2], [0, f, SIZE / 2], [0, 0, 1.0]]).expand(2, 3, 3).clone()


def _render(primitives: list, eyes: list, targets: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``[2,3,H,W]``, K, c2w (cameras at ``eyes`` looking at ``targets``) and exact depth ``[2,H,W]``."""
    c2w = look_at(torch.tensor(eyes), torch.tensor(targets), torch.tensor([0.0, -1.0, 0.0])).float()
    K = _K()
    rgb, depth = render_views(SceneSpec(primitives, ambient=0.6), c2w, K, SIZE, SIZE, supersample=2)
    return rgb.permute(0, 3, 1, 2).float(), K, c2w, depth.float()


def _wall(material=TEXTURE) -> Plane:
    return Plane([material], point=(0.0, 0.0, 3.0), normal=(0.0, 0.0, -1.0))


def _box() -> Box:
    return Box([TEXTURE], (0.0, 0.0, 2.0), (0.35, 0.35, 0.35))


PAIRS = {
    "sideways": ([[0.0, 0.0, 0.0], [0.4, 0.0, 0.0]], [[0.0, 0.0, 3.0], [0.4, 0.0, 3.0]]),
    "forward": ([[0.0, 0.0, 0.0], [0.1, 0.05, 0.8]], [[0.0, 0.0, 3.0], [0.1, 0.05, 3.8]]),
    "converging": ([[-0.6, 0.0, 0.0], [0.6, 0.1, 0.2]], [[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]]),
}


def _accuracy(result, depth: torch.Tensor) -> tuple[float, float]:
    """(share of valid pixels within 5 % of the true depth, share of pixels valid)."""
    valid = result.valid & torch.isfinite(depth)
    rel = ((result.depth - depth).abs() / depth)[valid]
    return float((rel < 0.05).float().mean()), float(result.valid.float().mean())


@pytest.mark.parametrize("motion", sorted(PAIRS))
def test_plane_depth_within_tolerance(motion: str, one_thread) -> None:
    images, K, c2w, depth = _render([_wall()], *PAIRS[motion])
    result = two_view_depth(images, K, c2w)
    within, coverage = _accuracy(result, depth)
    assert within >= 0.95 and coverage >= 0.4, (within, coverage)
    assert torch.isnan(result.depth[~result.valid]).all() and (result.confidence[~result.valid] == 0).all()


def test_short_forward_step_finds_the_scene_in_a_huge_overlap_range(one_thread, monkeypatch) -> None:
    """A short step forward keeps pixels near the epipole in view down to ~1/80 of the scene's depth, so the
    overlap range spans 0..80 in inverse depth: the coarse search must still land hypotheses on the wall (it used to
    find nothing valid, 0 % coverage)."""
    monkeypatch.setattr(sys.modules[__name__], "SIZE", 96)  # the coarse search runs from 48 px up
    images, K, c2w, depth = _render([_wall(), _box()], [[0.0, 0.0, 0.0], [0.02, 0.01, 0.25]],
                                    [[0.0, 0.0, 3.0], [0.02, 0.01, 3.25]])
    within, coverage = _accuracy(two_view_depth(images, K, c2w), depth)
    assert within >= 0.95 and coverage >= 0.5, (within, coverage)


def test_box_before_a_wall_occlusions_invalid(one_thread) -> None:
    images, K, c2w, depth = _render([_wall(), _box()], *PAIRS["sideways"])
    result = two_view_depth(images, K, c2w)
    within, coverage = _accuracy(result, depth)
    assert within >= 0.9 and coverage >= 0.3, (within, coverage)
    box = depth < 2.5  # the box's pixels: its depth is recovered where valid
    assert (result.valid & box).sum() > 20


def test_textureless_wall_is_invalid(one_thread) -> None:
    images, K, c2w, _ = _render([_wall(_flat)], *PAIRS["sideways"])
    result = two_view_depth(images, K, c2w)
    assert float(result.valid.float().mean()) < 0.02


def _sorted(points: torch.Tensor) -> torch.Tensor:
    """Points in lexicographic order (so two clouds compare as sets)."""
    array = points.numpy()
    return torch.from_numpy(array[np.lexsort(array.T[::-1])])


def test_given_depth_range_and_swapped_views(one_thread) -> None:
    images, K, c2w, depth = _render([_wall(), _box()], *PAIRS["converging"])
    result = two_view_depth(images, K, c2w, depth_range=(1.0, 6.0))
    assert _accuracy(result, depth)[0] >= 0.9
    swapped = two_view_depth(images.flip(0), K.flip(0), c2w.flip(0), depth_range=(1.0, 6.0))
    assert torch.equal(swapped.valid, result.valid.flip(0))
    assert torch.allclose(swapped.depth.flip(0).nan_to_num(), result.depth.nan_to_num())
    cloud = scene_point_cloud(images, K, c2w)
    cloud_swapped = scene_point_cloud(images.flip(0), K.flip(0), c2w.flip(0))
    assert len(cloud) == len(cloud_swapped) > 100
    assert torch.allclose(_sorted(cloud.points), _sorted(cloud_swapped.points), atol=1e-5)


def test_cloud_warped_into_an_input_reproduces_it(one_thread) -> None:
    images, K, c2w, _ = _render([_wall(), _box()], *PAIRS["forward"])
    cloud = scene_point_cloud(images, K, c2w)
    assert cloud is not None and cloud.points.dtype == torch.float32 and cloud.sizes.shape == (len(cloud),)
    warped = render_points(cloud.points, cloud.colors, K[:1], c2w[:1], SIZE, SIZE, cloud.sizes)
    mask = warped.mask[0]
    assert mask.float().mean() > 0.3
    error = (warped.rgb[0] - images[0]).abs().mean(0)[mask]
    assert float(error.mean()) < 0.03


def test_cloud_from_depth_maps_and_none_without_depth(one_thread) -> None:
    images, K, c2w, depth = _render([_wall()], *PAIRS["sideways"])
    assert scene_point_cloud(images[:1], K[:1], c2w[:1]) is None
    cloud = scene_point_cloud(images[:1], K[:1], c2w[:1], depths=[depth[0]], max_points=1000)
    assert len(cloud) == 1000
    assert torch.allclose(cloud.points[:, 2], torch.full((1000,), 3.0), atol=1e-4)  # on the wall z = 3
    again = scene_point_cloud(images[:1], K[:1], c2w[:1], depths=[depth[0]], max_points=1000)
    assert torch.equal(cloud.points, again.points)
    big = torch.nn.functional.interpolate(images[:1], scale_factor=8, mode="nearest")
    K_big = K[:1].clone()
    K_big[:, :2] *= 8
    cloud_big = scene_point_cloud(big, K_big, c2w[:1], depths=[np.kron(depth[0].numpy(), np.ones((8, 8)))],
                                  max_side=128)
    assert len(cloud_big) == 128 * 128  # depth resized to the working size


def test_floor_seen_from_opposite_sides_matches_through_the_level_sweep(one_thread, monkeypatch) -> None:
    """Cameras on opposite sides of a floor at different heights: fronto-parallel windows see the floor's texture
    sheared two ways and match (almost) nothing; the level sweep, its plane's tilt found photometrically (the
    cameras' parallel x axes leave up ambiguous), recovers the floor."""
    monkeypatch.setattr(sys.modules[__name__], "SIZE", 96)
    texture = SolidTexture("field", TEXTURE.palette, 1.5, (1.0, 0.0, 0.0), 5)
    floor = Plane([texture], point=(0.0, 0.0, 0.0), normal=(0.0, -1.0, 0.0))
    images, K, c2w, depth = _render([floor], [[1.8, -1.6, 0.2], [-1.7, -1.1, -0.3]], [[0.0, 0.0, 0.0]] * 2)
    _, fronto = _accuracy(two_view_depth(images, K, c2w, options=StereoOptions(ground_hypotheses=0)), depth)
    within, coverage = _accuracy(two_view_depth(images, K, c2w), depth)
    assert fronto < 0.02 and within >= 0.95 and coverage >= 0.15, (fronto, within, coverage)  # ~0.2: the overlap
    monkeypatch.setattr(stereo, "MIN_LEVEL_SHARE", 0.5)  # a view keeps level depth only where it adds this share
    assert _accuracy(two_view_depth(images, K, c2w), depth)[1] < 0.02


def test_the_plane_at_infinity_is_a_hypothesis_not_a_miss() -> None:
    """Inverse depth 0 (a plane at infinity: a far background) warps by the rotation alone and scores like any
    plane; only negative inverse depths (a level plane behind the ray) are misses. Two cameras side by side with
    the same orientation see the plane at infinity identically: ZNCC 1 inside the image."""

    gray = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)).expand(2, -1, -1, -1).contiguous()
    K = torch.tensor([[32.0, 0, 16], [0, 32.0, 16], [0, 0, 1]]).expand(2, 3, 3)
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[1, 0, 3] = 0.5
    a, b = stereo._sweep_terms(K, c2w, 0, 1, 32, 32)
    stats = stereo._reference_stats(gray, 0, 5)
    scores = stereo._zncc(gray, a, b, torch.tensor([0.0, -0.1]).view(2, 1, 1, 1), 1, stats, 5)
    assert float(scores[0, 4:-4, 4:-4].min()) > 0.99
    assert float(scores[1].max()) == -1.0


def test_growing_the_floor_covers_its_plain_patches(one_thread, monkeypatch) -> None:
    """A floor of large plain patches: windows match the patches' edges only (about half the view); the fitted
    plane grown from them (``with_grown_floor``) covers the floor, accurately, and its pixels count as level depth."""
    monkeypatch.setattr(sys.modules[__name__], "SIZE", 96)
    texture = SolidTexture("field", TEXTURE.palette, 1.0, (1.0, 0.0, 0.0), 5)
    floor = Plane([texture], point=(0.0, 0.0, 0.0), normal=(0.0, -1.0, 0.0))
    images, K, c2w, depth = _render([floor], [[1.8, -1.6, 0.2], [-1.7, -1.1, -0.3]], [[0.0, 0.0, 0.0]] * 2)
    plain = two_view_depth(images, K, c2w)
    grown, _ = with_grown_floor(plain, images, K, c2w)
    within, coverage = _accuracy(grown, depth)
    assert coverage >= _accuracy(plain, depth)[1] + 0.2 and within >= 0.95, (coverage, within)
    assert (grown.level >= (grown.valid & ~plain.valid)).all()  # grown pixels count as level (no fill seeds)


def test_a_view_without_its_own_level_range_sweeps_the_heights_the_other_found() -> None:
    """Level planes are one family in the world: a view whose coarse level search kept its full range gets the
    world heights the other view found (a floor at z = 0 seen from heights 2 and 3), or the fitted plane's height
    plus or minus 10 % of the cameras' mean height when neither found any; a view that found its own keeps it."""
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[0, 2, 3], c2w[1, 2, 3] = 2.0, 3.0
    up, full = torch.tensor([0.0, 0.0, 1.0]), [(0.01, 20.0), (0.01, 20.0)]
    found = (1 / 2.2, 1 / 1.8)  # world heights -0.2 .. 0.2 from camera 0
    shared = stereo._shared_level_ranges([found, full[1]], full, c2w, up, 0.0)
    assert shared[0] == found and shared[1] == pytest.approx((1 / 3.2, 1 / 2.8))
    around_plane = stereo._shared_level_ranges(full, full, c2w, up, 0.0)
    assert around_plane[0] == pytest.approx((1 / 2.25, 1 / 1.75))
    assert around_plane[1] == pytest.approx((1 / 3.25, 1 / 2.75))
    both = [found, (1 / 3.5, 1 / 2.5)]
    assert stereo._shared_level_ranges(both, full, c2w, up, 0.0) == both
    assert stereo._shared_level_ranges(full, full, c2w, up, float("nan")) == full


def test_a_wide_held_out_pair_matches_its_floor_in_both_views(one_thread) -> None:
    """The held-out 2-to-2 pair that kept no stereo depth at all (demo split, object scene 2 of seed 2, 55 degrees
    apart): one view's coarse level search found no range, and the full range's coarse steps failed the two-way
    check in both views. With the shared height range the level sweep matches its floor in both."""
    from cameo.data.procedural import generate_scene

    scene = generate_scene("object", 2, 2, views=4, resolution=256, split="demo")  # the references: views 0, 1
    images = torch.from_numpy(scene.rgb[:2]).permute(0, 3, 1, 2).float() / 255
    K, c2w = torch.from_numpy(scene.K[:2]).float(), torch.from_numpy(scene.c2w[:2]).float()
    result = two_view_depth(images, K, c2w)
    assert float(stereo.view_share(result.level).min()) >= 0.15, stereo.view_share(result.level)
    exact = torch.from_numpy(scene.depth[:2]).float()
    rel = ((result.depth - exact).abs() / exact)[result.valid & torch.isfinite(exact)]
    assert float((rel < 0.05).float().mean()) >= 0.95
