"""Batched ray-cast renderer for procedural scenes: RGB (supersampled) and exact z-depth for many views at once."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cameo.cameras import camera_rays

from .primitives import Primitive


@dataclass
class SceneSpec:
    """Everything needed to render a procedural scene (static, Lambertian, view-independent textures)."""

    primitives: list[Primitive]
    light_dir: tuple[float, float, float] = (0.3, 0.2, 0.93)  # unit, towards the light
    ambient: float = 0.45
    sky: tuple[tuple[float, float, float], tuple[float, float, float]] = ((0.85, 0.9, 1.0), (0.45, 0.6, 0.85))
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)


def _sample_offsets(supersample: int) -> list[tuple[float, float]]:
    """Sub-pixel offsets of a regular ``s x s`` grid (just the pixel centre for ``s = 1``)."""
    grid = [(k + 0.5) / supersample - 0.5 for k in range(supersample)]
    return [(du, dv) for dv in grid for du in grid]


def _nearest_hit(scene: SceneSpec, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Nearest hit over all primitives: ``t [R]`` (inf = miss), normal ``[R, 3]``, face id and primitive index."""
    n = len(origins)
    t_best = torch.full((n,), float("inf"), dtype=dirs.dtype)
    normal = torch.zeros(n, 3, dtype=dirs.dtype)
    face = torch.zeros(n, dtype=torch.int64)
    prim = torch.full((n,), -1, dtype=torch.int64)
    for k, p in enumerate(scene.primitives):
        hit = p.intersect(origins, dirs)
        closer = hit.t < t_best
        t_best = torch.where(closer, hit.t, t_best)
        normal = torch.where(closer[:, None], hit.normal, normal)
        face = torch.where(closer, hit.face, face)
        prim = torch.where(closer, torch.full_like(prim, k), prim)
    return t_best, normal, face, prim


def cast(scene: SceneSpec, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shade rays ``[R, 3]``: returns colour ``[R, 3]`` and hit distance ``t [R]`` (inf where nothing is hit)."""
    t_best, normal, face, prim = _nearest_hit(scene, origins, dirs)
    up = torch.tensor(scene.up, dtype=dirs.dtype)
    sky_lo, sky_hi = (torch.tensor(c, dtype=dirs.dtype) for c in scene.sky)
    colour = sky_lo + (sky_hi - sky_lo) * (dirs @ up).clamp(0, 1)[:, None]
    points = origins + torch.nan_to_num(t_best[:, None] * dirs, posinf=0.0)
    light = torch.tensor(scene.light_dir, dtype=dirs.dtype)
    # Normals face the viewer so two-sided surfaces (room walls seen from inside) shade consistently.
    facing = torch.where(((normal * dirs).sum(-1) > 0)[:, None], -normal, normal)
    shade = scene.ambient + (1.0 - scene.ambient) * (facing @ light).clamp_min(0.0)
    for k, p in enumerate(scene.primitives):
        for m, material in enumerate(p.materials):
            sel = torch.nonzero((prim == k) & (face % len(p.materials) == m)).squeeze(1)
            if len(sel):
                colour[sel] = material(points[sel]) * shade[sel, None]
    return colour, t_best


def render_views(
    scene: SceneSpec, c2w: torch.Tensor, K: torch.Tensor, height: int, width: int, supersample: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``V`` views: RGB ``[V, H, W, 3]`` in [0, 1] and z-depth ``[V, H, W]`` (NaN where no surface).

    RGB averages a ``supersample x supersample`` sub-pixel grid (antialiasing); depth comes from the pixel-centre
    ray alone so it is exact for the pixel centre that ``unproject_depth`` assumes.
    """
    offsets = _sample_offsets(supersample)
    origins, dirs = [], []
    for du, dv in offsets:  # shifting the principal point by -offset moves every ray to centre + offset
        K_s = K.clone()
        K_s[..., 0, 2] -= du
        K_s[..., 1, 2] -= dv
        o, d = camera_rays(c2w, K_s, height, width)
        origins.append(o.reshape(-1, 3))
        dirs.append(d.reshape(-1, 3))
    colour, t = cast(scene, torch.cat(origins), torch.cat(dirs))
    v = c2w.shape[0]
    rgb = colour.reshape(len(offsets), v, height, width, 3).mean(0)
    o, centre_dirs = camera_rays(c2w, K, height, width)
    if supersample > 1:  # depth needs the exact pixel-centre ray; geometry only, no shading
        t = _nearest_hit(scene, o.reshape(-1, 3), centre_dirs.reshape(-1, 3))[0]
    z_axis = c2w[:, None, None, :3, 2]
    depth = t.reshape(v, height, width) * (centre_dirs * z_axis).sum(-1)
    depth = torch.where(torch.isfinite(depth), depth, torch.full_like(depth, float("nan")))
    return rgb.clamp(0, 1), depth
