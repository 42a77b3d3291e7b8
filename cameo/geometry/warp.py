"""Forward warping: z-buffered splatting of a coloured point cloud into many cameras at once.

Why by hand: the warped-reference prior needs a nearest-surface render of a point cloud into 98 cameras in one
vectorised call on CPU; gsplat's rasteriser is CUDA-only and kornia/OpenCV offer backward (depth-to-source)
warps, not z-buffered forward splats. Each point covers a small square whose radius in pixels follows its world-
space size, so surfaces seen from closer than their source view still come out solid instead of as speckle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cameo.cameras import project_points


@dataclass
class WarpedViews:
    """Per camera: ``rgb [V,3,H,W]`` (0 where empty), ``mask [V,H,W]`` bool, ``depth [V,H,W]`` z (0 where empty)."""

    rgb: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor


def _splat_targets(
    uv: torch.Tensor, z: torch.Tensor, radius: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat pixel index, depth and point index of every (point, footprint pixel) pair that lands in the image.

    ``uv [V,N,2]``, ``z [V,N]`` (0 = not visible), ``radius [V,N]`` long; returns 1-D tensors over all pairs, the
    pixel index counting over ``V * H * W``. Points are grouped by radius so that each pays only for its own
    footprint (most points cover one pixel).
    """
    n = z.shape[1]
    col0, row0 = torch.floor(uv[..., 0]).long(), torch.floor(uv[..., 1]).long()
    view0 = torch.arange(z.shape[0], device=uv.device)[:, None].expand_as(col0)
    point0 = torch.arange(n, device=uv.device)[None, :].expand_as(col0)
    pixels, depths, points = [], [], []
    for r in torch.unique(radius[z > 0]).tolist():
        sel = (radius == r) & (z > 0)
        span = torch.arange(-r, r + 1, device=uv.device)
        dy, dx = (o.reshape(-1) for o in torch.meshgrid(span, span, indexing="ij"))
        col, row = col0[sel][:, None] + dx, row0[sel][:, None] + dy  # [M, O]
        keep = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        pixel = (view0[sel][:, None] * height + row) * width + col
        pixels.append(pixel[keep])
        # a point's own pixel beats a neighbour's footprint at equal depth (exact self-warps): 1e-6 per ring
        ring = 1.0 + 1e-6 * torch.maximum(dx.abs(), dy.abs()).to(z.dtype)
        depths.append((z[sel][:, None] * ring)[keep])
        points.append(point0[sel][:, None].expand_as(col)[keep])
    if not pixels:
        empty = torch.zeros(0, dtype=torch.long, device=uv.device)
        return empty, z.new_zeros(0), empty
    return torch.cat(pixels), torch.cat(depths), torch.cat(points)


def render_points(
    points: torch.Tensor,
    colors: torch.Tensor,
    K: torch.Tensor,
    c2w: torch.Tensor,
    height: int,
    width: int,
    sizes: torch.Tensor | None = None,
    max_radius: int = 2,
) -> WarpedViews:
    """Render ``points [N,3]`` with ``colors [N,C]`` into cameras ``K [V,3,3]``, ``c2w [V,4,4]`` (OpenCV).

    ``sizes [N]`` is each point's world-space radius (a source pixel's footprint: ``z / f * 0.5``); its projected
    radius in pixels, rounded up and clamped to ``max_radius``, sets the square each point covers (``None``: one
    pixel; a point seen at its source's scale covers 3x3 pixels, so a warped surface has no gaps). The nearest point wins each pixel (ties broken by the lower point index, so results are deterministic).
    """
    v_count = K.shape[0]
    device, dtype = points.device, points.dtype
    finite = torch.isfinite(points).all(-1)
    points, colors = points[finite], colors[finite]
    uv, z = project_points(points[None].expand(v_count, -1, -1), K, c2w)  # [V,N,2], [V,N]
    ahead = torch.isfinite(z) & (z > 1e-6)
    z = torch.where(ahead, z, torch.zeros_like(z))
    uv = torch.where(ahead[..., None], uv, torch.full_like(uv, -1e6))  # behind the camera: off-image
    if sizes is None or max_radius == 0:
        radius = torch.zeros_like(z, dtype=torch.long)
    else:
        focal = K[:, 0, 0][:, None]
        # a footprint of half-width h pixels covers the pixels within ceil(h) of the one the centre falls in:
        # projected centres land anywhere inside a pixel, so anything smaller leaves gaps between neighbours
        radius = torch.ceil(sizes[finite][None] * focal / z.clamp_min(1e-8) - 1e-3).clamp(0, max_radius).long()
    pixel, depth, point = _splat_targets(uv, z, radius, height, width)
    total = v_count * height * width
    zbuf = torch.full((total,), float("inf"), device=device, dtype=dtype)
    zbuf.scatter_reduce_(0, pixel, depth, reduce="amin")
    front = depth <= zbuf[pixel]
    winner = torch.full((total,), points.shape[0], device=device, dtype=torch.long)
    winner.scatter_reduce_(0, pixel[front], point[front], reduce="amin")
    mask = winner < points.shape[0]
    rgb = torch.zeros(total, colors.shape[-1], device=device, dtype=colors.dtype)
    rgb[mask] = colors[winner[mask]]
    depth_map = torch.where(mask, zbuf, torch.zeros_like(zbuf))
    return WarpedViews(
        rgb=rgb.view(v_count, height, width, -1).permute(0, 3, 1, 2).contiguous(),
        mask=mask.view(v_count, height, width),
        depth=depth_map.view(v_count, height, width),
    )
