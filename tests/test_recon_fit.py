"""Gaussian fitting, PLY round trip and rendering on tiny synthetic scenes."""

from __future__ import annotations

import math

import pytest
import torch
from plyfile import PlyData

from cameo.cameras import look_at
from recon.fit import FitConfig, fit_gaussians
from recon.splats import Splats, export_ply, load_ply, render


def _cameras(n: int, size: int, radius: float = 3.0):
    angles = torch.linspace(-0.8, 0.8, n)
    eyes = torch.stack([radius * torch.sin(angles), -0.5 * torch.ones(n), -radius * torch.cos(angles)], -1)
    c2w = look_at(eyes, torch.zeros(n, 3), torch.tensor([0.0, -1.0, 0.0]))
    K = torch.tensor([[1.3 * size, 0.0, size / 2], [0.0, 1.3 * size, size / 2], [0.0, 0.0, 1.0]])
    return K.expand(n, 3, 3).clone(), c2w


def _ground_truth(n: int = 60, seed: int = 0) -> Splats:
    g = torch.Generator().manual_seed(seed)
    return Splats(
        means=(torch.rand(n, 3, generator=g) - 0.5) * 1.2, quats=torch.randn(n, 4, generator=g),
        scales=torch.log(torch.rand(n, 3, generator=g) * 0.12 + 0.04), opacities=torch.full((n,), 2.0),
        sh0=(torch.rand(n, 1, 3, generator=g) - 0.5) / 0.2821, shN=torch.randn(n, 3, 3, generator=g) * 0.1,
    )


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(torch.mean((a - b) ** 2).item())


def test_recon_ply_round_trip_renders_the_same(tmp_path):
    splats = _ground_truth()
    K, c2w = _cameras(2, 24)
    path = export_ply(splats, tmp_path / "out" / "scene.ply")
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    ply = PlyData.read(str(path))
    names = set(ply["vertex"].data.dtype.names)
    assert {"x", "f_dc_0", "f_rest_8", "opacity", "scale_2", "rot_3"} <= names and ply["vertex"].count == 60
    loaded = load_ply(path)
    assert loaded.sh_degree == 1
    torch.testing.assert_close(loaded.shN, splats.shN)
    torch.testing.assert_close(render(loaded, K, c2w, 24, 24), render(splats, K, c2w, 24, 24), atol=1e-6, rtol=0)


def test_recon_load_ply_names_missing_field(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
                   "end_header\n0 0 0\n")
    with pytest.raises(ValueError, match="bad.ply.*opacity"):
        load_ply(bad)


def test_recon_fit_reconstructs_and_holds_out(tmp_path):
    torch.set_num_threads(1)  # small ops: one thread is faster on a shared machine
    truth = _ground_truth()
    K, c2w = _cameras(9, 24)
    images = render(truth, K, c2w, 24, 24)
    train = [i for i in range(9) if i != 4]
    cfg = FitConfig(iterations=60, num_points=800, sh_degree=1, random_background=False, seed=1)
    calls = []
    splats = fit_gaussians(images[train], K[train], c2w[train], cfg, progress=lambda s, f: calls.append((s, f)),
                           show_progress=False)
    assert calls and calls[-1] == ("fit", 1.0)
    pred = render(splats, K, c2w, 24, 24)
    init_like = torch.full_like(images, 0.0)
    assert _psnr(pred[train], images[train]) > 24.0
    assert _psnr(pred[4], images[4]) > 20.0 > _psnr(init_like[4], images[4])


def test_recon_fit_is_deterministic_and_scale_invariant():
    torch.set_num_threads(1)  # small ops: one thread is faster on a shared machine
    truth = _ground_truth(seed=2)
    K, c2w = _cameras(4, 24)
    images = render(truth, K, c2w, 24, 24)
    cfg = FitConfig(iterations=20, num_points=300, views_per_step=2, seed=3)
    a = fit_gaussians(images, K, c2w, cfg, show_progress=False)
    b = fit_gaussians(images, K, c2w, cfg, show_progress=False)
    torch.testing.assert_close(a.means, b.means, atol=0, rtol=0)
    # same scene in another world frame: scaled by 250 and shifted; results must match after undoing it
    s, t = 250.0, torch.tensor([10.0, -40.0, 300.0])
    c2w_big = c2w.clone()
    c2w_big[:, :3, 3] = c2w[:, :3, 3] * s + t
    big = fit_gaussians(images, K, c2w_big, cfg, show_progress=False)
    torch.testing.assert_close((big.means - t) / s, a.means, atol=2e-3, rtol=0)
    torch.testing.assert_close(big.scales - math.log(s), a.scales, atol=1e-1, rtol=0)  # float rounding grows
    # a densification decision flipped by rounding may move a Gaussian or two: compare the images as a whole
    diff = (render(big, K, c2w_big, 24, 24) - render(a, K, c2w, 24, 24)).abs()
    assert float(diff.mean()) < 1e-3 and float(diff.max()) < 5e-2, (float(diff.mean()), float(diff.max()))


def test_view_weights_scale_each_views_pull_on_the_splats():
    """A view weighted 0 has no say (its image can be anything); weighted 1 it has; all-1 weights = the plain loss."""
    torch.set_num_threads(1)  # small ops: one thread is faster on a shared machine
    truth = _ground_truth(seed=4)
    K, c2w = _cameras(3, 16)
    images = render(truth, K, c2w, 16, 16)
    other = images.clone()
    other[2] = 1.0  # a wrong (all-white) image for view 2
    cfg = FitConfig(iterations=8, num_points=200, views_per_step=2, random_background=False, seed=5)

    def fit(imgs: torch.Tensor, weights: torch.Tensor | None) -> Splats:
        return fit_gaussians(imgs, K, c2w, cfg, show_progress=False, view_weights=weights)

    muted = torch.tensor([1.0, 1.0, 0.0])
    torch.testing.assert_close(fit(images, muted).sh0, fit(other, muted).sh0, atol=0, rtol=0)
    assert not torch.equal(fit(images, torch.ones(3)).sh0, fit(other, torch.ones(3)).sh0)
    torch.testing.assert_close(fit(other, torch.ones(3)).means, fit(other, None).means, atol=0, rtol=0)
    for bad in (torch.ones(4), torch.tensor([1, -1, 1.]), torch.zeros(3), torch.tensor([1, float("nan"), 1])):
        with pytest.raises(ValueError, match="view_weights"):
            fit(images, bad)


def test_fit_with_lpips_runs_on_images_smaller_than_alexnet_needs():
    from cameo.eval.lpips import lpips_weights_found

    if not lpips_weights_found("alex"):
        pytest.skip("LPIPS weights not installed (run `cameo-eval install-lpips`)")
    K, c2w = _cameras(2, 16)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cfg = FitConfig(iterations=2, num_points=50, views_per_step=2, lpips_weight=0.1)
    splats = fit_gaussians(images, K, c2w, cfg, show_progress=False)
    assert torch.isfinite(splats.means).all() and len(splats) > 0
