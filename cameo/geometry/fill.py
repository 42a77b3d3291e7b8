"""Depth for the plain holes of two-view stereo, interpolated from the matched pixels around them.

Stereo finds no match on plain surfaces (a white table, a painted wall): no texture, no correlation peak. These are
also the pixels where a depth error costs least, since a plain surface looks the same from any nearby viewpoint.
So holes whose image is plain get the inverse depth of the matched pixels around them (push-pull interpolation over
an image pyramid; inverse depth is affine in pixel coordinates on a plane), and holes with texture (occlusions,
mismatches) stay empty. A hole is filled only where matches are near (a share of a window around it) and agree
(the spread of the inverse depth they contribute is small): plain holes across an object's silhouette, or far from
any match, stay empty too. Written by hand: OpenCV's inpainting works on 8-bit images and knows no validity weights.

Pixels of one photo that fall outside the other photo's frame can never be matched: stereo leaves them empty, so the
warped prior and the point cloud lose everything only one photo sees. :func:`extrapolate_beyond_overlap` gives them
the inverse depth pushed and pulled from all matched pixels of their view (a smooth guess, no support or spread
test): a surface roughly in place, which the model and the fit can correct, beats a hole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cameo.cameras import project_points, unproject_depth

from .stereo import box_mean, gray_levels


def plain_pixels(images: torch.Tensor, max_gradient: float, window: int) -> torch.Tensor:
    """``[V,H,W]`` bool: pixels of ``images [V,3,H,W]`` whose mean grey-level gradient magnitude over a
    ``window x window`` neighbourhood is below ``max_gradient`` (grey levels in [0, 1] per pixel)."""
    gray = gray_levels(images.float())
    dx = F.pad(gray[..., :, 1:] - gray[..., :, :-1], (0, 1, 0, 0)).abs()
    dy = F.pad(gray[..., 1:, :] - gray[..., :-1, :], (0, 0, 0, 1)).abs()
    return box_mean(dx + dy, window)[:, 0] < max_gradient


def push_pull(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``values [V,H,W]`` with every pixel outside ``valid`` set from the valid pixels around it: a pyramid of means
    of the valid pixels (push), then each level's holes filled from the next coarser one, bilinearly (pull)."""
    height, width = values.shape[-2:]
    if bool(valid.all()) or height == width == 1:
        return values
    kernel = (min(2, height), min(2, width))
    v, w = torch.where(valid, values, torch.zeros_like(values))[:, None], valid[:, None].float()
    count = F.avg_pool2d(w, kernel, ceil_mode=True)
    mean = F.avg_pool2d(v, kernel, ceil_mode=True) / count.clamp_min(1e-12)
    coarse = push_pull(mean[:, 0], count[:, 0] > 0)
    up = F.interpolate(coarse[:, None], size=values.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return torch.where(valid, values, up)


def _support(valid: torch.Tensor, reach: int) -> torch.Tensor:
    """``[V,H,W]`` share of valid pixels in the ``(2 reach + 1)``-wide window around each pixel."""
    window = 2 * reach + 1
    return F.avg_pool2d(valid[:, None].float(), window, stride=1, padding=reach, count_include_pad=False)[:, 0]


def fill_plain_holes(depth: torch.Tensor, images: torch.Tensor, max_gradient: float = 0.01, window: int = 5,
                     reach: float = 0.1, min_support: float = 0.1, max_spread: float = 0.1
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``depth [V,H,W]`` (NaN invalid) of ``images [V,3,H,W]`` with its plain holes filled, and the ``[V,H,W]``
    mask of the filled pixels.

    A plain hole (mean gradient below ``max_gradient`` over ``window`` pixels) is filled where at least
    ``min_support`` of the pixels within ``reach`` x the image's longer side are matched and the interpolated inverse
    depth's relative spread (standard deviation over mean, from the same pyramid) is at most ``max_spread``.
    """
    valid = torch.isfinite(depth) & (depth > 0)
    holes = ~valid & plain_pixels(images, max_gradient, window)
    if not bool(holes.any()) or not bool(valid.any()):
        return depth, torch.zeros_like(holes)
    inverse = torch.where(valid, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(depth))
    mean, second = push_pull(inverse, valid), push_pull(inverse**2, valid)
    spread = (second - mean**2).clamp_min(0).sqrt() / mean.clamp_min(1e-12)
    near = _support(valid, max(1, round(reach * max(depth.shape[-2:])))) >= min_support
    filled = holes & near & (spread <= max_spread)
    return torch.where(filled, 1.0 / mean.clamp_min(1e-12), depth), filled


def beyond_other_frame(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """``[2,H,W]`` bool: pixels of each of two views (z-``depth [2,H,W]``, ``K [2,3,3]``, ``c2w [2,4,4]``) whose
    point projects outside the other view's image or behind its camera. NaN depth counts as beyond."""
    height, width = depth.shape[-2:]
    points = unproject_depth(depth, K, c2w).reshape(2, -1, 3).flip(0)  # view 1's points first: seen by camera 0
    uv, z = project_points(points, K, c2w)
    inside = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)
    return ~inside.flip(0).reshape(2, height, width)


def extrapolate_beyond_overlap(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``depth [2,H,W]`` (NaN invalid) of a posed pair with its holes beyond the other view's frame filled, and the
    ``[2,H,W]`` mask of the filled pixels.

    Each hole gets the inverse depth pushed and pulled from every valid pixel of its view; it is kept where that
    guess puts it outside the other view's frame (a place stereo cannot reach). A view without depth stays empty.
    """
    valid = torch.isfinite(depth) & (depth > 0)
    has_depth = valid.flatten(1).any(1)[:, None, None]
    inverse = torch.where(valid, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(depth))
    guess = torch.where(has_depth, 1.0 / push_pull(inverse, valid).clamp_min(1e-12), float("nan"))
    filled = ~valid & has_depth & beyond_other_frame(guess, K, c2w)
    return torch.where(filled, guess, depth), filled
