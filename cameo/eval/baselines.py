"""Trivial predictions every model must beat, and the reference point cloud that the warped prior is built from.

A model score means nothing alone: ``cameo-eval nvs`` scores these on the same scenes and views beside the model.
- ``mean colour``: a flat image of the references' mean colour;
- ``nearest reference``: the reference whose camera centre is closest to the target's, copied;
- ``warped prior (stereo|gt depth)``: the references' point cloud rendered into the target (the model's prior,
  :mod:`cameo.priors`), holes filled with the references' mean colour;
- ``warped prior (proxy plane)``: every reference warped through the plane across the cameras' look-at point (the
  proxy a model trained with ``prior.proxy`` gets for a reference without depth), holes the mean colour;
- ``warped prior (stereo depth, one-photo depth where none)``, with a model folder's depth network: the stereo
  prior plus every reference stereo leaves without depth warped through that network's depth, which is what such
  a model is given; holes the mean colour.
"""

from __future__ import annotations

from typing import Literal

import torch

from cameo.geometry.cloud import PointCloud, fuse_depth, scene_point_cloud
from cameo.geometry.mono_depth import MonoDepthNet
from cameo.priors import PROXY_CONFIDENCE, add_proxy, cloud_priors, stand_ins_for_depthless

DepthSource = Literal["stereo", "gt", "none"]
DEPTH_SOURCES: tuple[str, ...] = ("stereo", "gt", "none")


def reference_cloud(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, gt_depth: torch.Tensor | None,
                    source: DepthSource, photos: tuple[torch.Tensor, torch.Tensor] | None = None
                    ) -> PointCloud | None:
    """The point cloud of ``N`` references (``images [N,3,H,W]``, ``K``, ``c2w``) as ``cameo-recon`` would have it.

    ``stereo``: two-view stereo between the two references, plain holes filled, run on ``photos`` (the references'
    images and intrinsics before they were resized for the model) when given, as ``cameo-recon`` runs it on the
    input photos (None for a single reference: one photo gives no depth); ``gt``: the scene's exact depth
    ``gt_depth [N,H,W]``; ``none``: no cloud.
    """
    if source == "none":
        return None
    if source == "gt":
        if gt_depth is None:
            raise ValueError("depth source 'gt' needs the scenes' ground-truth depth")
        return fuse_depth(images.float(), gt_depth.float(), K.float(), c2w.float(), max_points=gt_depth.numel())
    if images.shape[0] != 2:
        return None
    photo_images, photo_K = photos if photos is not None else (images, K)
    return scene_point_cloud(photo_images, photo_K, c2w)


def mean_colour(ref_images: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` flat images of the references' mean colour, ``[count,3,H,W]``."""
    mean = ref_images.mean(dim=(0, 2, 3))
    return mean[None, :, None, None].expand(count, -1, *ref_images.shape[-2:]).clone()


def nearest_reference(ref_images: torch.Tensor, ref_c2w: torch.Tensor, target_c2w: torch.Tensor) -> torch.Tensor:
    """For each target, the reference whose camera centre is nearest, ``[M,3,H,W]``."""
    distance = torch.cdist(target_c2w[:, :3, 3].float(), ref_c2w[:, :3, 3].float())
    return ref_images[distance.argmin(dim=1)].clone()


def warped_references(ref_images: torch.Tensor, cloud: PointCloud, target_K: torch.Tensor,
                      target_c2w: torch.Tensor) -> torch.Tensor:
    """The references' ``cloud`` rendered into the targets (its visual hull's colours too, as a model trained with
    guessed surfaces gets them), holes = the references' mean colour."""
    height, width = ref_images.shape[-2:]
    return _holes_mean_colour(cloud_priors(cloud, target_K, target_c2w, height, width, PROXY_CONFIDENCE), ref_images)


def proxy_warped_references(ref_images: torch.Tensor, ref_K: torch.Tensor, ref_c2w: torch.Tensor,
                            target_K: torch.Tensor, target_c2w: torch.Tensor) -> torch.Tensor:
    """The references warped into the targets through the proxy plane (:func:`cameo.priors.add_proxy`; the look-at
    point of references and targets together), holes = the references' mean colour."""
    height, width = ref_images.shape[-2:]
    K, c2w = torch.cat([ref_K, target_K]).float(), torch.cat([ref_c2w, target_c2w]).float()
    empty = torch.zeros(K.shape[0], 4, height, width)
    lone = torch.ones(ref_images.shape[0], dtype=torch.bool)
    prior = add_proxy(empty, ref_images.float(), ref_K.float(), ref_c2w.float(), K, c2w, lone)[ref_images.shape[0]:]
    return _holes_mean_colour(prior, ref_images)


def estimated_warped_references(ref_images: torch.Tensor, ref_K: torch.Tensor, ref_c2w: torch.Tensor,
                                target_K: torch.Tensor, target_c2w: torch.Tensor, cloud: PointCloud | None,
                                depth_net: MonoDepthNet) -> torch.Tensor:
    """The references' ``cloud`` (None: no stereo) rendered into the targets, plus every reference it leaves
    without depth warped through ``depth_net``'s one-photo depth (:func:`cameo.priors.stand_ins_for_depthless`), holes =
    the references' mean colour."""
    height, width = ref_images.shape[-2:]
    K, c2w = torch.cat([ref_K, target_K]).float(), torch.cat([ref_c2w, target_c2w]).float()
    prior = (torch.zeros(K.shape[0], 4, height, width) if cloud is None
             else cloud_priors(cloud, K, c2w, height, width, PROXY_CONFIDENCE))
    prior = stand_ins_for_depthless(prior, cloud, ref_images, ref_K, ref_c2w, K, c2w, depth_net)[ref_images.shape[0]:]
    return _holes_mean_colour(prior, ref_images)


def _holes_mean_colour(prior: torch.Tensor, ref_images: torch.Tensor) -> torch.Tensor:
    """The colours of targets' priors ``[M,4,H,W]``, the references' mean colour where nothing landed."""
    return torch.where(prior[:, 3:] > 0, prior[:, :3], mean_colour(ref_images, prior.shape[0]))


def trivial_predictions(ref_images: torch.Tensor, ref_K: torch.Tensor, ref_c2w: torch.Tensor, target_K: torch.Tensor,
                        target_c2w: torch.Tensor, clouds: dict[str, PointCloud | None],
                        depth_net: MonoDepthNet | None = None) -> dict[str, torch.Tensor]:
    """Every baseline's targets ``[M,3,H,W]`` by name; ``clouds``: the references' cloud per depth source (None =
    skipped); ``depth_net``: a model folder's one-photo depth network (adds the warp through it)."""
    out = {
        "mean colour": mean_colour(ref_images, target_K.shape[0]),
        "nearest reference": nearest_reference(ref_images, ref_c2w, target_c2w),
        "warped prior (proxy plane)": proxy_warped_references(ref_images, ref_K, ref_c2w, target_K, target_c2w),
    }
    for source, cloud in clouds.items():
        if cloud is not None:
            out[f"warped prior ({source} depth)"] = warped_references(ref_images, cloud, target_K, target_c2w)
    if depth_net is not None:
        out["warped prior (stereo depth, one-photo depth where none)"] = estimated_warped_references(
            ref_images, ref_K, ref_c2w, target_K, target_c2w, clouds.get("stereo"), depth_net)
    return out
