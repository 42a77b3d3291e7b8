"""Fitting views of several sizes: resolution and field of view kept, crops, CAT3D weights, init from a cloud."""

from __future__ import annotations

import math
import types

import pytest
import torch

from cameo.cameras import look_at, project_points, unproject_depth
from recon.fit import FitConfig, _normalization, _normalized, fit_gaussians, initial_gaussians
from recon.pipeline import ReconOptions, fit_config, fit_resolution, fit_size, flythrough_cameras
from recon.splats import Splats, render
from recon.views import BatchSampler, FitViews, nearest_observed_distance, trust_weights
from trajectories import two_view_path


def _cameras(n: int, width: int, height: int, radius: float = 3.0, spread: float = 0.8):
    angles = torch.linspace(-spread, spread, n)
    eyes = torch.stack([radius * torch.sin(angles), -0.5 * torch.ones(n), -radius * torch.cos(angles)], -1)
    c2w = look_at(eyes, torch.zeros(n, 3), torch.tensor([0.0, -1.0, 0.0]))
    f = 1.2 * max(width, height)
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return K.expand(n, 3, 3).clone(), c2w


def _truth(n: int = 80, seed: int = 0) -> Splats:
    g = torch.Generator().manual_seed(seed)
    return Splats(means=(torch.rand(n, 3, generator=g) - 0.5) * 1.2, quats=torch.randn(n, 4, generator=g),
                  scales=torch.log(torch.rand(n, 3, generator=g) * 0.1 + 0.05), opacities=torch.full((n,), 3.0),
                  sh0=(torch.rand(n, 1, 3, generator=g) - 0.5) / 0.2821, shN=torch.zeros(n, 0, 3))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(torch.mean((a - b) ** 2).item())


def test_fit_resolution_keeps_aspect_and_field_of_view():
    """A 1600x1200 photo is fitted at 341x256 with its whole field of view: every pixel keeps its ray."""
    assert fit_size(1200, 1600, 256) == (256, 341) and fit_size(100, 60, 256) == (100, 60)  # never enlarged
    K, c2w = _cameras(1, 1600, 1200)
    images, K_fit = fit_resolution(torch.rand(1, 3, 1200, 1600), K, 256)
    assert images.shape == (1, 3, 256, 341)
    corners = torch.tensor([[[0.0, 0.0, 5.0], [3.3, 2.4, 5.0], [-3.3, -2.4, 5.0]]])  # near the image corners
    world = (c2w[:, :3, :3] @ corners.transpose(1, 2)).transpose(1, 2) + c2w[:, None, :3, 3]
    uv, _ = project_points(world, K, c2w)
    uv_fit, _ = project_points(world, K_fit, c2w)
    torch.testing.assert_close(uv_fit / torch.tensor([341.0, 256.0]), uv / torch.tensor([1600.0, 1200.0]),
                               atol=2e-3, rtol=0)


def test_flythrough_cameras_follow_the_path_at_the_fitted_size():
    K, c2w = _cameras(2, 400, 300)
    path = two_view_path(c2w, K, 5, "linear")
    fly = flythrough_cameras(path, (300, 400), 128)
    assert (fly.height, fly.width) == (128, 171) and fly.input_indices == (0, 6)
    torch.testing.assert_close(fly.K[0, :2, :2].diagonal(), K[0, :2, :2].diagonal() * torch.tensor([171 / 400, 128 / 300]))
    torch.testing.assert_close(fly.c2w, path.c2w)


def test_crop_intrinsics_render_the_crop_of_the_full_view():
    truth = _truth()
    K, c2w = _cameras(2, 40, 24)
    full = render(truth, K, c2w, 40, 24)
    views = FitViews.build(full, K, c2w)
    batch = BatchSampler(views, 2, 16, 2, torch.Generator().manual_seed(0)).next(0)
    assert (batch.width, batch.height) == (16, 16) and (batch.corner >= 0).all()
    crop = render(truth, batch.intrinsics(K), c2w[batch.index], 16, 16)
    # equal up to culling at the image border (Gaussians centred far outside the crop)
    torch.testing.assert_close(crop, batch.targets(views, torch.device("cpu")), atol=5e-3, rtol=0)


def test_batches_alternate_observed_and_generated_views():
    K, c2w = _cameras(6, 16, 16)
    views = FitViews.build(torch.rand(6, 3, 16, 16), K, c2w, observed=[True, False, False, False, False, True])
    sampler = BatchSampler(views, 4, 64, 2, torch.Generator().manual_seed(0))
    kinds = [views.observed[sampler.next(step).index].tolist() for step in range(6)]
    assert kinds[0] == kinds[2] == [True, True] and all(k == [False] * 4 for k in kinds[1::2])


def test_polish_phase_renders_observed_views_only():
    K, c2w = _cameras(6, 16, 16)
    views = FitViews.build(torch.rand(6, 3, 16, 16), K, c2w, observed=[True, False, False, False, False, True])
    sampler = BatchSampler(views, 4, 64, 2, torch.Generator().manual_seed(0), polish_from=4)
    kinds = [bool(views.observed[sampler.next(step).index].all()) for step in range(8)]
    assert kinds == [True, False, True, False, True, True, True, True]


def test_generated_views_are_trusted_less_far_from_the_inputs():
    """CAT3D: weight exp(-b s^2), b annealed 0 -> falloff; inputs keep their weight, the base weight multiplies."""
    K, c2w = _cameras(5, 8, 8)
    observed = torch.tensor([True, False, False, False, True])
    views = FitViews.build(torch.rand(5, 3, 8, 8), K, c2w, observed, torch.tensor([1.0, 0.5, 0.5, 0.5, 1.0]))
    s = nearest_observed_distance(c2w, observed)
    assert s[0] == s[4] == 0 and s[2] > s[1] > 0
    torch.testing.assert_close(trust_weights(views, s, 0, 100, 3.0), views.weights)
    end = trust_weights(views, s, 99, 100, 3.0)
    torch.testing.assert_close(end, views.weights * torch.exp(-3.0 * s ** 2))
    assert end[0] == end[4] == 1.0 and end[2] < end[1] < 0.5
    torch.testing.assert_close(trust_weights(views, s, 99, 100, 0.0), views.weights)


def _plane_cloud(K: torch.Tensor, c2w: torch.Tensor, width: int, height: int):
    """The points of a fronto-parallel plane (z = 0 in the world) seen by each camera, with colours and sizes."""
    rays_z = unproject_depth(torch.ones(len(K), height, width), K, c2w) - c2w[:, None, None, :3, 3]
    depth = (-c2w[:, 2, 3])[:, None, None] / rays_z[..., 2]
    points = unproject_depth(depth, K, c2w).reshape(-1, 3)
    colors = (points[:, :2].sin() * 0.5 + 0.5).repeat(1, 2)[:, :3]
    sizes = (0.5 * depth / K[:, 0, 0, None, None]).reshape(-1)  # half a pixel, as cameo.geometry gives
    return types.SimpleNamespace(points=points, colors=colors, sizes=sizes)


def test_initialisation_from_a_cloud_keeps_positions_colours_and_budget():
    K, c2w = _cameras(2, 24, 16, spread=0.3)
    cloud = _plane_cloud(K, c2w, 24, 16)
    views = FitViews.build(torch.rand(2, 3, 16, 24), K, c2w)
    center, scale = _normalization(views.c2w)
    normed = _normalized(views, center, scale)
    cfg = FitConfig(max_gaussians=400, fill_fraction=0.1)
    init = initial_gaussians(normed, cloud, center, scale, cfg, torch.Generator().manual_seed(0))
    assert len(init.means) == 400
    surface = init.means[:360] / scale + center  # the cloud's part, back in the world frame
    assert (surface[:, 2].abs() < 1e-4).all()  # on the plane
    nearest = torch.cdist(surface, cloud.points).argmin(1)
    torch.testing.assert_close(init.colors[:360], cloud.colors[nearest])
    grow = math.sqrt(len(cloud.points) / 360)  # a subset covers the same surface with larger Gaussians
    torch.testing.assert_close(init.sizes[:360] / scale, cloud.sizes[nearest] * cfg.cloud_size * grow)
    fill = init.means[360:] / scale + center
    # nothing in the space the inputs saw to be empty (in front of the plane, beyond the 5 % depth margin)
    assert len(fill) == 40 and (fill[:, 2] > -0.2).all()


def test_non_square_inputs_and_square_generated_views_fit_together_in_the_world_frame():
    """A 40x24 input at its own size and 16x16 'generated' views, one fit: the input re-renders well at 40x24."""
    torch.set_num_threads(1)
    truth = _truth(seed=3)
    K_in, c2w_in = _cameras(2, 40, 24, spread=0.5)
    K_gen, c2w_gen = _cameras(4, 16, 16, spread=0.8)
    inputs = render(truth, K_in, c2w_in, 40, 24)
    generated = render(truth, K_gen, c2w_gen, 16, 16)
    images = [inputs[0], *generated, inputs[1]]
    K = torch.cat([K_in[:1], K_gen, K_in[1:]])
    c2w = torch.cat([c2w_in[:1], c2w_gen, c2w_in[1:]])
    observed = [True, False, False, False, False, True]
    shift = torch.tensor([5.0, -2.0, 10.0])  # a world frame far from the origin: the result must come back in it
    c2w_far = c2w.clone()
    c2w_far[:, :3, 3] += shift
    cfg = FitConfig(iterations=60, num_points=600, random_background=False, patch=32, seed=0)
    splats = fit_gaussians(images, K, c2w_far, cfg, show_progress=False, observed=observed)
    assert splats.means.mean(0).sub(shift).norm() < 1.0
    pred = render(splats, K_in, c2w_far[[0, 5]], 40, 24)
    assert pred.shape == (2, 3, 24, 40) and _psnr(pred, inputs) > 22.0
    with pytest.raises(ValueError, match="observed"):
        fit_gaussians(images, K, c2w, cfg, show_progress=False, observed=[True, False])



def test_fill_stands_in_for_what_a_sparse_cloud_leaves_uncovered():
    """A cloud explaining a small patch of the inputs gets a fill sized by the uncovered share, and cells where no
    surface point landed do not count as seen-empty space (before: a 2 % cloud kept 2 fill points of 130)."""
    from recon import initialise

    K, c2w = _cameras(2, 24, 16, spread=0.3)
    full = _plane_cloud(K, c2w, 24, 16)
    views = FitViews.build(torch.rand(2, 3, 16, 24), K, c2w)
    center, scale = _normalization(views.c2w)
    normed = _normalized(views, center, scale)
    assert initialise.observed_coverage((full.points - center) * scale, normed) > 0.9
    corner = full.points[:, 0] < full.points[:, 0].quantile(0.05)  # a thin strip of the plane
    sparse = types.SimpleNamespace(points=full.points[corner], colors=full.colors[corner], sizes=full.sizes[corner])
    coverage = initialise.observed_coverage((sparse.points - center) * scale, normed)
    assert coverage < 0.2
    cfg = FitConfig(max_gaussians=2000, fill_fraction=0.1, fill_max=500)
    init = initial_gaussians(normed, sparse, center, scale, cfg, torch.Generator().manual_seed(0))
    assert len(init.means) - len(sparse.points) >= int((1 - coverage) * 500) * 0.9


def test_without_a_cloud_half_the_start_lies_on_the_inputs_pixel_rays_in_their_colours():
    """No depth (a wide pair stereo cannot match): the start puts Gaussians on the observed views' pixels at the
    look-at depth, coloured like those pixels, so the inputs re-render from the first step; the rest is random."""
    K, c2w = _cameras(3, 24, 16, spread=0.3)
    images = torch.rand(3, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    views = FitViews.build(images, K, c2w, observed=[True, False, True])
    center, scale = _normalization(views.c2w)
    normed = _normalized(views, center, scale)
    cfg = FitConfig(num_points=400, max_gaussians=400, ray_fraction=0.5)
    init = initial_gaussians(normed, None, center, scale, cfg, torch.Generator().manual_seed(0))
    assert len(init.means) == 400
    for view, rays in ((0, slice(0, 100)), (2, slice(100, 200))):  # split over the observed views only
        uv, z = project_points(init.means[rays] / scale + center, K[view], c2w[view])
        torch.testing.assert_close(z, torch.full_like(z, math.hypot(3.0, 0.5)))  # the cameras face the origin
        col, row = uv.floor().long().unbind(-1)
        assert ((uv - uv.floor() - 0.5).abs() < 1e-3).all()  # on pixel centres
        torch.testing.assert_close(init.colors[rays], images[view][:, row, col].T)
    assert (init.opacities[:200] == cfg.cloud_opacity).all() and (init.opacities[200:] == cfg.init_opacity).all()


def test_reconstruction_options_reach_the_fit_config():
    cfg = fit_config(ReconOptions(fit_patch=200, fit_iterations=7, fit_max_gaussians=1234, seed=3))
    assert (cfg.patch, cfg.iterations, cfg.max_gaussians, cfg.seed) == (200, 7, 1234, 3)
    assert fit_config(ReconOptions()).patch == FitConfig.patch
