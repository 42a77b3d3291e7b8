"""The CPU rasteriser against a brute-force dense reference (every pixel x every Gaussian), values and gradients."""

from __future__ import annotations

import pytest
import torch

from cameo.cameras import invert_pose, look_at
from recon.rasterize import rasterization


def _scene(n: int, n_cams: int, width: int, height: int, seed: int = 0, opaque: bool = False):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 1.2
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.rand(n, 3, generator=g) * 2.0 - 4.5)
    opac = torch.rand(n, generator=g) * (0.5 if not opaque else 0.0) + (0.5 if opaque else 0.02)
    if opaque:
        opac[: n // 2] = 1.0  # exercises the 0.999 clamp and early termination
    colors = torch.rand(n, 3, generator=g)
    angles = torch.linspace(0.0, 1.0, n_cams)
    eyes = torch.stack([2.5 * torch.sin(angles), -0.3 * torch.ones(n_cams), -2.5 * torch.cos(angles)], -1)
    c2w = look_at(eyes, torch.zeros(n_cams, 3), torch.tensor([0.0, -1.0, 0.0]))
    K = torch.tensor([[1.1 * width, 0.0, width / 2 + 0.3], [0.0, 1.1 * width, height / 2 - 0.7], [0.0, 0.0, 1.0]])
    return means, quats, scales, opac, colors, invert_pose(c2w), K.expand(n_cams, 3, 3).clone()


def _dense_reference(meta, colors_c, width, height, bg=None):
    """Every pixel against every projected Gaussian, depth-sorted, gsplat's alpha rule; plain autograd."""
    C = meta["means2d"].shape[0]
    v, u = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    pix = torch.stack([u, v], -1).reshape(-1, 2)
    renders, alphas = [], []
    for c in range(C):
        valid = (meta["radii"][c] > 0).all(-1)
        order = torch.argsort(meta["depths"][c][valid].detach())
        m2d = meta["means2d"][c][valid][order]
        con = meta["conics"][c][valid][order]
        opa = meta["opacities"][c][valid][order]
        col = colors_c[c][valid][order]
        d = m2d[None] - pix[:, None]
        sigma = 0.5 * (con[:, 0] * d[..., 0] ** 2 + con[:, 2] * d[..., 1] ** 2) + con[:, 1] * d[..., 0] * d[..., 1]
        alpha = torch.clamp_max(opa * torch.exp(-sigma), 0.999)
        alpha = torch.where((sigma >= 0) & (alpha >= 1 / 255), alpha, torch.zeros_like(alpha))
        keep = torch.cumprod(1 - alpha.detach(), 1) > 1e-4
        alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], 1), 1)
        w = alpha * trans
        t_final = torch.prod(1 - alpha, 1)
        img = w @ col
        if bg is not None:
            img = img + t_final[:, None] * bg[c]
        renders.append(img.reshape(height, width, -1))
        alphas.append((1 - t_final).reshape(height, width, 1))
    return torch.stack(renders), torch.stack(alphas)


@pytest.mark.parametrize("opaque", [False, True])
def test_recon_rasterize_matches_dense_reference(opaque):
    W, H = 29, 23
    means, quats, scales, opac, colors, viewmats, Ks = _scene(60, 2, W, H, opaque=opaque)
    params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    bg = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]])
    img, alpha, meta = rasterization(*params, viewmats, Ks, W, H, backgrounds=bg)
    assert img.shape == (2, H, W, 3) and alpha.shape == (2, H, W, 1) and meta["radii"].shape == (2, 60, 2)
    ref_params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    _, _, ref_meta = rasterization(*ref_params, viewmats, Ks, W, H)
    ref_img, ref_alpha = _dense_reference(ref_meta, ref_params[4][None].expand(2, -1, -1), W, H, bg)
    torch.testing.assert_close(img, ref_img, atol=1e-5, rtol=0)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-5, rtol=0)
    weights = torch.rand(2, H, W, 4, generator=torch.Generator().manual_seed(1))
    ((img * weights[..., :3]).sum() + (alpha * weights[..., 3:]).sum()).backward()
    ((ref_img * weights[..., :3]).sum() + (ref_alpha * weights[..., 3:]).sum()).backward()
    for name, p, q in zip(["means", "quats", "scales", "opacities", "colors"], params, ref_params):
        scale = q.grad.abs().max().clamp_min(1e-6)
        torch.testing.assert_close(p.grad / scale, q.grad / scale, atol=2e-5, rtol=0, msg=name)


def test_recon_rasterize_sh_and_meta_for_default_strategy():
    W, H = 24, 18
    means, quats, scales, opac, colors, viewmats, Ks = _scene(40, 3, W, H, seed=3)
    sh = torch.randn(40, 4, 3, generator=torch.Generator().manual_seed(2)) * 0.3
    means.requires_grad_(True)
    img, _, meta = rasterization(means, quats, scales, opac, sh, viewmats, Ks, W, H, sh_degree=1)
    meta["means2d"].retain_grad()
    img.sum().backward()
    assert meta["means2d"].grad is not None and meta["means2d"].grad.abs().sum() > 0
    assert meta["radii"].dtype == torch.int32 and (meta["radii"] > 0).any()
    assert meta["width"] == W and meta["height"] == H and meta["n_cameras"] == 3
    # SH degree 0 of the same coefficients is a view-independent colour: (sh0 * C0 + 0.5)
    img0, _, _ = rasterization(means.detach(), quats, scales, opac, sh, viewmats, Ks, W, H, sh_degree=0)
    img_rgb, _, _ = rasterization(
        means.detach(), quats, scales, opac, (sh[:, 0] * 0.28209479177387814 + 0.5).clamp_min(0), viewmats, Ks, W, H
    )
    torch.testing.assert_close(img0, img_rgb, atol=1e-6, rtol=0)


def test_recon_rasterize_cameras_together_equal_cameras_alone():
    """Cameras share one flat tile list; each must render as if alone (64x48: several tiles, partial edge tiles)."""
    W, H = 64, 40
    means, quats, scales, opac, colors, viewmats, Ks = _scene(300, 3, W, H, seed=5)
    together, alpha, _ = rasterization(means, quats, scales, opac, colors, viewmats, Ks, W, H)
    for c in range(3):
        alone, alpha_c, _ = rasterization(means, quats, scales, opac, colors, viewmats[c:c + 1], Ks[c:c + 1], W, H)
        torch.testing.assert_close(together[c:c + 1], alone, atol=1e-6, rtol=0)
        torch.testing.assert_close(alpha[c:c + 1], alpha_c, atol=1e-6, rtol=0)
    assert alpha.mean() > 0.05  # the scene covers a good part of the views
