"""Fit 3D Gaussians to posed images (3DGS recipe of gsplat's simple_trainer, scaled to short CPU runs).

Loss ``(1 - w_ssim) L1 + w_ssim (1 - SSIM)`` (+ ``w_lpips`` LPIPS, as CAT3D/CAMEO do for generated views);
densification with gsplat's :class:`~gsplat.DefaultStrategy`; learning rates of simple_trainer (means decayed to
1 % over the run, all scaled by sqrt(views per step)). Internally the scene is translated and scaled so the
cameras lie within distance 1 of their centroid; a similarity without rotation keeps quaternions and SH valid, and
the result is mapped back to the input frame and units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from gsplat import DefaultStrategy
from pytorch_msssim import ssim
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from cameo.cameras import invert_pose, project_points
from recon.rasterize import rasterization
from recon.splats import SH_C0, Splats

ProgressCallback = Callable[[str, float], None]


@dataclass
class FitConfig:
    """Fitting hyper-parameters. Refinement iterations default to simple_trainer's fractions of the run."""

    iterations: int = 1000
    views_per_step: int = 4
    num_points: int = 20_000  # random initialisation (ignored when init points are given)
    sh_degree: int = 1
    sh_increase_every: int | None = None  # default: iterations // (2 * (sh_degree + 1))
    ssim_weight: float = 0.2
    lpips_weight: float = 0.0  # 0 disables LPIPS (no weights needed)
    # AlexNet: ~20x fewer FLOPs than VGG, so the perceptual term adds little to a CPU iteration
    lpips_net: str = "alex"
    random_background: bool = True
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # used when random_background is False
    init_opacity: float = 0.1
    init_scale: float = 0.5  # initial size = this x mean distance to the 3 nearest initial points
    refine_start: int | None = None  # default: 5 % of iterations
    refine_stop: int | None = None  # default: 50 %
    refine_every: int | None = None  # default: 2.5 %, at least 25 steps
    grow_grad2d: float = 2e-4
    max_pairs: int = 1 << 22  # CPU rasteriser memory bound
    seed: int = 0


def fit_gaussians(
    images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, config: FitConfig | None = None,
    progress: ProgressCallback | None = None, init_points: torch.Tensor | None = None,
    init_colors: torch.Tensor | None = None, show_progress: bool = True, view_weights: torch.Tensor | None = None,
) -> Splats:
    """Optimise Gaussians so that they render ``images [V,3,H,W]`` (in [0, 1]) from cameras ``K``, ``c2w``.

    ``init_points [P,3]`` (world, e.g. from :func:`cameo.cameras.unproject_depth`) with optional
    ``init_colors [P,3]`` replace the random initialisation. ``view_weights [V]`` (>= 0, default all 1) scale each
    view's loss, e.g. to trust observed views more than generated ones. ``progress(stage, fraction)`` is called as work
    advances. Deterministic for a given ``config.seed`` (on CPU). Returns the splats in the input world frame.
    """
    cfg = config or FitConfig()
    _check_inputs(images, K, c2w)
    weights = _check_weights(view_weights, images.shape[0])
    # DefaultStrategy's split samples from the global RNG: seed it without disturbing the caller's stream
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return _fit(images, K, c2w, cfg, progress, init_points, init_colors, show_progress, weights)


def _fit(
    images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, cfg: FitConfig, progress: ProgressCallback | None,
    init_points: torch.Tensor | None, init_colors: torch.Tensor | None, show_progress: bool, weights: torch.Tensor,
) -> Splats:
    device = images.device
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    V, _, H, W = images.shape
    images, K, c2w = images.float(), K.float().to(device), c2w.float().to(device)
    center, scale = _normalization(c2w)
    c2w_n = c2w.clone()
    c2w_n[:, :3, 3] = (c2w[:, :3, 3] - center) * scale
    if init_points is None:
        points = _random_points(c2w_n, K, W, H, cfg.num_points, gen)
        colors = _sample_colors(points, images, K, c2w_n, weights)
    else:
        points = (init_points.float().to(device) - center) * scale
        colors = init_colors.float().to(device) if init_colors is not None else \
            _sample_colors(points, images, K, c2w_n, weights)
    params = _init_params(points, colors, cfg, gen)
    scene_scale = 1.1  # simple_trainer: camera extent * 1.1, and cameras are within distance 1 here
    optimizers = _optimizers(params, scene_scale, cfg.views_per_step)
    means_decay = torch.optim.lr_scheduler.ExponentialLR(optimizers["means"], 0.01 ** (1.0 / max(cfg.iterations, 1)))
    strategy = DefaultStrategy(
        refine_start_iter=cfg.refine_start if cfg.refine_start is not None else cfg.iterations // 20,
        refine_stop_iter=cfg.refine_stop if cfg.refine_stop is not None else cfg.iterations // 2,
        refine_every=cfg.refine_every if cfg.refine_every is not None else max(25, cfg.iterations // 40),
        grow_grad2d=cfg.grow_grad2d,
    )
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=scene_scale)
    lpips = _load_lpips(cfg, device)
    sh_every = cfg.sh_increase_every or max(1, cfg.iterations // (2 * (cfg.sh_degree + 1)))
    viewmats = invert_pose(c2w_n)
    order = torch.zeros(0, dtype=torch.long)
    bar = tqdm(range(cfg.iterations), desc="fitting Gaussians", disable=not show_progress, dynamic_ncols=True)
    for step in bar:
        if order.numel() < cfg.views_per_step:  # cycle through shuffled views
            order = torch.cat([order, torch.randperm(V, generator=gen)])
        idx, order = order[: cfg.views_per_step], order[cfg.views_per_step:]
        n = idx.numel()
        bg = torch.rand(n, 3, generator=gen).to(device) if cfg.random_background else \
            torch.tensor(cfg.background, device=device).expand(n, 3)
        render, _, info = rasterization(
            params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
            torch.cat([params["sh0"], params["shN"]], 1), viewmats[idx.to(device)], K[idx.to(device)], W, H,
            sh_degree=min(step // sh_every, cfg.sh_degree), backgrounds=bg, max_pairs=cfg.max_pairs,
        )
        pred = render.permute(0, 3, 1, 2)
        target = images[idx.to(device)]
        per_view = (1 - cfg.ssim_weight) * (pred - target).abs().mean((1, 2, 3)) + \
            cfg.ssim_weight * (1 - ssim(pred, target, data_range=1.0, size_average=False))
        if lpips is not None:
            per_view = per_view + cfg.lpips_weight * _perceptual(lpips, pred.clamp(0, 1), target)
        # mean over the batch, not normalised by the weights: a batch of down-weighted views moves the splats less
        loss = (weights[idx].to(device) * per_view).mean()
        strategy.step_pre_backward(params, optimizers, state, step, info)
        loss.backward()
        strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        means_decay.step()
        if step % 10 == 0 or step == cfg.iterations - 1:
            psnr = -10 * math.log10(max(F.mse_loss(pred.detach(), target).item(), 1e-10))
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr:.2f}", n=len(params["means"]))
            if progress is not None:
                progress("fit", (step + 1) / cfg.iterations)
    bar.close()
    return _to_world(params, center, scale)


def _check_inputs(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [V,3,H,W], got {tuple(images.shape)}")
    V = images.shape[0]
    if K.shape != (V, 3, 3) or c2w.shape != (V, 4, 4):
        raise ValueError(f"K must be [{V},3,3] and c2w [{V},4,4], got {tuple(K.shape)} and {tuple(c2w.shape)}")
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError("images must be finite and in [0, 1]")


def _check_weights(view_weights: torch.Tensor | None, V: int) -> torch.Tensor:
    """``view_weights`` as a float ``[V]`` CPU tensor (all 1 when None)."""
    if view_weights is None:
        return torch.ones(V)
    w = torch.as_tensor(view_weights, dtype=torch.float32).cpu()
    if w.shape != (V,) or not torch.isfinite(w).all() or (w < 0).any() or not (w > 0).any():
        raise ValueError(f"view_weights must be [{V}] finite, >= 0 and not all 0, got {tuple(w.shape)}")
    return w


def _normalization(c2w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Centre and scale so camera centres lie within distance 1 of their centroid (1 if they coincide)."""
    centers = c2w[:, :3, 3]
    center = centers.mean(0)
    radius = (centers - center).norm(dim=-1).max().item()
    return center, (1.0 / radius if radius > 1e-8 else 1.0)


def look_at_point(c2w: torch.Tensor) -> torch.Tensor:
    """Least-squares point closest to all optical axes (falls back to 1 unit ahead of the mean camera)."""
    o, d = c2w[:, :3, 3], c2w[:, :3, 2]
    proj = torch.eye(3, dtype=c2w.dtype, device=c2w.device) - d[:, :, None] * d[:, None, :]
    A, b = proj.sum(0), (proj @ o[:, :, None]).sum(0)
    if torch.linalg.matrix_rank(A) < 3 or torch.linalg.cond(A) > 1e6:
        return o.mean(0) + F.normalize(d.mean(0), dim=0)
    return torch.linalg.solve(A, b)[:, 0]


def _random_points(c2w: torch.Tensor, K: torch.Tensor, W: int, H: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` uniform points in a ball around the cameras' look-at point, kept if any camera sees them."""
    target = look_at_point(c2w)
    radius = 0.5 * (c2w[:, :3, 3] - target).norm(dim=-1).median().clamp_min(1e-3)
    kept = []
    total = 0
    for _ in range(20):  # rejection sampling; a few rounds suffice when the cameras face the target
        d = torch.randn(4 * n, 3, generator=gen)
        r = torch.rand(4 * n, 1, generator=gen) ** (1 / 3)
        pts = (target.cpu() + radius.cpu() * r * F.normalize(d, dim=-1)).to(c2w)
        uv, z = _project_all(pts, K, c2w)
        seen = ((z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H)).any(0)
        kept.append(pts[seen])
        total += int(seen.sum())
        if total >= n:
            break
    pts = torch.cat(kept)[:n]
    if pts.shape[0] == 0:
        raise ValueError("no random initial point is visible in any camera; pass init_points")
    return pts


def _project_all(points: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ``[P,3]`` into every camera: ``uv [V,P,2]``, ``z [V,P]``."""
    V = c2w.shape[0]
    return project_points(points.expand(V, -1, -1), K, c2w)


def _sample_colors(
    points: torch.Tensor, images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, weights: torch.Tensor,
) -> torch.Tensor:
    """Mean image colour at each point's projection over the views that see it, weighted by the view weights
    (grey where no view of weight > 0 sees it)."""
    V, _, H, W = images.shape
    uv, z = _project_all(points, K, c2w)
    grid = torch.stack([uv[..., 0] / W * 2 - 1, uv[..., 1] / H * 2 - 1], -1)[:, :, None]  # [V,P,1,2]
    rgb = F.grid_sample(images, grid, align_corners=False).squeeze(-1).permute(0, 2, 1)  # [V,P,3]
    seen = ((z > 0) & (grid.abs() <= 1).all(-1).squeeze(-1)).float()[..., None] * weights.to(rgb)[:, None, None]
    total = seen.sum(0)
    return torch.where(total > 0, (rgb * seen).sum(0) / total.clamp_min(1e-12), torch.full_like(rgb[0], 0.5))


def _init_params(points: torch.Tensor, colors: torch.Tensor, cfg: FitConfig, gen: torch.Generator):
    """simple_trainer's initialisation: scale from the 3 nearest neighbours, random quaternions.

    ``init_scale`` < 1 (simple_trainer uses 1) keeps the first CPU iterations cheap: pair count grows with area.
    """
    n = points.shape[0]
    dist, _ = cKDTree(points.cpu().numpy()).query(points.cpu().numpy(), k=min(4, n))
    dist = torch.as_tensor(dist, dtype=points.dtype).reshape(n, -1)[:, 1:]
    avg = cfg.init_scale * (dist.mean(-1).clamp_min(1e-6) if dist.shape[1] else torch.full((n,), 0.02))
    sh = torch.zeros(n, (cfg.sh_degree + 1) ** 2, 3)
    sh[:, 0] = (colors.cpu() - 0.5) / SH_C0
    dev = points.device
    return torch.nn.ParameterDict({
        "means": torch.nn.Parameter(points.clone()),
        "scales": torch.nn.Parameter(torch.log(avg)[:, None].repeat(1, 3).to(dev)),
        "quats": torch.nn.Parameter(torch.rand(n, 4, generator=gen).to(dev)),
        "opacities": torch.nn.Parameter(torch.logit(torch.full((n,), cfg.init_opacity)).to(dev)),
        "sh0": torch.nn.Parameter(sh[:, :1].to(dev)),
        "shN": torch.nn.Parameter(sh[:, 1:].to(dev)),
    })


def _optimizers(params: torch.nn.ParameterDict, scene_scale: float, batch: int) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter (DefaultStrategy needs that), simple_trainer's rates and sqrt(batch) scaling."""
    lrs = {"means": 1.6e-4 * scene_scale, "scales": 5e-3, "quats": 1e-3, "opacities": 5e-2, "sh0": 2.5e-3,
           "shN": 2.5e-3 / 20}
    s = math.sqrt(batch)
    return {k: torch.optim.Adam([{"params": params[k], "lr": lr * s, "name": k}], eps=1e-15 / s,
                                betas=(1 - batch * (1 - 0.9), 1 - batch * (1 - 0.999)))
            for k, lr in lrs.items()}


LPIPS_MIN_SIZE = 32  # AlexNet's strides and pools leave no pixel for its last layers below ~31 px


def _perceptual(lpips, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LPIPS ``[N]`` of ``[N, 3, H, W]`` images; tiny images are upsampled (bilinear) to ``LPIPS_MIN_SIZE`` first."""
    if min(pred.shape[-2:]) < LPIPS_MIN_SIZE:
        h, w = pred.shape[-2:]
        size = (math.ceil(h * LPIPS_MIN_SIZE / min(h, w)), math.ceil(w * LPIPS_MIN_SIZE / min(h, w)))
        pred, target = (F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in (pred, target))
    return lpips(pred, target)


def _load_lpips(cfg: FitConfig, device: torch.device):
    if cfg.lpips_weight <= 0:
        return None
    from cameo.eval.lpips import load_lpips

    return load_lpips(cfg.lpips_net, device=device)


def _to_world(params: torch.nn.ParameterDict, center: torch.Tensor, scale: float) -> Splats:
    """Undo the internal normalisation (translation + uniform scale): means and log-scales change."""
    with torch.no_grad():
        return Splats(
            means=params["means"] / scale + center,
            quats=params["quats"].detach().clone(),
            scales=params["scales"] - math.log(scale),
            opacities=params["opacities"].detach().clone(),
            sh0=params["sh0"].detach().clone(),
            shN=params["shN"].detach().clone(),
        )
