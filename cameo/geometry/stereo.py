"""Two-view depth with known cameras: a plane sweep in each view against the other, ZNCC, two-way check.

Why by hand: OpenCV's StereoSGBM (and every stereo matcher it or kornia ships) needs a rectified pair, and planar
rectification degenerates when the epipoles fall inside the images (forward motion, the usual phone walk); a plane
sweep warps the other view onto fronto-parallel planes of the reference view with ``grid_sample``, which works for
any relative pose. No offline stereo network is available (see ``/work/shared/ANCHORS.md``).

Per reference view: hypotheses uniform in inverse depth (so uniform in disparity for a sideways pair) spanning the
range where the two frusta overlap (or a given depth range), first at half resolution to find the scene's depth range,
then at full resolution inside it; a zero-mean normalised cross-correlation (ZNCC) score on grey-level windows;
winner-take-all with a parabolic sub-hypothesis fit; a distinctiveness confidence (best vs best-elsewhere score); and a
two-way check (the other view's depth at the projected pixel must agree). Low-texture, ambiguous, out-of-range and
inconsistent pixels come out invalid (depth NaN) rather than wrong.

A second sweep runs over level planes (normal: the world up the cameras' orientations give, offset: the camera's
height above the plane), as multi-direction plane sweeps do: a fronto-parallel window cannot match a floor or a
table seen from far-apart directions (the texture is sheared differently in each view), a window warped through the
floor's own plane can. Its checked depth fills the pixels the fronto-parallel sweep leaves empty, in a view where
they add at least :data:`MIN_LEVEL_SHARE` of it. The plane it fitted (``StereoResult.plane``) can then be grown over
the plain pixels no window matches (:mod:`cameo.geometry.plane_growth`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cameo.cameras import (invert_pose, pixel_centers, project_points, resize_with_intrinsics, sampling_grid,
                           unproject_depth, up_direction)


@dataclass
class StereoResult:
    """Per view: ``depth [2,H,W]`` z-depth (NaN invalid), ``confidence [2,H,W]`` in [0, 1] (0 where invalid),
    ``valid [2,H,W]`` bool, ``level [2,H,W]`` bool: the valid pixels whose depth came from the level-plane sweep (or
    the fitted plane grown, :mod:`cameo.geometry.plane_growth`); ``plane [4]``: the level plane the sweep fitted,
    ``normal . X = offset`` as (normal, offset), None without the sweep or when that plane lies at infinity."""

    depth: torch.Tensor
    confidence: torch.Tensor
    valid: torch.Tensor
    level: torch.Tensor
    plane: torch.Tensor | None = None


@dataclass(frozen=True)
class StereoOptions:
    """Matching parameters (defaults chosen on held-out procedural pairs with ``benchmarks/bench_geometry.py``)."""

    num_hypotheses: int = 96  # full-resolution sweep
    coarse_hypotheses: int = 96  # half-resolution sweep that finds the depth range
    window: int = 5  # ZNCC window side at 256 px (scaled with the image, odd, >= 3)
    min_texture: float = 0.0003  # RMS gradient along the epipolar line (grey levels / px) below which: textureless
    min_score: float = 0.5  # best ZNCC below this: no reliable match
    min_confidence: float = 0.05  # 1 - (1 - best) / (1 - best elsewhere) below this: ambiguous
    max_reprojection_px: float = 1.0  # two-way check: pixel distance after the round trip
    max_depth_disagreement: float = 0.03  # two-way check: relative z difference in the other view
    p1: float = 0.1  # semi-global penalty for a one-hypothesis step between neighbours (cost = 1 - ZNCC)
    p2: float = 0.5  # semi-global penalty for a larger jump
    chunk: int = 16  # hypotheses warped at once (bounds memory at chunk x H x W x ~10 floats)
    ground_hypotheses: int = 96  # second sweep over level planes (0: fronto-parallel planes only)


def gray_levels(images: torch.Tensor) -> torch.Tensor:
    """Grey level ``[V,1,H,W]`` of RGB images ``[V,3,H,W]``: the channel mean (luma weights would hide texture in
    blue surfaces)."""
    return images.mean(1, keepdim=True)


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a ``size x size`` window (running sums; the border is extended by replication)."""
    pad = size // 2
    x = F.pad(x, (pad + 1, pad, pad + 1, pad), mode="replicate").double()  # double: running sums stay exact
    x = x.cumsum(-1)
    x = x[..., size:] - x[..., :-size]
    x = x.cumsum(-2)
    return ((x[..., size:, :] - x[..., :-size, :]) / (size * size)).float()


def _sweep_terms(K: torch.Tensor, c2w: torch.Tensor, ref: int, src: int, height: int, width: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``a [3,H,W]``, ``b [3]`` with ``p_src ~ a + rho * b`` for reference pixels at inverse depth ``rho``."""
    rel = invert_pose(c2w[src]) @ c2w[ref]  # reference camera -> source camera
    uv = pixel_centers(height, width, device=K.device, dtype=K.dtype)
    rays = torch.cat([uv, torch.ones_like(uv[..., :1])], -1) @ torch.linalg.inv(K[ref]).T  # [H,W,3], z = 1
    a = (rays @ (K[src] @ rel[:3, :3]).T).permute(2, 0, 1)
    return a.contiguous(), K[src] @ rel[:3, 3]


def overlap_inverse_depth_range(K: torch.Tensor, c2w: torch.Tensor, ref: int, src: int, height: int, width: int,
                                min_fraction: float = 0.1, samples: int = 512) -> tuple[float, float] | None:
    """Inverse-depth interval of view ``ref`` over which at least ``min_fraction`` of its pixels project inside view
    ``src`` (in front of it); None when the cameras share no such interval (e.g. a pure rotation)."""
    baseline = float((c2w[ref, :3, 3] - c2w[src, :3, 3]).norm())
    if baseline < 1e-9:
        return None
    step = max(1, min(height, width) // 32)
    a, b = _sweep_terms(K, c2w, ref, src, height, width)
    a = a[:, step // 2 :: step, step // 2 :: step].reshape(3, -1)
    rho = torch.linspace(0.0, 20.0 / baseline, samples, dtype=K.dtype)  # down to 1/20 of the baseline
    p = a[None] + rho[:, None, None] * b[None, :, None]  # [S,3,P]
    z = p[:, 2]
    u, v = p[:, 0] / z.clamp_min(1e-12), p[:, 1] / z.clamp_min(1e-12)
    inside = (z > 1e-9) & (u >= 0) & (u <= width) & (v >= 0) & (v <= height)
    ok = torch.nonzero(inside.float().mean(1) >= min_fraction).squeeze(1)
    if len(ok) == 0:
        return None
    return float(rho[ok[0]]), float(rho[ok[-1]])


def epipolar_texture(gray: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, ref: int, window: int) -> torch.Tensor:
    """RMS grey-level gradient along the epipolar line through each pixel of view ``ref`` over a window ``[H,W]``.

    Matching can only tell positions apart along the epipolar line, so a gradient across it (a sky's vertical ramp
    under a sideways motion) does not count as texture.
    """
    _, _, height, width = gray.shape
    img = gray[ref : ref + 1]
    gx = F.pad(img[..., :, 2:] - img[..., :, :-2], (1, 1, 0, 0), mode="replicate")[0, 0] / 2
    gy = F.pad(img[..., 2:, :] - img[..., :-2, :], (0, 0, 1, 1), mode="replicate")[0, 0] / 2
    w2c = invert_pose(c2w[ref])
    epipole = K[ref] @ (w2c[:3, :3] @ c2w[1 - ref, :3, 3] + w2c[:3, 3])  # other camera's centre, homogeneous
    uv = pixel_centers(height, width, dtype=K.dtype)
    direction = epipole[:2] - epipole[2] * uv  # [H,W,2], towards (or away from) the epipole
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    along = gx * direction[..., 0] + gy * direction[..., 1]
    return box_mean((along * along)[None, None], window)[0, 0].sqrt()


def _reference_stats(gray: torch.Tensor, ref: int, window: int) -> tuple[torch.Tensor, ...]:
    """Grey levels ``[1,1,H,W]`` of view ``ref`` with their windowed mean and standard deviation (ZNCC terms)."""
    r = gray[ref : ref + 1]
    r_mean = box_mean(r, window)
    return r, r_mean, (box_mean(r * r, window) - r_mean**2).clamp_min(0).sqrt()


def _zncc(gray: torch.Tensor, a: torch.Tensor, b: torch.Tensor, rho: torch.Tensor, src: int,
          stats: tuple[torch.Tensor, ...], window: int) -> torch.Tensor:
    """ZNCC ``[c,H,W]`` of the reference against view ``src`` warped onto ``c`` planes given by their per-pixel
    inverse depths ``rho`` (``[c,1,1,1]`` fronto-parallel or ``[c,1,H,W]``); -1 where the pixel leaves the source
    image or its ray misses the plane (``rho < 0``; 0 is a plane at infinity)."""
    _, _, height, width = gray.shape
    r, r_mean, r_std = stats
    p = a[None] + rho * b[None, :, None, None]  # [c,3,H,W]
    z = p[:, 2]
    uv = p[:, :2] / z.clamp_min(1e-12)[:, None]
    inside = ((rho[:, 0] >= 0) & (z > 1e-9) & (uv[:, 0] >= 0) & (uv[:, 0] <= width) & (uv[:, 1] >= 0)
              & (uv[:, 1] <= height))
    grid = sampling_grid(uv.permute(0, 2, 3, 1), height, width, limit=2.0)
    warped = F.grid_sample(gray[src : src + 1].expand(len(rho), -1, -1, -1), grid, mode="bilinear",
                           padding_mode="border", align_corners=False)  # [c,1,H,W]
    moments = box_mean(torch.cat([warped, warped * warped, warped * r], 1), window)
    w_mean = moments[:, :1]
    w_var = (moments[:, 1:2] - w_mean**2).clamp_min(0)
    cov = moments[:, 2:3] - w_mean * r_mean
    zncc = (cov / (w_var.sqrt() * r_std).clamp_min(1e-6))[:, 0].clamp(-1, 1)
    return torch.where(inside, zncc, torch.full_like(zncc, -1.0))


def _scores(gray: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, ref: int, rho: torch.Tensor, window: int,
            chunk: int, slant: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ZNCC of view ``ref`` against the other view warped onto each plane: ``[D,H,W]`` (-1 where the pixel
    leaves the other image), and the reference's texture along epipolar lines ``[H,W]``. Planes are fronto-parallel
    at inverse depths ``rho [D]``, or with ``slant [H,W]`` (:func:`ground_slant`) level at inverse heights ``rho``."""
    height, width = gray.shape[-2:]
    a, b = _sweep_terms(K, c2w, ref, 1 - ref, height, width)
    stats = _reference_stats(gray, ref, window)
    planes = rho[:, None, None, None] if slant is None else rho[:, None, None, None] * slant[None, None]
    out = [_zncc(gray, a, b, part, 1 - ref, stats, window) for part in planes.split(chunk)]
    return torch.cat(out), epipolar_texture(gray, K, c2w, ref, window)


@dataclass
class _Match:
    """Winner-take-all result of one view: depth (NaN out of range), best score, distinctiveness confidence, and
    ``reliable`` (textured, matched well, unambiguous)."""

    depth: torch.Tensor
    score: torch.Tensor
    confidence: torch.Tensor
    position: torch.Tensor  # sub-hypothesis index of the winner
    reliable: torch.Tensor | None = None


MIN_SLANT = 0.05
"""Rays meeting a level plane at a grazing angle (slant below this: depth over 20 camera heights) get no depth from
the level sweep."""


def ground_slant(K: torch.Tensor, c2w: torch.Tensor, ref: int, up: torch.Tensor, height: int, width: int
                 ) -> torch.Tensor:
    """``[H,W]``: per pixel of view ``ref``, the inverse z-depth of the level plane (normal ``up`` in the world) one
    unit below the camera; a plane ``h`` below lies at inverse depth ``slant / h`` (``<= 0``: the ray never meets
    it)."""
    rays = torch.cat([pixel_centers(height, width, dtype=K.dtype), torch.ones(height, width, 1, dtype=K.dtype)], -1)
    down = c2w[ref, :3, :3].T @ -up.to(c2w.dtype)  # world down in the camera frame
    return (rays @ torch.linalg.inv(K[ref]).T) @ down


def _on_plane(height: torch.Tensor, slant: torch.Tensor) -> torch.Tensor:
    """Z-depth where rays of ``slant`` meet level planes ``height`` below the camera (NaN at grazing rays)."""
    return torch.where(slant > MIN_SLANT, height / slant.clamp_min(MIN_SLANT), torch.full_like(height, float("nan")))


def _scan(cost: torch.Tensor, p1: float, p2: float) -> torch.Tensor:
    """Semi-global path costs of ``cost [L,B,D,N]`` along its first axis (index 0 first)."""
    out = torch.empty_like(cost)
    prev = out[0] = cost[0]
    for i in range(1, cost.shape[0]):
        floor = prev.amin(1, keepdim=True)
        near = -F.max_pool1d(-prev.transpose(1, 2), 3, stride=1, padding=1).transpose(1, 2)  # min over d-1, d, d+1
        prev = torch.minimum(torch.minimum(prev, near + p1), floor + p2).sub_(floor).add_(cost[i])
        out[i] = prev
    return out


def aggregate(cost: torch.Tensor, p1: float, p2: float) -> torch.Tensor:
    """Semi-global aggregation (Hirschmueller's SGM, 4 paths) of matching costs ``[B,D,H,W]`` over hypothesis index.

    Why by hand: OpenCV's SGBM runs only on rectified pairs; here the "disparity" axis is the plane-sweep index.
    Both directions of a line run as one batch, so each axis costs one Python loop over its length.
    """
    b = cost.shape[0]
    rows = cost.permute(3, 0, 1, 2)  # [W,B,D,H]: scan over columns
    horizontal = _scan(torch.cat([rows, rows.flip(0)], 1).contiguous(), p1, p2)
    total = (horizontal[:, :b] + horizontal.flip(0)[:, b:]).permute(1, 2, 3, 0)
    cols = cost.permute(2, 0, 1, 3)  # [H,B,D,W]: scan over rows
    vertical = _scan(torch.cat([cols, cols.flip(0)], 1).contiguous(), p1, p2)
    return total + (vertical[:, :b] + vertical.flip(0)[:, b:]).permute(1, 2, 0, 3)


def _winner(cost: torch.Tensor, zncc: torch.Tensor, rho: torch.Tensor, exclusion: int = 2) -> _Match:
    """Lowest-cost hypothesis per pixel of ``cost [D,H,W]`` with a parabolic sub-step fit; hypotheses at the range
    ends are invalid. ``score`` is the raw ZNCC there; ``confidence`` compares the best cost with the best one more
    than ``exclusion`` hypotheses away (0: as good elsewhere, 1: unique)."""
    count = cost.shape[0]
    best, index = cost.min(0)
    lo = cost.gather(0, (index - 1).clamp_min(0)[None])[0]
    hi = cost.gather(0, (index + 1).clamp_max(count - 1)[None])[0]
    curvature = lo - 2 * best + hi
    offset = torch.where(curvature > 1e-9, 0.5 * (lo - hi) / curvature.clamp_min(1e-9), torch.zeros_like(best))
    step = (rho[(index + 1).clamp_max(count - 1)] - rho[(index - 1).clamp_min(0)]) / 2  # local: spacing may vary
    inv = rho[index] + offset.clamp(-0.5, 0.5) * step
    interior = (index > 0) & (index < count - 1) & (inv > 0)
    hyp = torch.arange(count, device=cost.device)[:, None, None]
    far = (hyp - index[None]).abs() > exclusion
    elsewhere = torch.where(far, cost, torch.full_like(cost, float("inf"))).amin(0)
    confidence = (1 - best / elsewhere.clamp_min(1e-6)).clamp(0, 1)
    depth = torch.where(interior, 1.0 / inv.clamp_min(1e-12), torch.full_like(inv, float("nan")))
    return _Match(depth, zncc.gather(0, index[None])[0], confidence, index + offset.clamp(-0.5, 0.5))


def _sample_depth(depth: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of ``depth [H,W]`` at ``uv [...,2]``; NaN unless all four neighbours are valid."""
    height, width = depth.shape
    grid = sampling_grid(uv, height, width).reshape(1, 1, -1, 2)
    valid = torch.isfinite(depth).to(depth.dtype)
    stacked = torch.stack([torch.nan_to_num(depth, nan=0.0), valid])[None]
    sampled = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, :, 0]
    ok = sampled[1] > 1 - 1e-4
    return torch.where(ok, sampled[0] / sampled[1].clamp_min(1e-6), torch.full_like(sampled[0], float("nan"))
                       ).reshape(uv.shape[:-1])


def two_way_consistent(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, ref: int,
                       max_reprojection_px: float = 1.0, max_depth_disagreement: float = 0.03) -> torch.Tensor:
    """``[H,W]`` bool: view ``ref``'s depth lands, in the other view, on a depth that agrees and maps back to within
    ``max_reprojection_px`` of where it started (``depth [2,H,W]``, NaN invalid)."""
    src = 1 - ref
    height, width = depth.shape[-2:]
    points = unproject_depth(depth[ref], K[ref], c2w[ref]).reshape(-1, 3)
    uv_src, z_src = project_points(points, K[src], c2w[src])
    d_src = _sample_depth(depth[src], uv_src)
    rays = torch.cat([uv_src, torch.ones_like(uv_src[:, :1])], -1) @ torch.linalg.inv(K[src]).T
    back = rays * d_src[:, None] @ c2w[src, :3, :3].T + c2w[src, :3, 3]
    uv_back, _ = project_points(back, K[ref], c2w[ref])
    start = pixel_centers(height, width, dtype=depth.dtype).reshape(-1, 2)
    close = (uv_back - start).norm(dim=-1) <= max_reprojection_px
    agree = (z_src - d_src).abs() <= max_depth_disagreement * d_src
    return (close & agree & (z_src > 0)).reshape(height, width)


def _window_for(height: int, width: int, window: int) -> int:
    """The ZNCC window scaled to the image (``window`` is the side at 256 px), odd and at least 3."""
    side = max(3, round(window * min(height, width) / 256))
    return side if side % 2 else side + 1


def _hypotheses(lo: float, hi: float, count: int, geometric: bool, max_ratio: float = 1000.0) -> torch.Tensor:
    """``count`` inverse depths uniform over ``[lo, hi]`` (equal disparity steps); with ``geometric`` (the coarse
    search) also ``count`` spaced geometrically from ``max(lo, hi / max_ratio)``: a short forward step's full
    overlap range spans 0..80 in inverse depth (pixels near the epipole stay in view at any depth), where uniform
    hypotheses alone step over the whole scene, while geometric ones alone are too sparse for a narrow range."""
    uniform = torch.linspace(lo, hi, count)
    if not geometric or hi <= 0:
        return uniform
    start = max(lo, hi / max_ratio)
    return torch.cat([uniform, torch.logspace(float(np.log10(start)), float(np.log10(hi)), count)]).sort().values


def _match_views(gray: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, ranges: list[tuple[float, float]],
                 count: int, opts: StereoOptions, geometric: bool = False, up: torch.Tensor | None = None
                 ) -> list[_Match]:
    """Sweep each view against the other over its inverse-depth range (hypotheses spaced uniformly, or
    geometrically for the coarse search), aggregate semi-globally, pick winners and flag the reliable ones
    (textured, well matched, unambiguous). With ``up``: over level planes, ``ranges`` in inverse camera height."""
    _, _, height, width = gray.shape
    window = _window_for(height, width, opts.window)
    slants = [None if up is None else ground_slant(K, c2w, ref, up, height, width) for ref in range(2)]
    rhos = [_hypotheses(lo, hi, count, geometric) for lo, hi in ranges]
    scored = [_scores(gray, K, c2w, ref, rho, window, opts.chunk, slants[ref]) for ref, rho in enumerate(rhos)]
    zncc = torch.stack([volume for volume, _ in scored])
    cost = aggregate(1 - zncc, opts.p1, opts.p2)
    matches = []
    for ref, rho in enumerate(rhos):
        match = _winner(cost[ref], zncc[ref], rho)
        if slants[ref] is not None:
            match.depth = _on_plane(match.depth, slants[ref])
        good = (scored[ref][1] >= opts.min_texture) & (match.score >= opts.min_score)
        match.reliable = good & (match.confidence >= opts.min_confidence) & torch.isfinite(match.depth)
        matches.append(match)
    return matches


def despeckle(position: torch.Tensor, keep: torch.Tensor, max_size: int, max_diff: float = 1.5) -> torch.Tensor:
    """``keep [H,W]`` without the kept regions of at most ``max_size`` pixels, a region being pixels connected by
    hypothesis positions ``position [H,W]`` that differ by at most ``max_diff`` (OpenCV's speckle filter: isolated
    blobs are almost always chance matches)."""
    invalid = -32768
    fixed = torch.where(keep, (position * 16).round(), torch.full_like(position, invalid)).numpy().astype(np.int16)
    cv2.filterSpeckles(fixed, invalid, max_size, int(max_diff * 16))
    return keep & torch.from_numpy(fixed != invalid)


def _checked(matches: list[_Match], K: torch.Tensor, c2w: torch.Tensor, max_px: float, max_rel: float
             ) -> torch.Tensor:
    """Depth ``[2,H,W]`` of the reliable pixels that pass the two-way check against the other view's raw winners
    (checking against raw winners keeps a pixel whose partner was merely flagged, not wrong) and do not lie in
    small isolated blobs; NaN elsewhere."""
    raw = torch.stack([m.depth for m in matches])
    max_size = max(4, raw[0].numel() // 1000)
    keep = torch.stack([despeckle(m.position, two_way_consistent(raw, K, c2w, r, max_px, max_rel) & m.reliable,
                                  max_size) for r, m in enumerate(matches)])
    return torch.where(keep, raw, torch.full_like(raw, float("nan")))


def _narrowed_range(depth: torch.Tensor, full: tuple[float, float], margin: float = 0.5) -> tuple[float, float]:
    """Inverse-depth range of the valid coarse depths (5-95 percentiles: a few % of coarse matches land on far
    hypotheses in dark backgrounds; widened by ``margin`` of its width and by 5 % of its near end), kept inside
    ``full``; ``full`` itself when too few pixels are valid."""
    inv = 1.0 / depth[torch.isfinite(depth)]
    if inv.numel() < 64:
        return full
    lo, hi = torch.quantile(inv, torch.tensor([0.05, 0.95], dtype=inv.dtype)).tolist()
    pad = margin * (hi - lo) + 0.05 * hi
    return max(full[0], lo - pad), min(full[1], hi + pad)


def _coarse_ranges(gray: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, full: list[tuple[float, float]],
                   opts: StereoOptions, up: torch.Tensor | None = None) -> list[tuple[float, float]]:
    """Per-view inverse-depth ranges found by a sweep at half resolution over the full overlap ranges (with
    ``up``: inverse camera heights of the level sweep)."""
    height, width = gray.shape[-2:]
    if min(height, width) < 48:
        return full
    small, K_small = resize_with_intrinsics(gray, K, (height // 2, width // 2), mode="area")
    matches = _match_views(small, K_small, c2w, full, opts.coarse_hypotheses, opts, geometric=True, up=up)
    depth = _checked(matches, K_small, c2w, 1.0, 2 * opts.max_depth_disagreement)
    if up is not None:  # back to the plane's height below the camera, the level sweep's parameter
        depth = depth * torch.stack([ground_slant(K_small, c2w, r, up, *depth.shape[-2:]) for r in range(2)])
    return [_narrowed_range(depth[ref], full[ref]) for ref in range(2)]


MIN_LEVEL_SHARE = 0.05
"""A view keeps the level sweep's depth only where it adds at least this share of the view: a floor it really
matches adds a large part (29-31 % of the demo object pair); on DTU scan24 views 18/19 it added 0.3 % of scattered
mismatches, which cost that pair's warp into view 20 2.1 dB."""


def view_share(mask: torch.Tensor) -> torch.Tensor:
    """``[V]``: the share of each view's pixels that ``mask [V,H,W]`` marks."""
    return mask.flatten(1).float().mean(1)


GROUND_REACH = 20.0
"""The level sweep spans inverse camera heights from the farthest overlap depth to this many times the nearest's
inverse (a camera looking at its plane at a slant of 1/20)."""


def _resized(gray: torch.Tensor, K: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey levels and intrinsics with the short side at most ``side`` (area resampling)."""
    height, width = gray.shape[-2:]
    factor = min(1.0, side / min(height, width))
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    return resize_with_intrinsics(gray, K, size, mode="area")


def _plane_scores(gray: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, normal: torch.Tensor, rho: torch.Tensor,
                  window: int, chunk: int) -> torch.Tensor:
    """``[D]``: for level planes (normal ``normal``) at inverse heights ``rho [D]`` below camera 0, the share of
    its pixels the plane warp aligns with camera 1 (ZNCC above 0.9: a wrong plane aligns a few %, the right one
    every pixel on it)."""
    height, width = gray.shape[-2:]
    a, b = _sweep_terms(K, c2w, 0, 1, height, width)
    slant = ground_slant(K, c2w, 0, normal, height, width)[None, None]
    stats = _reference_stats(gray, 0, window)
    shares = [(_zncc(gray, a, b, part[:, None, None, None] * slant, 1, stats, window) > 0.9).float().mean((1, 2))
              for part in rho.split(chunk)]
    return torch.cat(shares)


def _tilted(up: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Unit normals ``[T*T,3]`` tilted from ``up`` by every pair of angles in ``degrees [T]`` about two axes."""
    e1 = F.normalize(torch.linalg.cross(up, torch.tensor([1.0, 0, 0]) if abs(float(up[0])) < 0.9
                                        else torch.tensor([0, 1.0, 0])), dim=0)
    e2 = torch.linalg.cross(up, e1)
    t = torch.tan(torch.deg2rad(degrees))
    return F.normalize(up + t[:, None, None] * e1 + t[None, :, None] * e2, dim=-1).reshape(-1, 3)


LEVEL_PLANE_SEARCH = ((64, (0.0,), None, 128), (64, (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0), 0.10, 41),
                      (128, (-1.0, -0.5, 0.0, 0.5, 1.0), 0.03, 25), (256, (-0.2, 0.0, 0.2), 0.01, 11))
"""Stages of :func:`fit_level_plane`: image side, tilts (degrees about two axes), relative span of the inverse
heights around the previous stage's best (None: the whole range, log-spaced), and their count. The level sweep
aligns nothing with a normal 0.2 degrees off (a held-out object pair), so the last stage runs at 256 px in steps of
0.2 degrees (0.1 at most off); and the heights must be fine (0.5 %, then 0.25 %, 0.2 %): on a coarse height grid a
tilted plane that crosses the floor where most pixels lie aligns more of them than the level plane one step off in
height."""


def fit_level_plane(gray: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, up: torch.Tensor,
                    rho_ranges: list[tuple[float, float]]) -> tuple[torch.Tensor, float]:
    """The plane ``normal . X = offset`` (``normal [3]`` near ``up``) that best maps view 0 onto view 1 (the floor or
    table both see); ``offset`` is NaN when the best plane lies at infinity.

    Camera orientations fix up only up to a tilt when the cameras' x axes are (nearly) parallel (facing or opposite
    views of one object): a few degrees off, the level sweep aligns nothing. A global search over the plane's height,
    then over tilts within 6 degrees and heights near the best (:data:`LEVEL_PLANE_SEARCH`), keeps the plane whose
    warp aligns most pixels. The search runs from the camera higher along ``up`` (it sees more of the floor; either
    order of the views gives the same plane); ``rho_ranges`` (per view) bound its inverse height.
    """
    order = [0, 1] if float(up @ c2w[0, :3, 3]) >= float(up @ c2w[1, :3, 3]) else [1, 0]
    gray, K, c2w, rho_range = gray[order], K[order], c2w[order], rho_ranges[order[0]]
    best_up, best_rho = up.float(), 0.0
    for side, degrees, span, count in LEVEL_PLANE_SEARCH:
        small, K_small = _resized(gray, K, side)
        window = _window_for(*small.shape[-2:], 5)
        if span is None:
            low = max(rho_range[0], rho_range[1] / 1000)
            rhos = torch.logspace(float(np.log10(low)), float(np.log10(rho_range[1])), count)
        else:
            rhos = best_rho * torch.linspace(1 - span, 1 + span, count)
        scored = [(float(v.max()), n, float(rhos[v.argmax()])) for n in _tilted(best_up, torch.tensor(degrees))
                  for v in [_plane_scores(small, K_small, c2w, n, rhos, window, 64)]]
        _, best_up, best_rho = max(scored, key=lambda item: item[0])
    offset = float(best_up @ c2w[0, :3, 3]) - 1.0 / best_rho if best_rho > 0 else float("nan")
    return best_up, offset


LEVEL_FALLBACK_SPAN = 0.1
"""A view whose coarse level sweep finds too few matches sweeps the world heights the other view found; when neither
found any, the fitted plane's height plus or minus this share of the cameras' mean height above it."""


def _shared_level_ranges(ranges: list[tuple[float, float]], full: list[tuple[float, float]], c2w: torch.Tensor,
                         normal: torch.Tensor, offset: float) -> list[tuple[float, float]]:
    """The level sweep's inverse-height ranges, each view the coarse search left at its ``full`` range (too few
    matches) given the world heights found in the other view, or around the fitted plane ``normal . X = offset``.

    Level planes are one family in the world, so a height range found from one camera holds for the other. Left at
    the full range, 96 hypotheses step ~20 % in height: the two-way check then fails everywhere, also in the view
    that found its range (a held-out pair 55 degrees apart kept no depth at all; with the shared range its floor
    matched on 22-28 % of each view)."""
    failed = [tuple(own) == tuple(whole) for own, whole in zip(ranges, full)]  # what _narrowed_range falls back to
    if not any(failed):
        return ranges
    cameras = [float(normal @ c2w[r, :3, 3]) for r in range(2)]
    found = [(cameras[r] - 1.0 / lo, cameras[r] - 1.0 / hi)
             for r, (lo, hi) in enumerate(ranges) if not failed[r] and lo > 0]
    if found:
        low, high = min(f[0] for f in found), max(f[1] for f in found)
    elif np.isnan(offset):
        return ranges
    else:
        span = LEVEL_FALLBACK_SPAN * float(np.mean([c - offset for c in cameras]))
        low, high = offset - abs(span), offset + abs(span)
    shared = []
    for r, (lo, hi) in enumerate(ranges):
        below, above = cameras[r] - low, cameras[r] - high  # the camera's heights above the range's ends
        new_lo = max(lo, 1.0 / below) if below > 0 else lo
        new_hi = min(hi, 1.0 / above) if above > 0 else hi
        shared.append((new_lo, new_hi) if failed[r] and new_lo < new_hi else (lo, hi))
    return shared


def _level_matches(gray: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, full: list[tuple[float, float]],
                   opts: StereoOptions, coarse: bool) -> tuple[list[_Match], torch.Tensor | None]:
    """Winners of the sweep over level planes (:func:`ground_slant`), its range narrowed at half resolution when
    ``coarse`` (and shared between the views, :func:`_shared_level_ranges`), and the fitted plane
    (``StereoResult.plane``)."""
    heights = [(lo, GROUND_REACH * hi) for lo, hi in full]
    up, offset = fit_level_plane(gray, K, c2w, up_direction(c2w), heights)
    ranges = heights
    if coarse:
        ranges = _shared_level_ranges(_coarse_ranges(gray, K, c2w, heights, opts, up), heights, c2w, up, offset)
    plane = None if np.isnan(offset) else torch.cat([up, torch.tensor([offset])])
    return _match_views(gray, K, c2w, ranges, opts.ground_hypotheses, opts, up=up), plane


def level_plane_depth(K: torch.Tensor, c2w: torch.Tensor, plane: torch.Tensor, height: int, width: int
                      ) -> torch.Tensor:
    """Z-depth ``[2,H,W]`` of ``plane`` (``StereoResult.plane``) in both views (NaN at grazing rays, above the
    horizon, or for a camera below the plane)."""
    normal, offset = plane[:3], float(plane[3])
    out = []
    for view in range(2):
        above = torch.tensor(float(normal @ c2w[view, :3, 3]) - offset)
        slant = ground_slant(K, c2w, view, normal, height, width)
        out.append(_on_plane(above.expand_as(slant), slant) if above > 0 else torch.full_like(slant, float("nan")))
    return torch.stack(out)


def two_view_depth(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor,
                   depth_range: tuple[float, float] | None = None, options: StereoOptions | None = None
                   ) -> StereoResult:
    """Depth of both views of a posed pair: ``images [2,3,H,W]`` in [0, 1], ``K [2,3,3]``, OpenCV ``c2w [2,4,4]``.

    ``depth_range = (near, far)`` z-depths bound the sweep when the scene's range is known; otherwise it spans the
    overlap of the two frusta and is narrowed by a half-resolution sweep. With ``options.ground_hypotheses`` the
    level-plane sweep then fills what the fronto-parallel one left empty (``StereoResult.level``). Deterministic;
    runs in float32 on CPU.
    """
    opts = options or StereoOptions()
    images, K, c2w = images.float().cpu(), K.float().cpu(), c2w.float().cpu()
    if images.ndim != 4 or images.shape[:2] != (2, 3) or K.shape != (2, 3, 3) or c2w.shape != (2, 4, 4):
        raise ValueError(f"two_view_depth expects images [2,3,H,W], K [2,3,3], c2w [2,4,4]; got "
                         f"{list(images.shape)}, {list(K.shape)}, {list(c2w.shape)}")
    height, width = images.shape[-2:]
    if depth_range is not None:
        near, far = depth_range
        if not 0 < near < far:
            raise ValueError(f"depth_range must satisfy 0 < near < far, got {depth_range}")
        full = [(1.0 / far, 1.0 / near)] * 2
    else:
        overlap = [overlap_inverse_depth_range(K, c2w, r, 1 - r, height, width) for r in range(2)]
        if any(o is None for o in overlap):
            nan, none = torch.full((2, height, width), float("nan")), torch.zeros(2, height, width, dtype=torch.bool)
            return StereoResult(nan, torch.zeros(2, height, width), none, none)
        full = overlap  # type: ignore[assignment]
    gray = gray_levels(images)
    ranges = _coarse_ranges(gray, K, c2w, full, opts) if depth_range is None else full
    matches = _match_views(gray, K, c2w, ranges, opts.num_hypotheses, opts)
    depth = _checked(matches, K, c2w, opts.max_reprojection_px, opts.max_depth_disagreement)
    confidence = torch.stack([m.confidence for m in matches])
    level, plane = torch.zeros_like(depth, dtype=torch.bool), None
    if opts.ground_hypotheses > 0:  # where fronto-parallel windows found nothing, the level sweep's checked depth
        planes, plane = _level_matches(gray, K, c2w, full, opts, coarse=depth_range is None)
        on_plane = _checked(planes, K, c2w, opts.max_reprojection_px, opts.max_depth_disagreement)
        level = ~torch.isfinite(depth) & torch.isfinite(on_plane)
        level &= view_share(level)[:, None, None] >= MIN_LEVEL_SHARE
        depth = torch.where(level, on_plane, depth)
        confidence = torch.where(level, torch.stack([m.confidence for m in planes]), confidence)
    valid = torch.isfinite(depth)
    confidence = torch.where(valid, confidence, torch.zeros_like(depth))
    return StereoResult(torch.where(valid, depth, torch.full_like(depth, float("nan"))), confidence, valid, level,
                        plane)
