"""Forward+backward speed of the CPU rasteriser (numba tile kernels) against a straightforward torch compositor.

The baseline is the plain approach (ANCHORS.md): every pixel x Gaussian pair inside each radius box, one argsort
by (pixel, depth), alpha and transmittance with ordinary autograd. Both use gsplat's torch projection and render
the same random scene; the table reports iterations per second (one iteration = render 4 views + backward) and the
largest difference between the two renders. They differ where a pixel is covered deeply: the tile kernels follow
gsplat and stop a pixel before the Gaussian that would bring its transmittance to <= 1e-4 (dropping that
Gaussian's share), the baseline composites every pair (0.00002 with 50 Gaussians, 0.014 with 20000).

    python benchmarks/bench_rasterize.py [--gaussians 20000] [--sizes 64 128] [--iters 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from cameo.cameras import invert_pose, look_at
from recon.rasterize import covariances, project_gaussians, rasterization


def random_scene(n: int, n_cams: int, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` Gaussians in a unit cube (scales 0.005-0.03), ``n_cams`` cameras on an arc 2.5 units away."""
    g = torch.Generator().manual_seed(seed)
    angles = torch.linspace(-0.6, 0.6, n_cams)
    eyes = torch.stack([2.5 * torch.sin(angles), -0.4 * torch.ones(n_cams), -2.5 * torch.cos(angles)], -1)
    c2w = look_at(eyes, torch.zeros(n_cams, 3), torch.tensor([0.0, -1.0, 0.0]))
    f = 1.2 * size
    K = torch.tensor([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]]).expand(n_cams, 3, 3).clone()
    return {
        "means": torch.rand(n, 3, generator=g) - 0.5,
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.exp(torch.empty(n, 3).uniform_(-5.3, -3.5, generator=g)),
        "opacities": torch.rand(n, generator=g) * 0.9 + 0.05,
        "colors": torch.rand(n, 3, generator=g),
        "viewmats": invert_pose(c2w),
        "Ks": K,
    }


def baseline_rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height):
    """The straightforward compositor: radius-box pairs, argsort by (pixel, depth), autograd everywhere."""
    C = viewmats.shape[0]
    radii, means2d, depths, conics, _ = project_gaussians(means, covariances(quats, scales), viewmats, Ks, width, height)
    with torch.no_grad():
        cam, gid = torch.nonzero((radii > 0).all(-1), as_tuple=True)
        m, r = means2d[cam, gid], radii[cam, gid].float()
        lo = torch.ceil(m - r - 0.5).clamp_min(0).long()
        hi = torch.minimum(torch.floor(m + r - 0.5).long(), torch.tensor([width - 1, height - 1]))
        span = (hi - lo + 1).clamp_min(0)
        counts = span[:, 0] * span[:, 1]
        owner = torch.repeat_interleave(torch.arange(len(gid)), counts)
        local = torch.arange(owner.numel()) - (torch.cumsum(counts, 0) - counts)[owner]
        px = lo[owner, 0] + local % span[owner, 0]
        py = lo[owner, 1] + local // span[owner, 0]
        pix = cam[owner] * height * width + py * width + px
        depth_rank = torch.argsort(torch.argsort(depths[cam, gid]))[owner]
        order = torch.argsort(pix * (len(gid) + 1) + depth_rank)
        owner, pix, px, py = owner[order], pix[order], px[order], py[order]
    c, g = cam[owner], gid[owner]
    d = means2d[c, g] - torch.stack([px, py], -1) - 0.5
    con = conics[c, g]
    sigma = 0.5 * (con[:, 0] * d[:, 0] ** 2 + con[:, 2] * d[:, 1] ** 2) + con[:, 1] * d[:, 0] * d[:, 1]
    alpha = torch.clamp_max(opacities[g] * torch.exp(-sigma), 0.999)
    alpha = torch.where((sigma >= 0) & (alpha >= 1 / 255), alpha, torch.zeros_like(alpha))
    log1m = torch.log1p(-alpha)
    incl = torch.cumsum(log1m, 0)
    first = torch.unique_consecutive(pix, return_inverse=True, return_counts=True)
    seg_start = (torch.cumsum(first[2], 0) - first[2])[first[1]]
    trans = torch.exp(incl - log1m - (incl - log1m)[seg_start])
    w = alpha * trans
    out = torch.zeros(C * height * width, 3).index_add(0, pix, w[:, None] * colors[g])
    acc = torch.zeros(C * height * width).index_add(0, pix, w)
    return out.reshape(C, height, width, 3), acc.reshape(C, height, width, 1), None


def time_step(fn, scene: dict, size: int, iters: int) -> tuple[float, torch.Tensor]:
    """Seconds per forward+backward (best of ``iters`` after one warm-up) and the rendered image."""
    best = float("inf")
    for i in range(iters + 1):
        params = {k: v.clone().requires_grad_(k not in ("viewmats", "Ks")) for k, v in scene.items()}
        t0 = time.perf_counter()
        img, alpha, _ = fn(**params, width=size, height=size)
        (img.sum() + alpha.sum()).backward()
        dt = time.perf_counter() - t0
        if i:
            best = min(best, dt)
    return best, img.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaussians", type=int, default=20_000)
    parser.add_argument("--views", type=int, default=4, help="cameras rendered per step")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="square image sizes (pixels)")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations (best is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.gaussians} Gaussians, {args.views} views per step, forward+backward, {args.threads} threads")
    print("| size | ours it/s | baseline it/s | speed-up | max abs difference |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        scene = random_scene(args.gaussians, args.views, size)
        t_ours, img_ours = time_step(rasterization, scene, size, args.iters)
        t_base, img_base = time_step(baseline_rasterize, scene, size, args.iters)
        diff = (img_ours - img_base).abs().max().item()
        print(f"| {size}x{size} | {1 / t_ours:.2f} | {1 / t_base:.2f} | {t_base / t_ours:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
