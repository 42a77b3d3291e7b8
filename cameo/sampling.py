"""Multi-view DDIM sampling with classifier-free guidance, and whole-trajectory generation.

The denoising loop is diffusers' ``DDIMScheduler`` configured from the model's training schedule (DDPM config);
what diffusers lacks for a multi-view model is written here: clean reference views pasted back before every step
(they are always seen at timestep 0), and the conditional / unconditional branches batched into one forward (the
unconditional branch zeroes the camera rays via ``drop_camera`` and keeps the reference mask).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from tqdm.auto import tqdm

from cameo.diffusion import camera_conditioning
from cameo.model.codec import LatentCodec
from cameo.geometry.cloud import PointCloud, fuse_depth
from cameo.geometry.mono_depth import MonoDepthNet
from cameo.priors import (PROXY_CONFIDENCE, PriorAnchor, cloud_priors, cloud_views_prior, prior_anchor,
                          set_reference_priors, with_stand_ins)

ProgressFn = Callable[[float], None]
"""Receives the fraction of work done, in [0, 1]."""


def default_training_schedule(prediction_type: str) -> DDPMScheduler:
    """The project's default training schedule (``cameo.train.config.DiffusionConfig`` defaults).

    Only for models without a saved schedule (random weights in benchmarks and tests); trained checkpoints carry
    their own in ``<checkpoint>/scheduler`` (see :func:`load_training_schedule`).
    """
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, prediction_type=prediction_type, timestep_spacing="leading")


def load_training_schedule(checkpoint: str | Path) -> DDPMScheduler:
    """The DDPM schedule saved with a training checkpoint (``<checkpoint>/scheduler``; local files only)."""
    folder = Path(checkpoint) / "scheduler"
    if not (folder / "scheduler_config.json").is_file():
        raise FileNotFoundError(f"{folder}/scheduler_config.json not found: not a cameo training checkpoint")
    return DDPMScheduler.from_pretrained(str(folder), local_files_only=True)


def ddim_from_training(schedule: DDPMScheduler | dict) -> DDIMScheduler:
    """A deterministic DDIM (eta 0) on the same betas / prediction type / spacing as the training schedule.

    ``set_alpha_to_one``: the last step returns the model's clean estimate x0 instead of re-adding the noise of
    alpha_cumprod[0]; ``clip_sample`` off because latents are not bounded to [-1, 1].
    """
    config = dict(schedule.config if isinstance(schedule, DDPMScheduler) else schedule)
    if config.get("prediction_type") not in ("epsilon", "v_prediction"):
        raise ValueError(f"unsupported prediction_type {config.get('prediction_type')!r} (epsilon or v_prediction)")
    # as keyword arguments: values in the dict that the source recorded as its defaults (``_use_default_values``)
    # are dropped by from_config, so an update of the dict alone could leave DDIM's own clip_sample=True
    return DDIMScheduler.from_config(config, clip_sample=False, set_alpha_to_one=True)


def denoise(
    model: torch.nn.Module,
    scheduler: DDIMScheduler,
    clean: torch.Tensor,
    ref_mask: torch.Tensor,
    plucker: torch.Tensor,
    steps: int = 50,
    cfg: float = 2.0,
    generator: torch.Generator | None = None,
    progress: ProgressFn | None = None,
    noise: torch.Tensor | None = None,
    prior: torch.Tensor | None = None,
    anchor: PriorAnchor | None = None,
    stop: float = 1.0,
) -> torch.Tensor:
    """DDIM-sample the target views of ``clean [B,F,C,h,w]`` (only its reference views are read).

    ``ref_mask [B,F]`` marks references, ``plucker [B,F,6,H,W]`` the normalised camera rays, ``prior [B,F,4,H,W]``
    the warped-reference prior of models that take one (dropped with the camera in the unconditional branch);
    ``anchor`` pulls each step's clean estimate toward that prior where it is valid. ``stop`` in (0, 1]: the
    fraction of the ``steps`` run; the last one run returns its clean estimate (with ``stop`` 1 that is exactly
    DDIM's final step, whose ``alpha_prev`` is 1; below 1 it is the model's posterior-mean estimate at that noise
    level, which a small model gives smoother than its full sample). Returns the latents
    ``[B,F,C,h,w]`` with the references unchanged. Initial noise is drawn on the CPU from ``generator`` so results
    depend only on the seed, not on the device; ``noise`` (shaped like ``clean``) overrides the draw.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 < stop <= 1.0:
        raise ValueError(f"stop must lie in (0, 1], got {stop}")
    b = clean.shape[0]
    device = clean.device
    ref_mask = ref_mask.to(device)
    keep = ref_mask[:, :, None, None, None]
    if noise is None:
        noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32)
    noise = noise.to(device, clean.dtype)
    x = torch.where(keep, clean, noise * scheduler.init_noise_sigma)
    guided = cfg != 1.0
    # Conditional and unconditional branches share one forward: inputs duplicated, camera dropped in the 2nd half.
    reps = 2 if guided else 1
    drop = torch.arange(reps * b, device=device) >= b
    mask_in, plucker_in = ref_mask.repeat(reps, 1), plucker.repeat(reps, 1, 1, 1, 1)
    # camera-only models (and stand-ins following the older call contract) take no prior argument
    extra = {} if prior is None else {"prior": prior.to(device).repeat(reps, 1, 1, 1, 1)}
    scheduler.set_timesteps(steps, device=device)
    run = max(1, round(stop * steps))
    for i, t in enumerate(scheduler.timesteps[:run]):
        timesteps = torch.where(ref_mask, torch.zeros_like(t), t).long()
        with torch.no_grad():
            pred = model(x.repeat(reps, 1, 1, 1, 1), timesteps.repeat(reps, 1), plucker_in, mask_in,
                         drop if guided else None, **extra)
        if guided:
            cond, uncond = pred.chunk(2)
            pred = uncond + cfg * (cond - uncond)
        out = scheduler.step(pred.flatten(0, 1), t, x.flatten(0, 1), eta=0.0)
        last = i == run - 1
        x = (out.pred_original_sample if last else out.prev_sample).view_as(x)
        if anchor is not None and anchor.active(i, steps):
            x = _anchored(x, out.pred_original_sample.view_as(x), anchor, scheduler, None if last else t)
        x = torch.where(keep, clean, x)  # references stay clean
        if progress is not None:
            progress((i + 1) / run)
    return x


def _wants_priors(model: torch.nn.Module, anchor: float, has_depth: bool) -> bool:
    """Whether sampling builds warped priors: the model reads them, or the sampler anchors to them (needs depth)."""
    return getattr(model, "uses_prior", False) or (anchor > 0 and has_depth)


def _share(progress: ProgressFn | None, index: int, count: int) -> ProgressFn | None:
    """``progress`` for run ``index`` of ``count`` equal runs (each reports its own fraction in [0, 1])."""
    if progress is None:
        return None
    return lambda fraction: progress((index + fraction) / count)


def mean_of_draws(draws: int, progress: ProgressFn | None,
                  run: Callable[[int, ProgressFn | None], torch.Tensor]) -> torch.Tensor:
    """The mean of ``run(draw, progress)`` over ``draws`` noise draws.

    With an early stop each run returns the model's posterior-mean estimate given its own noisy state; their mean is
    a lower-variance estimate of the same (a small model's runs disagree most where no reference saw anything). On
    set 0 (2-to-2, stereo priors, anchored, stop 0.25, before the floor growth) 4 draws scored 22.00 / 0.669 / 0.294
    against 21.76 / 0.658 / 0.296 for one. Latents are averaged (for the pixel codec: the pixels)."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    return torch.stack([run(draw, _share(progress, draw, draws)) for draw in range(draws)]).mean(0)


def _anchored(
    x: torch.Tensor, x0: torch.Tensor, anchor: PriorAnchor, scheduler: DDIMScheduler, t: torch.Tensor | None
) -> torch.Tensor:
    """``x_prev`` of a DDIM (eta 0) step whose clean estimate ``x0`` moved toward the anchor, its noise kept:
    DDIM writes ``x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps``, so the move shifts ``x_prev`` linearly.
    ``t`` None: ``x`` is the clean estimate itself (``abar_prev`` 1)."""
    if t is None:
        abar = torch.ones(())
    else:  # the previous timestep as DDIMScheduler.step computes it (diffusers exposes no helper for it)
        prev = int(t) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        abar = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
    shift = anchor.strength * anchor.mask.to(x.device) * (anchor.latents.to(x.device) - x0)
    return x + abar.to(x.device, x.dtype).sqrt() * shift


def _check_views(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, what: str) -> None:
    n = images.shape[0] if images is not None else K.shape[0]
    if K.shape != (n, 3, 3) or c2w.shape != (n, 4, 4):
        raise ValueError(f"{what}: expected K [{n},3,3] and c2w [{n},4,4], got {tuple(K.shape)}, {tuple(c2w.shape)}")


def sample_views(
    model: torch.nn.Module,
    codec: LatentCodec,
    ref_images: torch.Tensor,
    ref_K: torch.Tensor,
    ref_c2w: torch.Tensor,
    target_K: torch.Tensor,
    target_c2w: torch.Tensor,
    steps: int = 50,
    cfg: float = 2.0,
    seed: int = 0,
    schedule: DDPMScheduler | dict | None = None,
    progress: ProgressFn | None = None,
    ref_depth: torch.Tensor | None = None,
    anchor: float = 0.0,
    anchor_until: float = 1.0,
    cloud: PointCloud | None = None,
    stop: float = 1.0,
    draws: int = 1,
    depth_net: MonoDepthNet | None = None,
) -> torch.Tensor:
    """Generate ``M`` target views from ``N`` posed references in one joint sample.

    ``ref_images [N,3,H,W]`` in [0, 1]; ``*_K`` pixel intrinsics of ``H x W`` images; ``*_c2w`` OpenCV
    camera-to-world (any world frame and scale: cameras are normalised here relative to the first reference).
    ``ref_depth [N,H,W]`` (z, NaN invalid): the references' depth, warped into the targets as the prior of models
    that take one (None: targets get an empty prior; ignored by models without a prior). ``cloud``: instead of
    ``ref_depth``, the references' point cloud (as :func:`generate_trajectory` takes it; e.g. stereo run on the
    photos before they were resized for the model). ``anchor`` (strength in
    [0, 1]) and ``anchor_until`` (fraction of steps): :class:`cameo.priors.PriorAnchor`, for any model given depth.
    ``stop``: the fraction of the DDIM steps run (:func:`denoise`). ``draws``: the mean of that many samples from
    consecutive noise draws of the seed (:func:`mean_of_draws`). ``depth_net``: the model folder's one-photo depth
    network, for references left without depth (:func:`cameo.priors.stand_ins_for_depthless`).
    ``schedule``: the model's training schedule (default: :func:`default_training_schedule` with the model's
    ``config.prediction_type``). Returns ``[M,3,H,W]`` in [0, 1].
    """
    if ref_images.ndim != 4 or ref_images.shape[1] != 3:
        raise ValueError(f"ref_images must be [N,3,H,W], got {tuple(ref_images.shape)}")
    _check_views(ref_images, ref_K, ref_c2w, "references")
    _check_views(None, target_K, target_c2w, "targets")
    n, m = ref_images.shape[0], target_K.shape[0]
    height, width = ref_images.shape[-2:]
    device = next(model.parameters()).device
    schedule = schedule if schedule is not None else default_training_schedule(model.config.prediction_type)
    with torch.no_grad():
        ref_latents = codec.encode(ref_images.to(device))
    clean = torch.zeros((1, n + m, *ref_latents.shape[1:]), device=device, dtype=ref_latents.dtype)
    clean[0, :n] = ref_latents
    ref_mask = (torch.arange(n + m, device=device) < n)[None]
    plucker = camera_conditioning(torch.cat([ref_c2w, target_c2w]), torch.cat([ref_K, target_K]), height, width)
    uses_prior = getattr(model, "uses_prior", False)
    prior = None
    if ref_depth is not None and cloud is not None:
        raise ValueError("pass the references' depth or their point cloud, not both")
    if _wants_priors(model, anchor, ref_depth is not None or cloud is not None or depth_net is not None):
        all_K, all_c2w = torch.cat([ref_K, target_K]).float().cpu(), torch.cat([ref_c2w, target_c2w]).float().cpu()
        if ref_depth is not None:
            cloud = fuse_depth(ref_images.float().cpu(), ref_depth.float().cpu(), ref_K.float().cpu(),
                               ref_c2w.float().cpu(), max_points=ref_depth.numel())
        prior = cloud_views_prior(cloud, ref_images.float().cpu(), all_K, all_c2w, ref_mask[0].cpu(), height, width,
                                  hull_confidence(model))
        prior, weights = with_stand_ins(prior, cloud, ref_images, ref_K, ref_c2w, all_K, all_c2w, depth_net,
                                        getattr(model, "uses_proxy", False))
        prior, weights = prior[None], None if weights is None else weights[None]
    held = None if prior is None else prior_anchor(codec, prior.to(device), anchor, anchor_until, weights)
    generator, scheduler = torch.Generator().manual_seed(seed), ddim_from_training(schedule)
    latents = mean_of_draws(draws, progress, lambda draw, report: denoise(
        model, scheduler, clean, ref_mask, plucker[None].to(device), steps, cfg, generator, report,
        prior=prior if uses_prior else None, anchor=held, stop=stop))
    with torch.no_grad():
        images = codec.decode(latents[0, n:])
    return images.float().clamp(0, 1).cpu()


class PlanGroup(Protocol):
    """One sampling group of a trajectory plan (trajectories.plan.Group); indices are path indices."""

    cond: Sequence[int]
    targets: Sequence[int]


class TrajectoryPlan(Protocol):
    """trajectories.plan.Plan: pass k may condition on the inputs and on views generated in passes < k."""

    input_indices: Sequence[int]
    passes: Sequence[Sequence[PlanGroup]]


@dataclass(frozen=True)
class _Job:
    pass_index: int
    group_index: int
    cond: tuple[int, ...]
    targets: tuple[int, ...]


def _plan_jobs(plan: TrajectoryPlan, num_views: int) -> list[list[_Job]]:
    """Validate the plan (every non-input view generated exactly once, conditioning only on known views)."""
    inputs = {int(i) for i in plan.input_indices}
    known, done, jobs = set(inputs), set(), []
    for p, groups in enumerate(plan.passes):
        made: set[int] = set()
        jobs.append([])
        for g, group in enumerate(groups):
            cond, targets = tuple(int(i) for i in group.cond), tuple(int(i) for i in group.targets)
            if not cond or not targets:
                raise ValueError(f"plan pass {p} group {g}: needs conditioning views and targets")
            if unknown := [i for i in cond if i not in known]:
                raise ValueError(f"plan pass {p} group {g}: conditions on views {unknown} not generated before")
            if bad := [i for i in targets if not 0 <= i < num_views or i in inputs or i in done or i in made]:
                raise ValueError(f"plan pass {p} group {g}: targets {bad} are inputs, out of range or repeated")
            made.update(targets)
            jobs[-1].append(_Job(p, g, cond, targets))
        done |= made
        known |= made
    if missing := sorted(set(range(num_views)) - inputs - done):
        raise ValueError(f"plan leaves path views {missing} ungenerated")
    return jobs


def _group_noise(batch: Sequence[_Job], shape: torch.Size, seed: int, draw: int) -> torch.Tensor:
    """Initial noise ``[B,*shape]`` of a batch of groups: each group's own, from ``seed``, its pass and index and
    the ``draw`` (draw 0 is the noise of a single-draw run)."""
    return torch.stack([
        torch.randn(shape, generator=torch.Generator().manual_seed(
            seed * 1_000_003 + 1000 * job.pass_index + job.group_index + 1_000_000_007 * draw))
        for job in batch])


def hull_confidence(model: torch.nn.Module) -> float:
    """The prior mask value of a cloud's visual hull for ``model``: the proxy's for a model trained with guessed
    surfaces (``uses_proxy``), else 0 (the hull only hides what lies behind it)."""
    return PROXY_CONFIDENCE if getattr(model, "uses_proxy", False) else 0.0


def _path_priors(
    cloud: PointCloud | None, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int, hull: float
) -> torch.Tensor:
    """Priors ``[V,4,H,W]`` of every path view (empty without a cloud; the hull at mask ``hull``)."""
    if cloud is None:
        return torch.zeros(K.shape[0], 4, height, width)
    return cloud_priors(cloud, K.cpu(), c2w.cpu(), height, width, hull)


def generate_trajectory(
    model: torch.nn.Module,
    codec: LatentCodec,
    input_images: torch.Tensor,
    K: torch.Tensor,
    c2w: torch.Tensor,
    plan: TrajectoryPlan,
    steps: int = 50,
    cfg: float = 2.0,
    seed: int = 0,
    schedule: DDPMScheduler | dict | None = None,
    groups_per_batch: int = 4,
    progress: ProgressFn | None = None,
    show_progress: bool = True,
    cloud: PointCloud | None = None,
    anchor: float = 0.0,
    anchor_until: float = 1.0,
    stop: float = 1.0,
    draws: int = 1,
    depth_net: MonoDepthNet | None = None,
) -> torch.Tensor:
    """Generate every view of a camera path with a multi-pass group plan (trajectories.plan.plan_generation).

    ``K [V,3,3]``, ``c2w [V,4,4]``: the whole path in order; ``input_images [N,3,H,W]`` in [0, 1] are the views at
    ``plan.input_indices`` (same order). Each group is sampled jointly: its conditioning views (clean latents:
    encoded inputs or latents generated in an earlier pass) followed by its targets, with cameras normalised
    relative to the group's first conditioning view. Groups of a pass with the same shape are batched
    ``groups_per_batch`` at a time; each group's noise comes from its own seed, so batching does not change results.
    ``cloud``: the inputs' point cloud (``points [N,3]``, ``colors [N,3]``, world radii ``sizes [N]``) in the path's
    world frame, rendered into every path view as the prior of models that take one (None: empty priors); conditioning
    views see themselves (inputs, or views generated in an earlier pass). ``anchor``, ``anchor_until``: as in
    :func:`sample_views` (needs ``cloud``); ``stop``: the fraction of the DDIM steps run (:func:`denoise`); ``draws``:
    the mean of that many samples, each group's noise from its own seed per draw (:func:`mean_of_draws`);
    ``depth_net``: as in :func:`sample_views`. Returns
    all ``V`` images ``[V,3,H,W]`` in [0, 1] (the inputs as given).
    """
    if input_images.ndim != 4 or input_images.shape[1] != 3:
        raise ValueError(f"input_images must be [N,3,H,W], got {tuple(input_images.shape)}")
    _check_views(None, K, c2w, "path")
    inputs = [int(i) for i in plan.input_indices]
    if len(inputs) != input_images.shape[0]:
        raise ValueError(f"{input_images.shape[0]} input images for plan inputs {inputs}")
    num_views = K.shape[0]
    height, width = input_images.shape[-2:]
    jobs = _plan_jobs(plan, num_views)
    device = next(model.parameters()).device
    schedule = schedule if schedule is not None else default_training_schedule(model.config.prediction_type)
    scheduler = ddim_from_training(schedule)
    K_all, c2w_all = K.float(), c2w.float()
    with torch.no_grad():
        first = codec.encode(input_images.to(device))
    latents = torch.zeros((num_views, *first.shape[1:]), device=device, dtype=first.dtype)
    latents[inputs] = first
    images = torch.zeros(num_views, 3, height, width)
    images[inputs] = input_images.float().cpu()
    uses_prior = getattr(model, "uses_prior", False)
    wanted = _wants_priors(model, anchor, cloud is not None or depth_net is not None)
    priors = _path_priors(cloud, K_all, c2w_all, height, width, hull_confidence(model)) if wanted else None
    weights = None
    if priors is not None:
        priors, weights = with_stand_ins(priors, cloud, input_images, K_all[inputs], c2w_all[inputs], K_all, c2w_all,
                                         depth_net, getattr(model, "uses_proxy", False))
    total, finished = sum(len(p) for p in jobs), 0
    bar = tqdm(total=total, desc="view groups", unit="group", disable=not show_progress)
    for pass_jobs in jobs:
        by_shape: dict[tuple[int, int], list[_Job]] = {}
        for job in pass_jobs:
            by_shape.setdefault((len(job.cond), len(job.targets)), []).append(job)
        for (n_cond, _), same in by_shape.items():
            for start in range(0, len(same), groups_per_batch):
                batch = same[start:start + groups_per_batch]
                views = torch.tensor([job.cond + job.targets for job in batch])  # [B, F]
                clean = latents[views.to(device)].clone()
                clean[:, n_cond:] = 0
                ref_mask = (torch.arange(views.shape[1], device=device) < n_cond).expand(len(batch), -1)
                plucker = camera_conditioning(c2w_all[views], K_all[views], height, width).to(device)
                prior = None if priors is None else set_reference_priors(priors[views], images[views],
                                                                         ref_mask.cpu())

                def report(fraction: float, done: int = finished, size: int = len(batch)) -> None:
                    if progress is not None:
                        progress((done + fraction * size) / total)

                held = None if prior is None else prior_anchor(codec, prior.to(device), anchor, anchor_until,
                                                               None if weights is None else weights[views])
                out = mean_of_draws(draws, report, lambda draw, part: denoise(
                    model, scheduler, clean, ref_mask, plucker, steps, cfg, progress=part,
                    noise=_group_noise(batch, clean.shape[1:], seed, draw), prior=prior if uses_prior else None,
                    anchor=held, stop=stop))
                targets = views[:, n_cond:].reshape(-1)
                latents[targets.to(device)] = out[:, n_cond:].flatten(0, 1)
                with torch.no_grad():
                    images[targets] = codec.decode(out[:, n_cond:].flatten(0, 1)).float().clamp(0, 1).cpu()
                finished += len(batch)
                bar.update(len(batch))
    bar.close()
    return images
