"""A picture to judge the inputs' geometry by eye: inputs, their depth and confidence, the cloud seen from elsewhere."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .cloud import PointCloud, render_cloud


def inverse_depth_colours(depth: torch.Tensor) -> torch.Tensor:
    """``[V,H,W]`` z-depth -> ``[V,3,H,W]`` coloured by inverse depth on a scale shared by all views (near =
    yellow, far = blue, invalid = black), so the two inputs compare directly."""
    inv = 1.0 / depth
    finite = torch.isfinite(inv)
    if not finite.any():
        return torch.zeros(depth.shape[0], 3, *depth.shape[-2:])
    lo, hi = inv[finite].quantile(0.01), inv[finite].quantile(0.99)
    x = 1.0 - ((inv - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    rgb = torch.stack([1.0 - 0.8 * x, 0.85 - 0.45 * x, 0.1 + 0.8 * x], 1)
    return torch.where(finite[:, None], rgb, torch.zeros_like(rgb))


def _row(tiles: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """Tiles ``[3,h,w]`` resized to ``(height, width)`` side by side with a 4-px white gap."""
    gap = torch.ones(3, height, 4)
    out = []
    for tile in tiles:
        out += [F.interpolate(tile[None].float(), size=(height, width), mode="nearest")[0], gap]
    return torch.cat(out[:-1], -1)


def geometry_picture(images: torch.Tensor, depth: torch.Tensor, confidence: torch.Tensor, cloud: PointCloud | None,
                     K: torch.Tensor, c2w: torch.Tensor, tile: int = 192) -> np.ndarray:
    """RGB uint8 grid: row 1 the inputs ``[V,3,H,W]`` and their depth ``[V,H,W]`` (NaN invalid) and confidence;
    row 2 the ``cloud`` rendered into cameras ``K [M,3,3]``, ``c2w [M,4,4]`` of the inputs' size (black = empty)."""
    height, width = images.shape[-2:]
    th, tw = tile, max(1, round(tile * width / height))
    top = list(images) + list(inverse_depth_colours(depth)) + [c.expand(3, -1, -1) for c in confidence[:, None]]
    rows = [_row(top, th, tw)]
    if cloud is not None and len(cloud) > 0:
        rows.append(_row(list(render_cloud(cloud, K, c2w, height, width).rgb), th, tw))
    full = max(r.shape[-1] for r in rows)
    padded = [F.pad(r, (0, full - r.shape[-1]), value=1.0) for r in rows]
    grid = torch.cat([t for r in padded for t in (r, torch.ones(3, 4, full))][:-1], 1)
    return (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
