"""Warped-reference priors: what the references already show of each view, as the model's extra condition.

A prior is ``[4, H, W]`` per view: the references' pixels forward-warped into that view through their depth
(z-buffered, :func:`cameo.geometry.warp.render_points`) and a validity mask; 0 where nothing landed. References
"see themselves": their prior is their own image with a full mask. Training, evaluation and reconstruction build
priors through these functions so that the model sees the same kind of input everywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cameo.cameras import focus_depth, look_at_point
from cameo.geometry.cloud import PointCloud, fuse_depth, render_cloud
from cameo.geometry.mono_depth import MonoDepthNet
from cameo.geometry.stereo import view_share
from cameo.model.codec import LatentCodec, PixelCodec


PROXY_CONFIDENCE = 0.5
"""Mask value of proxy pixels (:func:`add_proxy`): the model tells a guessed surface from measured depth (1)."""


def cloud_priors(cloud: PointCloud, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
                 hull_confidence: float = 0.0) -> torch.Tensor:
    """Priors ``[V,4,H,W]`` of a point ``cloud`` rendered into ``K [V]``, ``c2w [V]``: its points at mask 1 and its
    visual hull's colours at mask ``hull_confidence`` (0: the hull only hides what lies behind it).

    A model trained with guessed surfaces (``prior.proxy``) gets the hull at :data:`PROXY_CONFIDENCE`, like the
    proxy; others, which never saw a mask between 0 and 1, get it as holes."""
    if len(cloud) == 0:
        return torch.zeros(K.shape[0], 4, height, width, dtype=torch.float32, device=K.device)
    views = render_cloud(cloud, K.float(), c2w.float(), height, width)
    mask = views.measured.float() + hull_confidence * views.guessed.float()
    return torch.cat([views.rgb * (mask[:, None] > 0), mask[:, None]], dim=1)


def set_reference_priors(priors: torch.Tensor, images: torch.Tensor, ref_mask: torch.Tensor) -> torch.Tensor:
    """``priors [...,F,4,H,W]`` with every reference view (``ref_mask [...,F]``) replaced by its own image
    ``images [...,F,3,H,W]`` (in [0, 1]) under a full mask."""
    own = torch.cat([images.to(priors.dtype), torch.ones_like(images[..., :1, :, :], dtype=priors.dtype)], dim=-3)
    return torch.where(ref_mask[..., None, None, None].to(priors.device), own.to(priors.device), priors)


def views_prior(
    ref_images: torch.Tensor, ref_depth: torch.Tensor | None, ref_K: torch.Tensor, ref_c2w: torch.Tensor,
    K: torch.Tensor, c2w: torch.Tensor, ref_mask: torch.Tensor, height: int, width: int,
) -> torch.Tensor:
    """Priors ``[F,4,H,W]`` of the views ``K [F]``, ``c2w [F]`` from references with depth (``ref_depth [R,H,W]``;
    None = no depth: targets get an empty prior); views where ``ref_mask [F]`` is set hold the references in order."""
    cloud = None if ref_depth is None else fuse_depth(ref_images, ref_depth, ref_K, ref_c2w,
                                                      max_points=ref_depth.numel())
    return cloud_views_prior(cloud, ref_images, K, c2w, ref_mask, height, width)


def cloud_views_prior(
    cloud: PointCloud | None, ref_images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, ref_mask: torch.Tensor,
    height: int, width: int, hull_confidence: float = 0.0,
) -> torch.Tensor:
    """Priors ``[F,4,H,W]`` of the views ``K [F]``, ``c2w [F]``: the references' point ``cloud`` rendered into each
    (None: empty priors; its hull at mask ``hull_confidence``, :func:`cloud_priors`), and the references
    ``ref_images [R,3,H,W]`` themselves where ``ref_mask [F]`` is set.

    The cloud may come from images of another size than the views (``cameo-recon`` runs stereo on the photos and
    renders at the model's resolution); its point sizes keep the render gap-free either way."""
    if cloud is None:
        priors = torch.zeros(K.shape[0], 4, height, width, dtype=torch.float32, device=K.device)
    else:
        priors = cloud_priors(cloud, K, c2w, height, width, hull_confidence)
    own = torch.zeros(K.shape[0], 3, height, width, dtype=priors.dtype, device=priors.device)
    own[ref_mask] = ref_images.to(priors.dtype)
    return set_reference_priors(priors, own, ref_mask)


ESTIMATED_ANCHOR = 0.35
"""Anchor weight of pixels warped through one-photo depth (:func:`stand_ins_for_depthless`), relative to measured ones:
the model reads them as measured, but the sampler pulls toward them only this much, because the network's depth is
rough. 1-to-3 on the held-out scenes, sets 0 / 1, two draws (the strength was chosen on them): full anchoring 18.26 /
0.395 / 0.464 and 18.24 / 0.447 / 0.482 (PSNR / SSIM / LPIPS), 0.5: 18.89 / 0.425 / 0.460 and 18.71 / 0.471 /
0.489, 0.35: 19.02 / 0.430 / 0.467 and 18.80 / 0.474 / 0.499, none: 19.09 / 0.426 / 0.503 on set 0."""

MIN_DEPTH_SHARE = 0.01
"""A reference with depth on fewer of its pixels than this has no depth (:func:`add_proxy` stands in)."""


def proxy_plane_depth(K: torch.Tensor, c2w: torch.Tensor, focus: torch.Tensor, height: int, width: int
                      ) -> torch.Tensor:
    """Z-depth ``[N,H,W]`` of views ``K [N,3,3]``, ``c2w [N,4,4]`` on the plane parallel to each image through
    the world point ``focus [3]``."""
    depth = torch.stack([focus_depth(focus, k, c) for k, c in zip(K.float(), c2w.float())])
    return depth[:, None, None].expand(-1, height, width).contiguous()


def add_proxy(priors: torch.Tensor, ref_images: torch.Tensor, ref_K: torch.Tensor, ref_c2w: torch.Tensor,
              K: torch.Tensor, c2w: torch.Tensor, lone: torch.Tensor) -> torch.Tensor:
    """``priors [F,4,H,W]`` of views ``K [F]``, ``c2w [F]`` whose empty pixels get the references marked
    ``lone [R]`` (no depth) warped through a proxy surface, at mask :data:`PROXY_CONFIDENCE`.

    One photo gives no depth (nor does a pair stereo cannot match), yet a target near it still sees mostly what it
    saw; the proxy puts each such reference on the plane through the look-at point of all the views (where the
    cameras aim, so the subject is roughly in place), as image-based rendering does without geometry. A model
    trained with proxies (``prior.proxy``) learns how far to trust them from their mask value.
    """
    if not bool(lone.any()):
        return priors
    height, width = priors.shape[-2:]
    pick = lone.to(ref_K.device)
    depth = proxy_plane_depth(ref_K[pick], ref_c2w[pick], look_at_point(c2w.double()).float(), height, width)
    return _fill_empty(priors, ref_images[pick], depth, ref_K[pick], ref_c2w[pick], K, c2w, PROXY_CONFIDENCE)


def add_estimated(priors: torch.Tensor, ref_images: torch.Tensor, ref_K: torch.Tensor, ref_c2w: torch.Tensor,
                  K: torch.Tensor, c2w: torch.Tensor, lone: torch.Tensor, depth_net: MonoDepthNet) -> torch.Tensor:
    """``priors [F,4,H,W]`` of views ``K [F]``, ``c2w [F]`` whose empty pixels get the references marked
    ``lone [R]`` (no depth) warped through ``depth_net``'s one-photo depth (:meth:`MonoDepthNet.estimate`) at mask 1.

    The depth is scaled by the look-at point of all the views, references and targets, as the proxy plane is; mask 1
    as for measured depth (MVGenMaster's choice for one view). Training (``prior.stand_in: depth_net``) and sampling
    share it, so a model fine-tuned on it sees the same warps."""
    if not bool(lone.any()):
        return priors
    pick = lone.to(ref_K.device)
    with torch.no_grad():
        depth = depth_net.estimate(ref_images[pick], ref_K[pick], ref_c2w[pick], look_at_point(c2w.double()).float())
    return _fill_empty(priors, ref_images[pick], depth, ref_K[pick], ref_c2w[pick], K, c2w, 1.0)


def _fill_empty(priors: torch.Tensor, ref_images: torch.Tensor, depth: torch.Tensor, ref_K: torch.Tensor,
                ref_c2w: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, confidence: float) -> torch.Tensor:
    """``priors [F,4,H,W]`` whose empty pixels get ``ref_images`` warped through ``depth`` into views ``K``,
    ``c2w``, at mask ``confidence``."""
    cloud = fuse_depth(ref_images, depth, ref_K, ref_c2w, max_points=depth.numel())
    warped = cloud_priors(cloud, K, c2w, *priors.shape[-2:])
    warped = torch.cat([warped[:, :3], warped[:, 3:] * confidence], dim=1).to(priors)
    return torch.where(priors[:, 3:] > 0, priors, warped)


def without_depth(cloud: PointCloud | None, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int
                  ) -> torch.Tensor:
    """``[R]`` bool: the views ``K [R]``, ``c2w [R]`` (the references) of which ``cloud`` covers less than
    :data:`MIN_DEPTH_SHARE` (all of them without a cloud)."""
    if cloud is None:
        return torch.ones(K.shape[0], dtype=torch.bool)
    points_only = dataclasses.replace(cloud, hull=None)  # the hull is no depth: leave it out of the render
    own = cloud_priors(points_only, K.float().cpu(), c2w.float().cpu(), height, width)
    return view_share(own[:, 3]).cpu() < MIN_DEPTH_SHARE


def stand_ins_for_depthless(priors: torch.Tensor, cloud: PointCloud | None, ref_images: torch.Tensor,
                        ref_K: torch.Tensor, ref_c2w: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor,
                        depth_net: MonoDepthNet | None = None) -> torch.Tensor:
    """Sampling's priors ``[F,4,H,W]`` (views ``K``, ``c2w``) with a stand-in for every reference the references'
    ``cloud`` leaves without depth (:func:`without_depth`); all on the CPU.

    With ``depth_net`` the stand-in is that reference warped through its one-photo depth (:func:`add_estimated`):
    on the held-out scenes a blurred or 15 %-off exact depth held this way scores far better than the proxy plane.
    Without it, the proxy plane (:func:`add_proxy`) at mask :data:`PROXY_CONFIDENCE`.
    """
    lone = without_depth(cloud, ref_K, ref_c2w, *priors.shape[-2:])
    images, ref_K, ref_c2w = ref_images.float().cpu(), ref_K.float().cpu(), ref_c2w.float().cpu()
    K, c2w = K.float().cpu(), c2w.float().cpu()
    if depth_net is None:
        return add_proxy(priors, images, ref_K, ref_c2w, K, c2w, lone)
    return add_estimated(priors, images, ref_K, ref_c2w, K, c2w, lone, depth_net)


def with_stand_ins(priors: torch.Tensor, cloud: PointCloud | None, ref_images: torch.Tensor, ref_K: torch.Tensor,
                   ref_c2w: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, depth_net: MonoDepthNet | None,
                   uses_proxy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sampling's priors with :func:`stand_ins_for_depthless`, and the anchor weights of what ``depth_net`` added
    (:func:`estimated_anchor_weights`; None without a network). Without a network, only a model trained with the
    proxy (``uses_proxy``) gets stand-ins; the priors of any other come back unchanged."""
    if depth_net is None and not uses_proxy:
        return priors, None
    filled = stand_ins_for_depthless(priors, cloud, ref_images, ref_K, ref_c2w, K, c2w, depth_net)
    return filled, None if depth_net is None else estimated_anchor_weights(priors, filled)


def measured_pixels(prior: torch.Tensor) -> torch.Tensor:
    """``[..., 1, H, W]`` bool: the pixels of priors ``[..., 4, H, W]`` that show measured depth (mask 1), not a
    proxy's or the hull's guess (mask 0.5) and not a hole (0)."""
    return prior[..., 3:, :, :] >= 1.0 - 1e-6


def estimated_anchor_weights(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per-pixel anchor weights ``[..., 1, H, W]`` of priors ``after`` = ``before`` + what
    :func:`stand_ins_for_depthless` added: :data:`ESTIMATED_ANCHOR` on pixels it added at mask 1 (one-photo depth),
    1 elsewhere."""
    added = measured_pixels(after) & (before[..., 3:, :, :] == 0)
    return torch.where(added, ESTIMATED_ANCHOR, 1.0)


@dataclass(frozen=True)
class PriorAnchor:
    """Observed pixels held to the warped prior while sampling.

    The model reconstructs what the references saw only approximately (a small model at few DDIM steps leaves
    speckle on surfaces the prior shows exactly), so the sampler may pull its clean estimate toward the prior where
    the prior is valid, as inpainting samplers do with known pixels. ``latents [B,F,C,h,w]``: the prior encoded by
    the model's codec; ``mask [B,F,1|C,h,w]``: how strongly each latent is held (1 on measured pixels, less on
    estimated ones, 0 where nothing was measured); ``strength`` in [0, 1]
    (1: the prior replaces the estimate there); ``until``: the fraction of the steps anchored (the last steps stay
    free, so the model can smooth stereo errors and seams).
    """

    latents: torch.Tensor
    mask: torch.Tensor
    strength: float
    until: float

    def active(self, step: int, steps: int) -> bool:
        """Whether DDIM step ``step`` (0-based) of ``steps`` is anchored."""
        return self.strength > 0 and step < round(self.until * steps)


def prior_anchor(codec: LatentCodec, prior: torch.Tensor, strength: float, until: float = 1.0,
                 weights: torch.Tensor | None = None) -> PriorAnchor | None:
    """A :class:`PriorAnchor` from priors ``[B,F,4,H,W]`` encoded with ``codec`` (None when ``strength`` is 0);
    ``weights [B,F,1,H,W]`` scales the pull per pixel (:func:`estimated_anchor_weights`)."""
    if not 0.0 <= strength <= 1.0 or not 0.0 <= until <= 1.0:
        raise ValueError(f"anchor strength and until must lie in [0, 1], got {strength}, {until}")
    if strength == 0.0:
        return None
    b, f = prior.shape[:2]
    with torch.no_grad():
        latents = codec.encode(prior[:, :, :3].flatten(0, 1))
    held = measured_pixels(prior).float()
    if weights is not None:
        held = held * weights.to(held)
    covered = _latent_mask(codec, held.flatten(0, 1), prior.shape[-1] // latents.shape[-1])
    return PriorAnchor(latents.unflatten(0, (b, f)), covered.to(latents.dtype).unflatten(0, (b, f)), strength, until)


def _latent_mask(codec: LatentCodec, held: torch.Tensor, fold: int) -> torch.Tensor:
    """How strongly the anchor holds each latent, from per-pixel weights ``[N,1,H,W]`` (0 where not measured): with a
    pixel codec every latent channel is one pixel (space-to-depth), so exactly those pixels, also on a silhouette's
    partly covered blocks; with an autoencoder, the weakest weight of each latent's ``fold x fold`` footprint (0
    unless it is all measured)."""
    if isinstance(codec, PixelCodec):
        return F.pixel_unshuffle(held.expand(-1, 3, -1, -1), codec.factor)
    return -F.max_pool2d(-held, fold)
