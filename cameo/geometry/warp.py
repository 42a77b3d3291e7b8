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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat pixel index, depth, point index and squared distance from the point's projected centre to the pixel's
    centre of every (point, footprint pixel) pair that lands in the image, and whether the pixel is the one the
    point's centre falls in.

    ``uv [V,N,2]``, ``z [V,N]`` (0 = not visible), ``radius [V,N]`` long; returns 1-D tensors over all pairs, the
    pixel index counting over ``V * H * W``. Points are grouped by radius so that each pays only for its own
    footprint (most points cover one pixel).
    """
    n = z.shape[1]
    col0, row0 = torch.floor(uv[..., 0]).long(), torch.floor(uv[..., 1]).long()
    view0 = torch.arange(z.shape[0], device=uv.device)[:, None].expand_as(col0)
    point0 = torch.arange(n, device=uv.device)[None, :].expand_as(col0)
    pixels, depths, points, distances, owns = [], [], [], [], []
    for r in torch.unique(radius[z > 0]).tolist():
        sel = (radius == r) & (z > 0)
        span = torch.arange(-r, r + 1, device=uv.device)
        dy, dx = (o.reshape(-1) for o in torch.meshgrid(span, span, indexing="ij"))
        col, row = col0[sel][:, None] + dx, row0[sel][:, None] + dy  # [M, O]
        keep = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        pixel = (view0[sel][:, None] * height + row) * width + col
        pixels.append(pixel[keep])
        depths.append(z[sel][:, None].expand_as(col)[keep])
        points.append(point0[sel][:, None].expand_as(col)[keep])
        centre = uv[sel]
        distance = (col + 0.5 - centre[:, :1]) ** 2 + (row + 0.5 - centre[:, 1:]) ** 2
        distances.append(distance.to(z.dtype)[keep])
        owns.append(((dx == 0) & (dy == 0)).expand_as(col)[keep])
    if not pixels:
        empty = torch.zeros(0, dtype=torch.long, device=uv.device)
        return empty, z.new_zeros(0), empty, z.new_zeros(0), empty.bool()
    return torch.cat(pixels), torch.cat(depths), torch.cat(points), torch.cat(distances), torch.cat(owns)


def _scatter_min(index: torch.Tensor, values: torch.Tensor, size: int, fill: float | int) -> torch.Tensor:
    """Per slot of ``size`` the least of ``values`` scattered to it by ``index`` (``fill`` where none lands)."""
    out = torch.full((size,), fill, device=values.device, dtype=values.dtype)
    return out.scatter_reduce_(0, index, values, reduce="amin")


def _pick_winners(
    pixel: torch.Tensor, depth: torch.Tensor, point: torch.Tensor, distance: torch.Tensor, total: int,
    num_points: int, depth_tolerance: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pixel the winning point index (``num_points`` where empty) and its depth, and per candidate whether it
    lies on its pixel's front surface.

    The front surface is every candidate within ``depth_tolerance`` (relative, plus as much again per pixel between
    the candidate's projected centre and the pixel's) of the pixel's nearest; on it the point whose projected centre
    lies closest to the pixel's centre wins. A plain nearest-depth test would let a neighbour's footprint beat a
    pixel's own point wherever the surface slants toward the camera, shifting texture by up to a footprint (badly so
    when a dense cloud is rendered small, as the 256 px cloud into 64 px priors).
    """
    # a footprint stands in for the surface at its centre, so its depth some pixels away is only known up to the
    # surface's slope: each pixel of distance adds ``depth_tolerance`` before comparing it with the pixel's own point
    reach = depth * (1.0 + depth_tolerance * distance.sqrt())
    zmin = _scatter_min(pixel, reach, total, float("inf"))
    front = reach <= zmin[pixel] * (1.0 + depth_tolerance)
    closest = _scatter_min(pixel[front], distance[front], total, float("inf"))
    best = front & (distance <= closest[pixel])
    winner = _scatter_min(pixel[best], point[best], total, num_points)
    won = best & (point == winner[pixel])
    depth_map = torch.zeros(total, device=depth.device, dtype=depth.dtype)
    depth_map[pixel[won]] = depth[won]
    return winner, depth_map, front


def _average_own(pixel: torch.Tensor, point: torch.Tensor, chosen: torch.Tensor, colors: torch.Tensor,
                 rgb: torch.Tensor) -> torch.Tensor:
    """``rgb [P,C]`` with each pixel that ``chosen`` candidates fall in replaced by their mean colour: a cloud
    denser than the target pixels is area-averaged like a downsampled image instead of point-sampled (aliased)."""
    target = pixel[chosen]
    summed = torch.zeros_like(rgb).index_add_(0, target, colors[point[chosen]].to(rgb.dtype))
    count = torch.bincount(target, minlength=rgb.shape[0]).to(rgb.dtype)[:, None]
    return torch.where(count > 0, summed / count.clamp_min(1), rgb)


def render_points(
    points: torch.Tensor,
    colors: torch.Tensor,
    K: torch.Tensor,
    c2w: torch.Tensor,
    height: int,
    width: int,
    sizes: torch.Tensor | None = None,
    max_radius: int = 2,
    depth_tolerance: float = 0.05,
) -> WarpedViews:
    """Render ``points [N,3]`` with ``colors [N,C]`` into cameras ``K [V,3,3]``, ``c2w [V,4,4]`` (OpenCV).

    ``sizes [N]`` is each point's world-space radius (a source pixel's footprint: ``z / f * 0.5``); from its
    projected radius in pixels follows the square each point covers (``None``: one pixel), up to ``max_radius``: a
    point seen at its source's scale covers 3x3 pixels so that a warped surface has no gaps, a dense cloud seen
    from afar one pixel. Each pixel shows the front surface (candidates within ``depth_tolerance`` of the nearest
    depth, more for footprints reaching from further away): the mean colour of its front points whose centres fall
    inside it, else the point projected closest to its centre, ties broken by the lower point index (deterministic).
    """
    v_count = K.shape[0]
    finite = torch.isfinite(points).all(-1)
    points, colors = points[finite], colors[finite]
    uv, z = project_points(points[None].expand(v_count, -1, -1), K, c2w)  # [V,N,2], [V,N]
    ahead = torch.isfinite(z) & (z > 1e-6)
    z = torch.where(ahead, z, torch.zeros_like(z))
    uv = torch.where(ahead[..., None], uv, torch.full_like(uv, -1e6))  # behind the camera: off-image
    if sizes is None or max_radius == 0:
        radius = torch.zeros_like(z, dtype=torch.long)
    else:
        half = sizes[finite][None] * K[:, 0, 0][:, None] / z.clamp_min(1e-8)  # footprint half-width in pixels
        # points 2h pixels apart leave no pixel without a centre while 2h < 1 (h < 0.35 with a margin for
        # irregular spacing); wider spacing needs 2r + 1 pixels per point to cover it
        radius = torch.ceil(half - 0.35).clamp(0, max_radius).long()
    pixel, depth, point, distance, own = _splat_targets(uv, z, radius, height, width)
    total = v_count * height * width
    winner, depth_map, front = _pick_winners(pixel, depth, point, distance, total, points.shape[0], depth_tolerance)
    mask = winner < points.shape[0]
    rgb = torch.zeros(total, colors.shape[-1], device=colors.device, dtype=colors.dtype)
    rgb[mask] = colors[winner[mask]]
    rgb = _average_own(pixel, point, front & own, colors, rgb)
    return WarpedViews(
        rgb=rgb.view(v_count, height, width, -1).permute(0, 3, 1, 2).contiguous(),
        mask=mask.view(v_count, height, width),
        depth=depth_map.view(v_count, height, width),
    )
