"""A PNG grid a person can check by eye: views, colour-mapped depth, and correspondences of view 0 in view 1."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F

from cameo.atomic import atomic_path
from cameo.cameras import invert_pose
from cameo.correspondence import token_correspondences


def depth_to_rgb(depth: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` z-depth -> ``[3, H, W]`` coloured by inverse depth (near = yellow, far = blue; invalid = black)."""
    depth = 1.0 / depth
    finite = torch.isfinite(depth)
    if not finite.any():
        return torch.zeros(3, *depth.shape)
    lo, hi = depth[finite].min(), depth[finite].max()
    x = 1.0 - ((depth - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    rgb = torch.stack([1.0 - 0.8 * x, 0.85 - 0.45 * x, 0.1 + 0.8 * x])
    return torch.where(finite[None], rgb, torch.zeros_like(rgb))


def correspondence_overlay(sample: dict, token_hw: tuple[int, int], i: int = 0, j: int = 1) -> torch.Tensor:
    """``[3, H, 2W]``: view i with each valid token painted by its position, view j painted at the matches."""
    corr = token_correspondences(sample["pointmaps"][None], token_hw)
    h, w = token_hw
    rows, cols = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    code = torch.stack([rows, cols, 1.0 - 0.5 * (rows + cols)]).flatten(1)  # [3, N] colour per token position
    valid, index = corr.valid[0, i, j], corr.index[0, i, j]
    paint_i = torch.zeros(4, h * w)
    paint_i[:3, valid], paint_i[3, valid] = code[:, valid], 1.0
    paint_j = torch.zeros(4, h * w)
    paint_j[:3, index[valid]], paint_j[3, index[valid]] = code[:, valid], 1.0
    out = []
    for view, paint in ((i, paint_i), (j, paint_j)):
        img = sample["images"][view]
        up = F.interpolate(paint.view(4, h, w)[None], size=img.shape[-2:], mode="nearest")[0]
        grey = img.mean(0, keepdim=True).expand(3, -1, -1) * 0.5
        out.append(torch.where(up[3:] > 0, 0.35 * img + 0.65 * up[:3], grey))
    return torch.cat(out, -1)


def pointmap_depth(sample: dict) -> torch.Tensor:
    """z-depth ``[F, H, W]`` of each view's pointmap in its own camera (NaN where the pointmap is invalid)."""
    w2c = invert_pose(sample["c2w"].float())
    pts = sample["pointmaps"].float().flatten(2)  # [F, 3, HW]
    z = (w2c[:, 2:3, :3] @ pts)[:, 0] + w2c[:, 2:3, 3]
    return z.view(sample["pointmaps"].shape[0], *sample["pointmaps"].shape[-2:])


def sample_grid(sample: dict, token_hw: tuple[int, int] = (16, 16), scale: int = 4) -> np.ndarray:
    """uint8 grid: row 1 views (references outlined in red), row 2 depth (the dataset's, else the pointmaps'), row 3
    correspondences view 0 -> 1."""
    images = sample["images"].clone()
    for v in torch.nonzero(sample["ref_mask"]).flatten():
        images[v, :, :1], images[v, :, -1:], images[v, :, :, :1], images[v, :, :, -1:] = (
            torch.tensor([1.0, 0, 0])[:, None, None],) * 4
    row1 = torch.cat(list(images), -1)
    depth = sample["depth"] if "depth" in sample else pointmap_depth(sample)
    row2 = torch.cat([depth_to_rgb(d) for d in depth], -1)
    corr = correspondence_overlay(sample, token_hw)
    row3 = torch.cat([corr, torch.zeros(3, corr.shape[1], row1.shape[-1] - corr.shape[-1])], -1)
    grid = torch.cat([row1, row2, row3], 1)
    grid = F.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    return (grid.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).byte().numpy()


def write_png_atomic(path: Path | str, image: np.ndarray) -> Path:
    """Write a PNG atomically."""
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image)
    return Path(path)
