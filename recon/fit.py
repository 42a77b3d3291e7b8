"""Fit 3D Gaussians to posed views of any size (3DGS recipe of gsplat's simple_trainer, scaled to short CPU runs).

Views are a :class:`recon.views.FitViews`: observed inputs at their own resolution, generated views at the model's,
with CAT3D's trust schedule for the generated ones. Gaussians start from the inputs' point cloud when there is one
(:mod:`recon.initialise`), else at random inside the cameras' view. Loss ``(1 - w_ssim) L1 + w_ssim (1 - SSIM)``
(+ ``w_lpips`` LPIPS, as CAT3D/CAMEO do for generated views) on random patches; densification with gsplat's
:class:`~gsplat.DefaultStrategy`, capped at ``max_gaussians``; learning rates of simple_trainer (means decayed to
1 % over the run, all scaled by sqrt(views per step)). Internally the scene is translated and scaled so the cameras
lie within distance 1 of their centroid; a similarity without rotation keeps quaternions and SH valid, and the
result is mapped back to the input frame and units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from gsplat import DefaultStrategy
from pytorch_msssim import ssim
from tqdm.auto import tqdm

from cameo.cameras import invert_pose
from recon import initialise
from recon.initialise import InitGaussians, PointCloudLike
from recon.rasterize import rasterization
from recon.splats import SH_C0, Splats
from recon.views import BatchSampler, FitViews, nearest_observed_distance, trust_weights

ProgressCallback = Callable[[str, float], None]
FILL_MAX_SIZE = 4.0  # largest fill Gaussian, in median cloud-Gaussian sizes


@dataclass
class FitConfig:
    """Fitting hyper-parameters. Refinement iterations default to simple_trainer's fractions of the run."""

    iterations: int = 400  # with a point-cloud start; see ReconOptions for how the defaults were chosen
    views_per_step: int = 4
    patch: int = 256  # views larger than this are fitted through random patches of this size (pixels a side)
    observed_every: int = 2  # every this many steps renders observed views (the rest generated ones)
    # the last fraction of the iterations renders observed views only: 0.15 against 0 (measured with 96 px patches)
    # raised held-out PSNR / SSIM and the inputs' re-render on object_00 (19.01/0.568 -> 19.23/0.585, 27.3 -> 28.1
    # dB), room_00 and DTU 22,25->23,24 (17.19/0.676 -> 17.40/0.674, 14.9 -> 15.4 dB); 0.3 on DTU: 17.44/0.649
    polish: float = 0.15
    num_points: int = 20_000  # random initialisation when there is no point cloud
    ray_fraction: float = 0.5  # ... of which this share lies along the inputs' pixel rays (initialise.along_input_rays)
    max_gaussians: int = 20_000  # densification stops near here (a larger cloud is subsampled): bounds a CPU step
    fill_fraction: float = 0.1  # with a cloud: random fill Gaussians, as a fraction of the cloud's ...
    fill_max: int = 5_000  # ... or this many times the share of the inputs the cloud leaves uncovered, if more
    cloud_opacity: float = 0.8  # initial opacity of the cloud's Gaussians (random ones: init_opacity)
    cloud_size: float = 1.0  # initial std of a cloud Gaussian in units of its footprint radius (half a pixel)
    distance_falloff: float = 1.0  # CAT3D's b: generated views weighted exp(-b s^2), b rising 0 -> this
    sh_degree: int = 1
    sh_increase_every: int | None = None  # default: iterations // (2 * (sh_degree + 1))
    ssim_weight: float = 0.2
    lpips_weight: float = 0.0  # 0 disables LPIPS (no weights needed)
    # AlexNet: ~20x fewer FLOPs than VGG, so the perceptual term adds little to a CPU iteration
    lpips_net: str = "alex"
    random_background: bool = True
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # used when random_background is False
    init_opacity: float = 0.1
    init_scale: float = 0.5  # random initial size = this x mean distance to the 3 nearest initial points
    densify: bool = True
    refine_start: int | None = None  # default: 5 % of iterations
    refine_stop: int | None = None  # default: 50 %
    refine_every: int | None = None  # default: 2.5 %, at least 25 steps
    grow_grad2d: float = 2e-4
    seed: int = 0


def fit_gaussians(
    images: torch.Tensor | Sequence[torch.Tensor], K: torch.Tensor, c2w: torch.Tensor,
    config: FitConfig | None = None, progress: ProgressCallback | None = None, *,
    cloud: PointCloudLike | None = None, show_progress: bool = True, view_weights: torch.Tensor | None = None,
    observed: torch.Tensor | Sequence[bool] | None = None,
) -> Splats:
    """Optimise Gaussians so that they render ``images`` (``[V,3,H,W]`` or a list of ``[3,H_i,W_i]``, in [0, 1])
    from cameras ``K [V,3,3]`` (each for its image's size), ``c2w [V,4,4]`` (OpenCV).

    ``cloud`` (world points, colours, footprint sizes) initialises the Gaussians; ``observed [V]`` marks the
    captured inputs (default: all), the others are generated views, trusted as ``config`` says; ``view_weights [V]``
    (>= 0, default all 1) scale each view's loss. ``progress(stage, fraction)`` is called as work advances.
    Deterministic for a given ``config.seed`` (on CPU). Returns the splats in the input world frame.
    """
    cfg = config or FitConfig()
    views = FitViews.build(images, K, c2w, observed, view_weights)
    # DefaultStrategy's split samples from the global RNG: seed it without disturbing the caller's stream
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return _fit(views, cfg, progress, cloud, show_progress)


def _fit(views: FitViews, cfg: FitConfig, progress: ProgressCallback | None, cloud: PointCloudLike | None,
         show_progress: bool) -> Splats:
    device = views.images[0].device
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    center, scale = _normalization(views.c2w)
    views = _normalized(views, center, scale)
    params = _init_params(initial_gaussians(views, cloud, center, scale, cfg, gen), cfg, gen, device)
    scene_scale = 1.1  # simple_trainer: camera extent * 1.1, and cameras are within distance 1 here
    optimizers = _optimizers(params, scene_scale, cfg.views_per_step)
    means_decay = torch.optim.lr_scheduler.ExponentialLR(optimizers["means"], 0.01 ** (1.0 / max(cfg.iterations, 1)))
    strategy = _strategy(cfg)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=scene_scale)
    lpips = _load_lpips(cfg, device)
    sh_every = cfg.sh_increase_every or max(1, cfg.iterations // (2 * (cfg.sh_degree + 1)))
    viewmats, K = invert_pose(views.c2w).to(device), views.K.to(device)
    distance = nearest_observed_distance(views.c2w, views.observed)
    sampler = BatchSampler(views, cfg.views_per_step, cfg.patch, cfg.observed_every, gen,
                           polish_from=round(cfg.iterations * (1 - cfg.polish)))
    bar = tqdm(range(cfg.iterations), desc="fitting Gaussians", disable=not show_progress, dynamic_ncols=True)
    for step in bar:
        batch = sampler.next(step)
        n = batch.index.numel()
        bg = torch.rand(n, 3, generator=gen).to(device) if cfg.random_background else \
            torch.tensor(cfg.background, device=device).expand(n, 3)
        render, _, info = rasterization(
            params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
            torch.cat([params["sh0"], params["shN"]], 1), viewmats[batch.index.to(device)], batch.intrinsics(K),
            batch.width, batch.height, sh_degree=min(step // sh_every, cfg.sh_degree), backgrounds=bg,
        )
        pred, target = render.permute(0, 3, 1, 2), batch.targets(views, device)
        weights = trust_weights(views, distance, step, cfg.iterations, cfg.distance_falloff)[batch.index]
        # mean over the batch, not normalised by the weights: a batch of down-weighted views moves the splats less
        loss = (weights.to(device) * _per_view_loss(pred, target, cfg, lpips)).mean()
        strategy.grow_grad2d = cfg.grow_grad2d if len(params["means"]) < cfg.max_gaussians else math.inf
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


def _per_view_loss(pred: torch.Tensor, target: torch.Tensor, cfg: FitConfig, lpips) -> torch.Tensor:
    """``[n]`` photometric loss of each rendered view: L1 + SSIM (+ LPIPS)."""
    per_view = (1 - cfg.ssim_weight) * (pred - target).abs().mean((1, 2, 3))
    if min(pred.shape[-2:]) >= 11:  # pytorch_msssim's 11-pixel window
        per_view = per_view + cfg.ssim_weight * (1 - ssim(pred, target, data_range=1.0, size_average=False))
    if lpips is not None:
        per_view = per_view + cfg.lpips_weight * _perceptual(lpips, pred.clamp(0, 1), target)
    return per_view


def _strategy(cfg: FitConfig) -> DefaultStrategy:
    """gsplat's densification at simple_trainer's fractions of the run (none when ``densify`` is off)."""
    return DefaultStrategy(
        refine_start_iter=cfg.refine_start if cfg.refine_start is not None else cfg.iterations // 20,
        refine_stop_iter=(cfg.refine_stop if cfg.refine_stop is not None else cfg.iterations // 2) if cfg.densify
        else 0,
        refine_every=cfg.refine_every if cfg.refine_every is not None else max(25, cfg.iterations // 40),
        reset_every=max(cfg.iterations + 1, 3000), grow_grad2d=cfg.grow_grad2d,
    )


def initial_gaussians(views: FitViews, cloud: PointCloudLike | None, center: torch.Tensor, scale: float,
                      cfg: FitConfig, gen: torch.Generator) -> InitGaussians:
    """From the cloud (normalised like the cameras) plus a sparse fill; without a cloud, part along the observed
    views' pixel rays and the rest random."""
    if cloud is None or len(cloud.points) == 0:
        n = min(cfg.num_points, cfg.max_gaussians)
        n_rays = int(cfg.ray_fraction * n) if bool(views.weighted_observed.any()) else 0
        parts = [initialise.along_input_rays(views, n_rays, cfg.cloud_opacity, gen)] if n_rays else []
        if n > n_rays:
            init = initialise.fill(views, n - n_rays, cfg.init_opacity, 1.0, gen)
            parts.append(InitGaussians(init.means, init.colors, init.sizes * cfg.init_scale, init.opacities))
        return initialise.concat(parts)
    points = (cloud.points.float().cpu() - center.cpu()) * scale
    # a stereo cloud of a wide pair may explain a small part of the inputs: the fill stands in for the rest
    uncovered = 1.0 - initialise.observed_coverage(points, views)
    n_fill = min(max(int(cfg.fill_fraction * min(len(points), cfg.max_gaussians)), int(uncovered * cfg.fill_max)),
                 cfg.max_gaussians // 2)
    surface = initialise.from_cloud(points, cloud.colors.cpu(), cloud.sizes.cpu() * scale,
                                    cfg.max_gaussians - n_fill, cfg.cloud_opacity, cfg.cloud_size, gen)
    if n_fill == 0:
        return surface
    filler = initialise.fill(views, n_fill, cfg.init_opacity, cfg.init_scale, gen, surface=points)
    # sparse points have far neighbours: cap their size so each costs a few pixels, not a large part of a view
    filler.sizes = filler.sizes.clamp_max(FILL_MAX_SIZE * float(surface.sizes.median()))
    return initialise.concat([surface, filler])


def _normalization(c2w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Centre and scale so camera centres lie within distance 1 of their centroid (1 if they coincide)."""
    centers = c2w[:, :3, 3]
    center = centers.mean(0)
    radius = (centers - center).norm(dim=-1).max().item()
    return center, (1.0 / radius if radius > 1e-8 else 1.0)


def _normalized(views: FitViews, center: torch.Tensor, scale: float) -> FitViews:
    c2w = views.c2w.clone()
    c2w[:, :3, 3] = (c2w[:, :3, 3] - center) * scale
    return FitViews(views.images, views.K, c2w, views.observed, views.weights)


def _init_params(init: InitGaussians, cfg: FitConfig, gen: torch.Generator, device: torch.device):
    """Isotropic Gaussians at the initial points; random quaternions as simple_trainer."""
    n = init.means.shape[0]
    sh = torch.zeros(n, (cfg.sh_degree + 1) ** 2, 3)
    sh[:, 0] = (init.colors.cpu() - 0.5) / SH_C0
    opac = init.opacities.cpu().clamp(1e-4, 1 - 1e-4)
    return torch.nn.ParameterDict({
        "means": torch.nn.Parameter(init.means.float().clone().to(device)),
        "scales": torch.nn.Parameter(torch.log(init.sizes.float().cpu().clamp_min(1e-8))[:, None].repeat(1, 3)
                                     .to(device)),
        "quats": torch.nn.Parameter(torch.rand(n, 4, generator=gen).to(device)),
        "opacities": torch.nn.Parameter(torch.logit(opac).to(device)),
        "sh0": torch.nn.Parameter(sh[:, :1].to(device)),
        "shN": torch.nn.Parameter(sh[:, 1:].to(device)),
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
            means=params["means"] / scale + center.to(params["means"]),
            quats=params["quats"].detach().clone(),
            scales=params["scales"] - math.log(scale),
            opacities=params["opacities"].detach().clone(),
            sh0=params["sh0"].detach().clone(),
            shN=params["shN"].detach().clone(),
        )
