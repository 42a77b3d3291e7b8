"""Where the Gaussians start: the inputs' point cloud, plus a sparse fill of the volume the cameras see.

With a point cloud (stereo or depth maps of the inputs), every point becomes a Gaussian at its position and colour
with a size from its pixel footprint; the budget is met by a random subset whose sizes grow to cover the same area.
A sparse fill of random points inside the cameras' view, away from space the inputs saw to be empty, gives the
generated views something to move where no input looked. Without a cloud the start is that fill (simple_trainer's
random start) plus Gaussians along the inputs' own pixel rays at a guessed depth (:func:`along_input_rays`), so the
inputs re-render from the first step and the generated views only have to move them. All coordinates are the fit's
normalised frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from cameo.cameras import focus_depth, look_at_point, project_points, unproject_depth
from recon.views import FitViews

FREE_SPACE_MARGIN = 0.05  # a fill point this much (relative) in front of an observed surface lies in seen-empty space
ZBUFFER_SIDE = 96  # grid of the observed depth used for the free-space test (coarse is enough)


class PointCloudLike(Protocol):
    """What a point cloud gives the fit (``cameo.geometry.cloud.PointCloud``): world points, colours, sizes."""

    points: torch.Tensor  # [N, 3]
    colors: torch.Tensor  # [N, 3] in [0, 1]
    sizes: torch.Tensor  # [N] world-space radius of the pixel footprint the point came from (half a pixel)


@dataclass
class InitGaussians:
    """Initial isotropic Gaussians: centres, colours in [0, 1], standard deviations and opacities in (0, 1)."""

    means: torch.Tensor  # [P, 3]
    colors: torch.Tensor  # [P, 3]
    sizes: torch.Tensor  # [P]
    opacities: torch.Tensor  # [P]


def from_cloud(points: torch.Tensor, colors: torch.Tensor, sizes: torch.Tensor, budget: int, opacity: float,
               size_factor: float, gen: torch.Generator) -> InitGaussians:
    """One Gaussian per cloud point (a random subset of ``budget`` if larger, its sizes grown by
    ``sqrt(N / budget)`` so the subset covers the same surface), std = ``size_factor`` x the footprint."""
    n = points.shape[0]
    keep = torch.randperm(n, generator=gen)[:budget].to(points.device) if n > budget else None
    grow = math.sqrt(n / budget) if keep is not None else 1.0
    pick = (lambda x: x[keep]) if keep is not None else (lambda x: x)  # noqa: E731
    std = pick(sizes).float().clamp_min(1e-8) * size_factor * grow
    return InitGaussians(pick(points).float(), pick(colors).float().clamp(0, 1), std,
                         torch.full_like(std, opacity))


def fill(views: FitViews, n: int, opacity: float, size_factor: float, gen: torch.Generator,
         surface: torch.Tensor | None = None) -> InitGaussians:
    """``n`` random Gaussians seen by some camera, coloured from the views that see them; with ``surface``
    points (the cloud), those in front of what an observed camera saw there are rejected (seen to be empty), which
    may leave none."""
    points = random_visible_points(views, n, gen, surface)
    if len(points) == 0:
        return InitGaussians(points, points.new_zeros(0, 3), points.new_zeros(0), points.new_zeros(0))
    colors = sample_colors(points, views)
    dist, _ = cKDTree(points.cpu().numpy()).query(points.cpu().numpy(), k=min(4, len(points)))
    dist = torch.as_tensor(dist, dtype=points.dtype).reshape(len(points), -1)[:, 1:]
    std = size_factor * (dist.mean(-1).clamp_min(1e-6) if dist.shape[1] else torch.full((len(points),), 0.02))
    return InitGaussians(points, colors, std.to(points.device), torch.full((len(points),), opacity).to(points))


def along_input_rays(views: FitViews, n: int, opacity: float, gen: torch.Generator) -> InitGaussians:
    """``n`` Gaussians on random pixels of the observed views of weight > 0, in the pixel's colour, at the depth of
    the cameras' look-at point in that view (its distance when it lies behind the camera), sized to tile the image:
    where no depth is known, a guess the inputs re-render from exactly and the generated views move to its place."""
    index = torch.nonzero(views.weighted_observed).flatten().tolist()
    target = look_at_point(views.c2w)
    parts = []
    for j, i in enumerate(index):
        count = n // len(index) + int(j < n % len(index))
        image, K, c2w = views.images[i].to(views.c2w), views.K[i], views.c2w[i]
        height, width = image.shape[-2:]
        depth = float(focus_depth(target, K, c2w))
        pick = torch.randint(0, height * width, (count,), generator=gen)
        points = unproject_depth(torch.full((height, width), depth).to(c2w), K, c2w).reshape(-1, 3)[pick]
        colors = image.reshape(3, -1)[:, pick].T
        focal = 0.5 * float(K[0, 0] + K[1, 1])
        std = torch.full((count,), 0.5 * depth / focal * math.sqrt(height * width / max(count, 1))).to(c2w)
        parts.append(InitGaussians(points, colors.clamp(0, 1), std, torch.full_like(std, opacity)))
    return concat(parts)


def concat(parts: list[InitGaussians]) -> InitGaussians:
    """One initialisation from several."""
    return InitGaussians(*(torch.cat([getattr(p, k) for p in parts]) for k in ("means", "colors", "sizes",
                                                                                "opacities")))


def _in_view(points: torch.Tensor, views: FitViews) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Projections ``uv [V,P,2]``, depths ``z [V,P]`` and in-image flags ``[V,P]`` of points in every view."""
    V = len(views)
    uv, z = project_points(points.expand(V, -1, -1), views.K.to(points), views.c2w.to(points))
    hw = torch.tensor(views.sizes(), dtype=points.dtype, device=points.device)  # [V, 2] (h, w)
    inside = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 1] >= 0)
    inside &= (uv[..., 0] < hw[:, None, 1]) & (uv[..., 1] < hw[:, None, 0])
    return uv, z, inside


def random_visible_points(views: FitViews, n: int, gen: torch.Generator,
                          surface: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` uniform points in a ball around the cameras' look-at point that some camera sees (and, given
    ``surface``, that lie in no observed camera's seen-empty space)."""
    c2w = views.c2w
    target = look_at_point(c2w)
    radius = 0.5 * (c2w[:, :3, 3] - target).norm(dim=-1).median().clamp_min(1e-3)
    zbuf = _observed_depth(surface, views) if surface is not None else None
    kept, total = [], 0
    for _ in range(20):  # rejection sampling; a few rounds suffice when the cameras face the target
        d = torch.randn(4 * n, 3, generator=gen)
        r = torch.rand(4 * n, 1, generator=gen) ** (1 / 3)
        pts = (target.cpu() + radius.cpu() * r * F.normalize(d, dim=-1)).to(c2w)
        ok = _in_view(pts, views)[2].any(0)
        if zbuf is not None:
            ok &= ~_in_seen_empty_space(pts, views, zbuf)
        kept.append(pts[ok])
        total += int(ok.sum())
        if total >= n:
            break
    pts = torch.cat(kept)[:n]
    if pts.shape[0] == 0 and surface is None:  # with a surface, an empty fill is a valid answer
        raise ValueError("no random initial point is visible in any camera; pass a point cloud")
    return pts


def _observed_depth(surface: torch.Tensor, views: FitViews) -> torch.Tensor:
    """Nearest ``surface`` depth per cell of a coarse grid over each observed view ``[O, gh * gw]`` (inf where no
    point lands)."""
    sub = _subset(views, torch.nonzero(views.observed).flatten())
    uv, z, inside = _in_view(surface, sub)
    cell = _cells(uv, sub)
    rows = torch.arange(len(sub))[:, None].expand_as(cell)
    cells = _grid(sub)[0] * _grid(sub)[1]
    zbuf = torch.full((len(sub) * cells,), math.inf, dtype=surface.dtype)
    return zbuf.scatter_reduce(0, rows[inside] * cells + cell[inside], z[inside], "amin").view(len(sub), -1)


def observed_coverage(surface: torch.Tensor, views: FitViews) -> float:
    """Share of the observed views' coarse grid cells in which some ``surface`` point lands (0 to 1): how much of
    what the inputs show the cloud explains; the rest must come from the fill."""
    return float(torch.isfinite(_observed_depth(surface, views)).float().mean())


def _in_seen_empty_space(points: torch.Tensor, views: FitViews, zbuf: torch.Tensor) -> torch.Tensor:
    """Points in front of the observed surface (by more than the margin) in some observed view ``[P]``."""
    sub = _subset(views, torch.nonzero(views.observed).flatten())
    uv, z, inside = _in_view(points, sub)
    seen_depth = torch.gather(zbuf, 1, _cells(uv, sub))
    # cells without a surface point say nothing (stereo found no depth there), so only finite depths reject
    return (inside & torch.isfinite(seen_depth) & (z < seen_depth * (1 - FREE_SPACE_MARGIN))).any(0)


def _grid(views: FitViews) -> tuple[int, int]:
    """Coarse grid (rows, cols): at most ``ZBUFFER_SIDE`` a side and no finer than the smallest view."""
    sizes = torch.tensor(views.sizes())
    return min(ZBUFFER_SIDE, int(sizes[:, 0].min())), min(ZBUFFER_SIDE, int(sizes[:, 1].min()))


def _cells(uv: torch.Tensor, views: FitViews) -> torch.Tensor:
    """Flat coarse-grid cell ``[V,P]`` of pixel positions (each view's image mapped onto the grid)."""
    gh, gw = _grid(views)
    hw = torch.tensor(views.sizes(), dtype=uv.dtype)
    col = (uv[..., 0] / hw[:, None, 1] * gw).long().clamp(0, gw - 1)
    row = (uv[..., 1] / hw[:, None, 0] * gh).long().clamp(0, gh - 1)
    return row * gw + col


def _subset(views: FitViews, index: torch.Tensor) -> FitViews:
    return FitViews([views.images[i] for i in index.tolist()], views.K[index], views.c2w[index],
                    views.observed[index], views.weights[index])


def sample_colors(points: torch.Tensor, views: FitViews) -> torch.Tensor:
    """Mean image colour at each point's projection over the views that see it, weighted by the view weights
    (grey where no view of weight > 0 sees it)."""
    uv, z, inside = _in_view(points, views)
    total = torch.zeros(points.shape[0], 1, dtype=points.dtype)
    acc = torch.zeros(points.shape[0], 3, dtype=points.dtype)
    for i, image in enumerate(views.images):
        h, w = image.shape[-2:]
        grid = torch.stack([uv[i, :, 0] / w * 2 - 1, uv[i, :, 1] / h * 2 - 1], -1)[None, :, None]  # [1,P,1,2]
        rgb = F.grid_sample(image[None].to(points), grid, align_corners=False)[0, :, :, 0].T  # [P, 3]
        seen = inside[i].to(points.dtype)[:, None] * float(views.weights[i])
        acc += rgb * seen
        total += seen
    return torch.where(total > 0, acc / total.clamp_min(1e-12), torch.full_like(acc, 0.5))
