"""Fused point clouds of the input views: valid depth pixels of 1-2 posed images, in the inputs' world frame.

Depth comes from the user's depth maps when given (an RGB-D capture) and from two-view stereo otherwise; a single
view without depth gives no cloud. Stereo runs at a working resolution (``max_side``) for speed, and its plain holes
get depth interpolated from the matches around them and pixels outside the other view's frame get depth
extrapolated from all matches (:mod:`cameo.geometry.fill`), unless the matches are too sparse to extrapolate from
(:func:`drop_sparse_views`). The floor stereo fitted is grown over its plain patches first, and what stays without
depth above it is kept as its visual hull (:mod:`cameo.geometry.plane_growth`, :mod:`cameo.geometry.hull`). The cloud
keeps the colours of that resolution and each point's size is its pixel's footprint (half a pixel at its depth),
the radius ``cameo.geometry.warp.render_points`` expects; :func:`render_cloud` renders it with its hull.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cameo.cameras import resize_with_intrinsics, unproject_depth

from .fill import extrapolate_beyond_overlap, fill_plain_holes
from .hull import VisualHull, hull_above_floor
from .plane_growth import with_grown_floor
from .stereo import StereoOptions, two_view_depth, view_share
from .warp import render_points


@dataclass
class PointCloud:
    """World ``points [N,3]``, ``colors [N,3]`` in [0, 1] and ``sizes [N]`` (world radius), all float32, and the
    ``hull`` of what the views saw but could not place (:mod:`cameo.geometry.hull`)."""

    points: torch.Tensor
    colors: torch.Tensor
    sizes: torch.Tensor
    hull: VisualHull | None = None

    def __len__(self) -> int:
        return int(self.points.shape[0])


def fuse_depth(images: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor,
               max_points: int = 200_000, seed: int = 0) -> PointCloud:
    """The cloud of every finite, positive pixel of ``depth [V,H,W]`` (views ``images [V,3,H,W]``, ``K [V,3,3]``,
    ``c2w [V,4,4]``), at most ``max_points`` of them (a subset drawn with a fixed ``seed``, kept in pixel order)."""
    images, depth, K, c2w = images.float().cpu(), depth.float().cpu(), K.float().cpu(), c2w.float().cpu()
    valid = torch.isfinite(depth) & (depth > 0)
    safe = torch.where(valid, depth, torch.ones_like(depth))
    points = unproject_depth(safe, K, c2w)[valid]
    colors = images.permute(0, 2, 3, 1)[valid]
    focal = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    sizes = (0.5 * safe / focal[:, None, None])[valid]
    if points.shape[0] > max_points:
        keep = torch.randperm(points.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
        keep = keep.sort().values
        points, colors, sizes = points[keep], colors[keep], sizes[keep]
    return PointCloud(points.contiguous(), colors.clamp(0, 1).contiguous(), sizes.contiguous())


@dataclass
class CloudViews:
    """A cloud rendered into ``V`` cameras: ``rgb [V,3,H,W]`` (0 where empty), ``measured [V,H,W]``: pixels its
    points show, ``guessed [V,H,W]``: pixels its visual hull shows (in front of any point)."""

    rgb: torch.Tensor
    measured: torch.Tensor
    guessed: torch.Tensor


def render_cloud(cloud: PointCloud, K: torch.Tensor, c2w: torch.Tensor, height: int, width: int) -> CloudViews:
    """``cloud`` rendered into cameras ``K [V,3,3]``, ``c2w [V,4,4]`` (:func:`cameo.geometry.warp.render_points`).

    The hull renders with the points, extra channels telling them apart and carrying each photo's colour, so a pixel
    shows whichever surface is in front; a hull pixel's colour blends the photos' by the camera's closeness to each
    (:meth:`VisualHull.weights_for`)."""
    hull = cloud.hull
    if hull is None or len(hull) == 0:
        warped = render_points(cloud.points, cloud.colors, K, c2w, height, width, cloud.sizes)
        return CloudViews(warped.rgb, warped.mask, torch.zeros_like(warped.mask))
    refs = hull.colors.shape[1]
    # channels: the points' colour, 1 for a point, each photo's colour of a hull point, 1 for a hull point
    channels = torch.zeros(len(cloud) + len(hull), 3 * refs + 5)
    channels[:len(cloud), :3], channels[:len(cloud), 3] = cloud.colors, 1.0
    channels[len(cloud):, 4:-1], channels[len(cloud):, -1] = hull.colors.flatten(1), 1.0
    warped = render_points(torch.cat([cloud.points, hull.points]), channels, K, c2w, height, width,
                           torch.cat([cloud.sizes, hull.sizes]))
    point_share, hull_share = warped.rgb[:, 3:4], warped.rgb[:, -1:]  # of the candidates averaged into a pixel
    measured = warped.mask & (point_share[:, 0] > 0.5)
    guessed = warped.mask & ~measured & (hull_share[:, 0] > 0.5)
    weights = hull.weights_for(c2w)  # [V,R]
    per_photo = warped.rgb[:, 4:-1].unflatten(1, (refs, 3))  # [V,R,3,H,W]
    guess_rgb = (weights[:, :, None, None, None] * per_photo).sum(1) / hull_share.clamp_min(1e-6)
    rgb = torch.where(measured[:, None], warped.rgb[:, :3] / point_share.clamp_min(1e-6),
                      torch.where(guessed[:, None], guess_rgb, torch.zeros_like(guess_rgb)))
    return CloudViews(rgb, measured, guessed)


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """``(h, w)`` with the long side at most ``max_side``, aspect kept (no upsampling)."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-sampled depth ``[V,h,w]`` (no blending of foreground and background; NaN stays NaN)."""
    if tuple(depth.shape[-2:]) == size:
        return depth
    return torch.nn.functional.interpolate(depth[:, None], size=size, mode="nearest-exact")[:, 0]


MIN_MATCH_SHARE = 0.05
"""A view whose stereo matches cover less of it than this keeps no depth (:func:`drop_sparse_views`)."""


def depth_share(depth: torch.Tensor) -> torch.Tensor:
    """``[V]``: the share of each view of ``depth [V,H,W]`` with a valid (finite, positive) depth."""
    return view_share(torch.isfinite(depth) & (depth > 0))


def drop_sparse_views(depth: torch.Tensor, min_share: float = MIN_MATCH_SHARE) -> torch.Tensor:
    """``depth [V,H,W]`` (NaN invalid) with every view whose valid pixels are fewer than ``min_share`` of it emptied.

    A wide pair matches a few scattered pixels at best (1-3 % on the held-out pairs that match badly, 33 % or more
    on the rest), and depth interpolated and extrapolated from so few spreads in streaks across the whole view: the
    bundled model given such depth scored 0.1-1.4 dB below itself given none, where it gets the proxy prior instead
    (the photo warped through the plane across the cameras' look-at point, ``cameo.priors.add_proxy``).
    """
    sparse = depth_share(depth) < min_share
    return torch.where(sparse[:, None, None], torch.full_like(depth, float("nan")), depth)


@dataclass
class PairDepth:
    """Z-depth ``[2,H,W]`` (NaN invalid) of a posed pair, its ``confidence [2,H,W]`` and the visual ``hull`` of
    what it left without depth above a grown floor (None without growth)."""

    depth: torch.Tensor
    confidence: torch.Tensor
    hull: VisualHull | None = None


def stereo_depth(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, options: StereoOptions | None = None,
                 fill_holes: bool = True, min_match_share: float = MIN_MATCH_SHARE, grow_floor: bool = True
                 ) -> PairDepth:
    """Depth of a posed pair as the reconstruction uses it: two-view stereo, a view with matches on less than
    ``min_match_share`` of it emptied (:func:`drop_sparse_views`), plus (``fill_holes``) depth interpolated into
    the plain holes and extrapolated beyond the other view's frame, at confidence 0.

    Only the fronto-parallel sweep's matches seed the fill (and only where they alone pass ``min_match_share``):
    spreading the level sweep's floor depth over the holes lays whatever stands on the floor flat onto it (the demo
    object's fit lost 1.2 dB PSNR that way), while the fronto matches' fill is what real pairs need (DTU scan24 views
    22/25: 1.9 dB better than matches alone). ``grow_floor``: the level plane stereo fitted is first grown over the
    plain pixels no window matched (:mod:`cameo.geometry.plane_growth`), and what then stays without depth above
    it is kept as its visual hull (:mod:`cameo.geometry.hull`)."""
    result = two_view_depth(images, K, c2w, options=options)
    floorlike = None
    if grow_floor:
        result, floorlike = with_grown_floor(result, images, K, c2w)
    matched = drop_sparse_views(result.depth, min_match_share)
    confidence = torch.where(torch.isfinite(matched), result.confidence, torch.zeros_like(result.confidence))
    depth = matched
    if fill_holes:
        level = result.level & torch.isfinite(matched)
        seeds = drop_sparse_views(torch.where(level, torch.full_like(matched, float("nan")), matched), min_match_share)
        filled = extrapolate_beyond_overlap(fill_plain_holes(seeds, images)[0], K, c2w)[0]
        depth = torch.where(level, matched, filled)
    hull = None
    if floorlike is not None and bool(floorlike.any()):
        hull = hull_above_floor(images, depth, floorlike, K, c2w, result.plane)
    return PairDepth(depth, confidence, hull)


@dataclass
class SceneDepth:
    """The views at the working size (``images [V,3,h,w]``, ``K [V,3,3]``), their z-depth ``[V,h,w]`` (NaN
    invalid), its ``confidence [V,h,w]`` and stereo's visual ``hull`` (None for given maps)."""

    images: torch.Tensor
    K: torch.Tensor
    depth: torch.Tensor
    confidence: torch.Tensor
    hull: VisualHull | None = None

    def point_cloud(self, c2w: torch.Tensor, max_points: int = 200_000) -> PointCloud:
        """The fused cloud of these views (cameras ``c2w [V,4,4]``) with the hull."""
        cloud = fuse_depth(self.images, self.depth, self.K, c2w.float().cpu(), max_points)
        cloud.hull = self.hull
        return cloud


def scene_depth(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, depths: list | None = None,
                max_side: int = 256, options: StereoOptions | None = None, fill_holes: bool = True,
                grow_floor: bool = True) -> SceneDepth | None:
    """The views' depth at the working size (stereo's confidence; 1 where a given map is valid), or None without
    depth.

    ``depths``: per view a depth map ``[H,W]`` or None; a view with a map uses it, two views without maps get stereo
    (a view with a map next to one without: the missing one stays empty).
    """
    height, width = images.shape[-2:]
    size = working_size(height, width, max_side)
    small, K_small = resize_with_intrinsics(images.float().cpu(), K.float().cpu(), size)
    small = small.clamp(0, 1)
    given = list(depths) if depths is not None else [None] * images.shape[0]
    if len(given) != images.shape[0]:
        raise ValueError(f"depths has {len(given)} entries for {images.shape[0]} views")
    if all(d is None for d in given):
        if images.shape[0] != 2:
            return None
        pair = stereo_depth(small, K_small, c2w, options, fill_holes, grow_floor=grow_floor)
        return SceneDepth(small, K_small, pair.depth, pair.confidence, pair.hull)
    maps = torch.stack([torch.full(size, float("nan")) if d is None
                        else _resize_depth(torch.as_tensor(d).float()[None], size)[0] for d in given])
    return SceneDepth(small, K_small, maps, (torch.isfinite(maps) & (maps > 0)).float())


def scene_point_cloud(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, depths: list | None = None,
                      max_side: int = 256, max_points: int = 200_000, fill_holes: bool = True,
                      grow_floor: bool = True) -> PointCloud | None:
    """The inputs' fused point cloud in their world frame, or None when they give no depth (one view, no map).

    ``images [V,3,H,W]`` in [0, 1] (V = 1 or 2), ``K [V,3,3]``, OpenCV ``c2w [V,4,4]``; ``depths``: optional per-view
    z-depth maps ``[H,W]`` (NaN or 0 = unknown) that replace stereo. Stereo runs with the long side at ``max_side``;
    ``fill_holes``: its holes get interpolated and extrapolated depth; ``grow_floor``: its floor grown, with
    the hull above it (:func:`stereo_depth`).
    """
    found = scene_depth(images, K, c2w, depths, max_side, fill_holes=fill_holes, grow_floor=grow_floor)
    if found is None:
        return None
    return found.point_cloud(c2w, max_points)
