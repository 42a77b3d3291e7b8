"""Grow a matched plane (the floor the level sweep found) over the low-texture pixels window matching leaves empty.

A window score (ZNCC) cannot place a pixel inside a flat patch of colour: every plane aligns it equally well, so
stereo leaves the inside of a floor's plain blobs empty and keeps only their edges. Once the floor's plane is known,
each empty pixel has one candidate depth, where its ray meets the plane, and the other view tests it, as
plane-guided propagation in multi-view stereo does:
- the point lies inside the other view's frame, in front of what that view has matched: the pixel is floor when the
  other view sees the same colour there, and is left empty otherwise (it is something standing on the floor);
- the point lies outside the other view's frame, or behind what it has matched: the pixel cannot be tested; it is
  taken as floor when its own colour is one of the matched floor's.
Only regions connected to matched floor pixels through accepted pixels are kept.

On by default (``cameo.geometry.cloud.stereo_depth(grow_floor=...)``), together with the visual hull of what
stays unmatched above the floor, which it makes possible (:mod:`cameo.geometry.hull`). Measured on 2 cores:
- the 8 held-out 2-to-2 scenes (data seed 0): the stereo-warped prior goes from 20.43 / 0.658 / 0.377 to 20.69 /
  0.699 / 0.348 and the bundled model's views from 21.76 / 0.658 / 0.296 to 22.07 / 0.697 / 0.276 (four objects up,
  the rooms unchanged: their fitted plane holds under 2 % of their matches). A variant that took every pixel of a floor
  colour, whatever the other view sees at its point, reached 22.08 / 0.709 / 0.270 there, but set 1 (data seed 1)
  fell from 21.21 / 0.631 to 21.12 / 0.628 and the demo object's splat from 20.23 to 18.59 dB.
- the demo object (``assets/demo/object_00``), growth alone: the fit to the two photos alone gains 1.8 dB (18.26 /
  0.582 to 20.09 / 0.708, held-out 64 px), the full fit loses 0.47 dB (20.23 to 19.76): the floor behind each
  object, which has no depth, shows through it in the prior of the views between the photos. Objects stood on the
  floor as upright cards at their contact line fixed that on the demo object and broke the held-out pairs (one
  object scene to 9.7 dB); the hull fixes it (its docstring has the numbers).
- DTU scan24 views 22/25: unchanged (no plane holds 5 % of a view's matches).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cameo.cameras import project_points, sampling_grid, unproject_depth

from .stereo import StereoResult, box_mean, level_plane_depth, view_share

COLOUR_TOLERANCE = 0.04
"""Largest mean absolute RGB difference (in [0, 1], over a 3x3 window) between a pixel and the other view at its
point on the plane for the two to be the same floor."""

PALETTE_TOLERANCE = 0.05
"""Largest RGB distance from a colour of the matched floor at which a colour counts as a floor colour."""

OCCLUSION_MARGIN = 0.03
"""A plane point lies behind what the other view has matched when it is farther by this share of that depth."""

SEED_AGREEMENT = 0.02
"""Matched pixels whose depth is within this share of the plane's are the floor the growth starts from."""

MIN_SEED_SHARE = 0.05
"""A view grows the plane only when its matched pixels on it cover this share of the view. The plane fitted in the
held-out rooms (no floor texture the level sweep aligns) passes through 1-2 % of their matches, where walls cross it;
grown from those, 91-95 % of the pixels were wrong."""


def _sample(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples ``[C,N]`` of ``image [C,H,W]`` at pixel coordinates ``uv [N,2]`` (border replicated)."""
    height, width = image.shape[-2:]
    grid = sampling_grid(uv, height, width).reshape(1, 1, -1, 2)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0]


def seen_on_plane(colours: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, plane_depth: torch.Tensor,
                  depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the other view sees at each pixel's point on the plane (z-depth ``plane_depth [2,H,W]``, NaN off it):
    its colour ``[2,3,H,W]`` (of ``colours [2,3,H,W]``) and ``visible [2,H,W]``: the point lands inside its frame,
    not behind what it has matched (``depth [2,H,W]``, NaN unknown)."""
    height, width = colours.shape[-2:]
    seen, visible = [], []
    for ref in range(2):
        other = 1 - ref
        finite = torch.isfinite(plane_depth[ref])
        points = unproject_depth(torch.where(finite, plane_depth[ref], torch.ones_like(plane_depth[ref])),
                                 K[ref], c2w[ref]).reshape(-1, 3)
        uv, z = project_points(points, K[other], c2w[other])
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= width) & (uv[:, 1] >= 0) & (uv[:, 1] <= height)
        nearest = _sample(depth[other].nan_to_num(nan=float("inf"))[None], uv)[0]
        visible.append((finite.reshape(-1) & inside & ~(z > nearest * (1 + OCCLUSION_MARGIN))).reshape(height, width))
        seen.append(_sample(colours[other], uv).reshape(3, height, width))
    return torch.stack(seen), torch.stack(visible)


def near_palette(colours: torch.Tensor, palette: torch.Tensor, tolerance: float = PALETTE_TOLERANCE) -> torch.Tensor:
    """``[H,W]`` bool: pixels of ``colours [3,H,W]`` within ``tolerance`` (RGB distance) of a ``palette [P,3]``
    colour (False everywhere for an empty palette)."""
    flat = colours.reshape(3, -1).T
    if len(palette) == 0:
        return torch.zeros(colours.shape[-2:], dtype=torch.bool)
    nearest = torch.cat([torch.cdist(part, palette).min(1).values for part in flat.split(8192)])
    return (nearest <= tolerance).reshape(colours.shape[-2:])


def floor_palette(colours: torch.Tensor, seeds: torch.Tensor, samples: int = 2048) -> torch.Tensor:
    """``[P,3]``: at most ``samples`` colours of the ``seeds [2,H,W]`` pixels of ``colours [2,3,H,W]``, evenly
    spaced in pixel order."""
    palette = colours.permute(0, 2, 3, 1)[seeds]
    if len(palette) <= samples:
        return palette
    return palette[torch.linspace(0, len(palette) - 1, samples).long()]


def connected_to(candidates: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """``[H,W]`` bool: the pixels of ``candidates | seeds`` in a 4-connected region that holds a seed."""
    grown = (candidates | seeds).numpy().astype(np.uint8)
    _, labels = cv2.connectedComponents(grown, connectivity=4)
    labels = torch.from_numpy(labels.astype(np.int64))
    kept = torch.zeros(int(labels.max()) + 1, dtype=torch.bool)
    kept[labels[seeds]] = True
    kept[0] = False
    return kept[labels]


def floor_colours(colours: torch.Tensor, depth: torch.Tensor, plane_depth: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The matched pixels on the plane (the seeds, ``[2,H,W]``; none in a view where they cover less than
    :data:`MIN_SEED_SHARE`) and the pixels of ``colours [2,3,H,W]`` in their palette (``[2,H,W]``)."""
    seeds = torch.isfinite(depth) & ((depth - plane_depth).abs() <= SEED_AGREEMENT * plane_depth)
    seeds &= view_share(seeds)[:, None, None] >= MIN_SEED_SHARE
    palette = floor_palette(colours, seeds)
    return seeds, torch.stack([near_palette(colours[v], palette) for v in range(2)])


def grow_plane(images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, depth: torch.Tensor,
               plane_depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[2,H,W]`` bool: the empty pixels of ``depth [2,H,W]`` (NaN) that take the plane's depth ``plane_depth``
    (the module's tests), connected through such pixels to matched pixels on the plane; and ``[2,H,W]`` bool: the
    pixels of a floor colour (:func:`floor_colours`)."""
    colours = box_mean(images, 3)
    seeds, like = floor_colours(colours, depth, plane_depth)
    seen, visible = seen_on_plane(colours, K, c2w, plane_depth, depth)
    same = visible & ((seen - colours).abs().mean(1) <= COLOUR_TOLERANCE)
    candidates = ~torch.isfinite(depth) & torch.isfinite(plane_depth) & (same | (like & ~visible))
    return torch.stack([connected_to(candidates[v], seeds[v]) for v in range(2)]) & candidates, like


def with_grown_floor(result: StereoResult, images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor
                     ) -> tuple[StereoResult, torch.Tensor]:
    """``result`` (stereo of ``images [2,3,H,W]``, ``K``, ``c2w``) with its fitted level plane grown
    (:func:`grow_plane`), grown pixels counted as level-plane depth at confidence 0 (no window matched them), and
    the ``[2,H,W]`` mask of floor-coloured pixels. Unchanged, with no floor colour, when stereo fitted no plane."""
    if result.plane is None:
        return result, torch.zeros_like(result.valid)
    floor = level_plane_depth(K, c2w, result.plane, *result.depth.shape[-2:])
    grown, like = grow_plane(images, K, c2w, result.depth, floor)
    return StereoResult(torch.where(grown, floor, result.depth), torch.where(grown, 0.0, result.confidence),
                        result.valid | grown, result.level | grown, result.plane), like
