"""Trivial predictions every model must beat, and the reference depth that the warped prior is built from.

A model score means nothing alone: ``cameo-eval nvs`` scores these on the same scenes and views beside the model.
- ``mean colour``: a flat image of the references' mean colour;
- ``nearest reference``: the reference whose camera centre is closest to the target's, copied;
- ``warped prior (stereo|gt depth)``: the references forward-warped into the target through their depth
  (the model's prior, :mod:`cameo.priors`), holes filled with the references' mean colour.
"""

from __future__ import annotations

from typing import Literal

import torch

from cameo.priors import depth_cloud, render_priors

DepthSource = Literal["stereo", "gt", "none"]
DEPTH_SOURCES: tuple[str, ...] = ("stereo", "gt", "none")


def reference_depth(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, gt_depth: torch.Tensor | None,
                    source: DepthSource) -> torch.Tensor | None:
    """Depth ``[N,H,W]`` (NaN invalid) of ``N`` references as ``cameo-recon`` would have it.

    ``stereo``: two-view stereo between the two references, plain holes filled (None for a single reference: one
    photo gives no depth); ``gt``: the scene's exact depth; ``none``: no depth.
    """
    if source == "none":
        return None
    if source == "gt":
        if gt_depth is None:
            raise ValueError("depth source 'gt' needs the scenes' ground-truth depth")
        return gt_depth
    if images.shape[0] != 2:
        return None
    from cameo.geometry.cloud import stereo_depth

    return stereo_depth(images, K, c2w)[0]


def mean_colour(ref_images: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` flat images of the references' mean colour, ``[count,3,H,W]``."""
    mean = ref_images.mean(dim=(0, 2, 3))
    return mean[None, :, None, None].expand(count, -1, *ref_images.shape[-2:]).clone()


def nearest_reference(ref_images: torch.Tensor, ref_c2w: torch.Tensor, target_c2w: torch.Tensor) -> torch.Tensor:
    """For each target, the reference whose camera centre is nearest, ``[M,3,H,W]``."""
    distance = torch.cdist(target_c2w[:, :3, 3].float(), ref_c2w[:, :3, 3].float())
    return ref_images[distance.argmin(dim=1)].clone()


def warped_references(ref_images: torch.Tensor, ref_depth: torch.Tensor, ref_K: torch.Tensor, ref_c2w: torch.Tensor,
                      target_K: torch.Tensor, target_c2w: torch.Tensor) -> torch.Tensor:
    """The references warped into the targets through ``ref_depth``, holes = the references' mean colour."""
    height, width = ref_images.shape[-2:]
    prior = render_priors(*depth_cloud(ref_images.float(), ref_depth.float(), ref_K.float(), ref_c2w.float()),
                          target_K.float(), target_c2w.float(), height, width)
    fill = mean_colour(ref_images, target_K.shape[0])
    return torch.where(prior[:, 3:] > 0, prior[:, :3], fill)


def trivial_predictions(ref_images: torch.Tensor, ref_K: torch.Tensor, ref_c2w: torch.Tensor, target_K: torch.Tensor,
                        target_c2w: torch.Tensor, depths: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """Every baseline's targets ``[M,3,H,W]`` by name; ``depths``: reference depth per source (None = skipped)."""
    out = {
        "mean colour": mean_colour(ref_images, target_K.shape[0]),
        "nearest reference": nearest_reference(ref_images, ref_c2w, target_c2w),
    }
    for source, depth in depths.items():
        if depth is not None:
            out[f"warped prior ({source} depth)"] = warped_references(ref_images, depth, ref_K, ref_c2w, target_K,
                                                                      target_c2w)
    return out
