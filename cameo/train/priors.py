"""Warped-reference priors for training: ground-truth depth degraded to look like stereo, and prior dropout.

At test time the prior comes from two-view stereo (``cameo.geometry``), which leaves holes at occlusion edges and
on textureless surfaces and is a little noisy; a model trained on perfect priors would trust every warped pixel.
So the references' ground-truth depth is degraded (edge pixels dropped, random blob-shaped holes, multiplicative
noise) before it is warped; optionally (``covisible``) it is first cut to what another reference also sees, the
only pixels stereo can match (at test time the prior holes are mostly the parts one photo alone sees), and
(``extrapolate``) the parts of a pair beyond each other's frame then get the same extrapolated depth as stereo's
holes get at test time; (``proxy``) a reference left without any depth gets the proxy prior sampling gives a lone
photo (:func:`cameo.priors.add_proxy`), or (``stand_in: depth_net``) its warp through the one-photo depth network
(:func:`cameo.priors.add_estimated`). Dropout
follows MVGenMaster: each target's prior is dropped with ``drop_view``, the whole batch's prior with ``drop_batch``,
so one view without depth and the CFG unconditional branch keep working.
Every draw comes from the step generator, so a resumed run sees the same priors.
"""

from __future__ import annotations

from itertools import permutations

import torch
import torch.nn.functional as F

from cameo.geometry.cloud import depth_share
from cameo.geometry.fill import extrapolate_beyond_overlap
from cameo.geometry.stereo import two_way_consistent
from cameo.geometry.mono_depth import MonoDepthNet
from cameo.priors import MIN_DEPTH_SHARE, add_estimated, add_proxy, views_prior
from cameo.train.config import PriorConfig


def degrade_depth(depth: torch.Tensor, cfg: PriorConfig, gen: torch.Generator) -> torch.Tensor:
    """``depth [R,H,W]`` (NaN invalid) with stereo-like failures: NaN at most edges and in random blobs, noise."""
    r, h, w = depth.shape
    filled = torch.nan_to_num(depth, nan=0.0)[:, None]
    high = F.max_pool2d(filled, 3, 1, 1)
    low = -F.max_pool2d(-torch.where(filled > 0, filled, torch.full_like(filled, 1e9)), 3, 1, 1)
    edge = ((high - low) / high.clamp_min(1e-6) > 0.05)[:, 0]
    drop = edge & (torch.rand(r, h, w, generator=gen) < cfg.edge_drop)
    blobs = F.interpolate(torch.rand(r, 1, max(h // 8, 1), max(w // 8, 1), generator=gen), size=(h, w),
                          mode="bilinear", align_corners=False)[:, 0]
    share = torch.rand(r, 1, 1, generator=gen) * cfg.max_hole_share
    drop |= blobs < share
    sigma = torch.rand(r, 1, 1, generator=gen) * cfg.max_noise
    noisy = depth * torch.exp(sigma * torch.randn(r, h, w, generator=gen))
    return torch.where(drop, torch.full_like(depth, float("nan")), noisy)


def covisible_depth(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """``depth [R,H,W]`` (NaN invalid) of R references kept only where another reference sees the same surface (in
    its frame, unoccluded: stereo's two-way check on exact depth), NaN elsewhere; one reference: all NaN."""
    seen = torch.zeros_like(depth, dtype=torch.bool)
    for pair in permutations(range(depth.shape[0]), 2):
        seen[pair[0]] |= two_way_consistent(depth[list(pair)], K[list(pair)], c2w[list(pair)], 0)
    return torch.where(seen, depth, torch.full_like(depth, float("nan")))


def training_priors(batch: dict, ref_mask: torch.Tensor, cfg: PriorConfig, gen: torch.Generator,
                    depth_net: MonoDepthNet | None = None) -> torch.Tensor:
    """Priors ``[B,F,4,H,W]`` of a training batch (``images``, ``depth``, ``K``, ``c2w``; references first);
    ``depth_net``: the one-photo network of ``stand_in: depth_net``."""
    if "depth" not in batch:
        raise ValueError("a prior-conditioned model needs depth in the training data (data source without depth)")
    if cfg.proxy and cfg.stand_in == "depth_net" and depth_net is None:
        raise ValueError("prior.stand_in depth_net needs the run's one-photo depth network (cameo-train depth)")
    images, depth, K, c2w = (batch[k].float() for k in ("images", "depth", "K", "c2w"))
    b, f, _, height, width = images.shape
    priors = []
    for i in range(b):
        refs = ref_mask[i]
        ref_depth = depth[i][refs]
        if cfg.depth == "degraded":
            # drawn only when enabled, so configs without it keep their random stream (and reproduce exactly)
            if cfg.covisible > 0 and float(torch.rand(1, generator=gen)) < cfg.covisible:
                ref_depth = covisible_depth(ref_depth, K[i][refs], c2w[i][refs])
                if cfg.extrapolate and ref_depth.shape[0] == 2:
                    ref_depth = extrapolate_beyond_overlap(ref_depth, K[i][refs], c2w[i][refs])[0]
            ref_depth = degrade_depth(ref_depth, cfg, gen)
        prior = views_prior(images[i][refs], ref_depth, K[i][refs], c2w[i][refs], K[i], c2w[i], refs, height, width)
        if cfg.proxy:
            lone = depth_share(ref_depth) < MIN_DEPTH_SHARE
            args = (prior, images[i][refs], K[i][refs], c2w[i][refs], K[i], c2w[i], lone)
            prior = add_estimated(*args, depth_net) if cfg.stand_in == "depth_net" else add_proxy(*args)
        priors.append(prior)
    out = torch.stack(priors)
    keep = (torch.rand(b, f, generator=gen) >= cfg.drop_view) | ref_mask
    keep &= torch.rand(1, generator=gen) >= cfg.drop_batch
    return out * keep[:, :, None, None, None].to(out.dtype)
