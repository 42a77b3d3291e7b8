"""What two photos saw above a floor but could not place: the visual hull of their unmatched pixels.

Stereo leaves whatever it cannot match without depth (an untextured object, one seen from two sides too different
to match), yet such a thing still stands between a new camera and the floor behind it. Warped without it, the
floor behind the object shows through where the object should be. Each unmatched pixel of one photo looks along a
ray through space that nothing measured lies in front of; a point on that ray that lands on an unmatched pixel of
the other photo too lies inside both views' silhouettes of the unmatched: their visual hull, as silhouette carving
intersects them. Points are kept between the floor and a height cap (an object standing on the floor).

The hull stands in for the object as image-based visual hulls do: each point carries the colour each photo shows
where it lands, and a new view blends them by how near its camera is to each photo (:meth:`VisualHull.weights_for`).
Rendered with the cloud (:func:`cameo.geometry.cloud.render_cloud`) it either hides what lies behind it (a hole
the model fills) or, for a model trained with guessed surfaces (``prior.proxy``), shows those colours at the proxy's
mask value, never anchored.

Pixels of a floor colour (:func:`cameo.geometry.plane_growth.floor_colours`) are floor the growth did not reach:
they neither start rays nor hold a point, or the unmatched floor beside an object would raise a wall around it. A
point outside the other view's frame, or behind what it has matched, is not kept: one view's silhouette alone is a
cone from the camera to the floor, and on DTU scan24 views 13/14 such cones hid measured facades in the views
beside them (warped PSNR into view 15: 14.17 dB against 16.52 without them).

Measured with the floor grown (bundled model, 2 cores), PSNR / SSIM / LPIPS of the model, then of the
stereo-warped prior, on the held-out 2-to-2 scenes; the demo splat's held-out views at 64 px:
- coloured hull (default): set 0 22.23 / 0.699 / 0.270, 20.58 / 0.687 / 0.340; set 1 21.30 / 0.635 / 0.350,
  20.06 / 0.624 / 0.438; demo splat 21.06 / 0.765;
- hull as holes only: set 0 22.14 / 0.693 / 0.275, 20.64 / 0.687 / 0.358; set 1 21.30 / 0.635 / 0.351, 20.15 /
  0.635 / 0.440; demo 20.67 / 0.750;
- growth without a hull: set 0 22.07 / 0.697 / 0.276, 20.69 / 0.699 / 0.348; demo 19.76 / 0.711;
- no growth: set 0 21.76 / 0.658 / 0.296, 20.43 / 0.658 / 0.377; set 1 21.21 / 0.631 / 0.356, 20.08 / 0.632 /
  0.445; demo 20.23 / 0.683.
The photos alone fit the demo splat to 20.09 / 0.708 (18.26 / 0.582 without growth).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cameo.cameras import project_points, unproject_depth


@dataclass
class VisualHull:
    """World ``points [M,3]`` and radii ``sizes [M]`` of the hull, the colour each photo shows at each point
    (``colors [M,R,3]``) and the photos' camera centres (``centres [R,3]``), float32."""

    points: torch.Tensor
    sizes: torch.Tensor
    colors: torch.Tensor
    centres: torch.Tensor

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def weights_for(self, c2w: torch.Tensor) -> torch.Tensor:
        """``[V,R]``: how much each photo's colours count in cameras ``c2w [V,4,4]``, by inverse squared distance
        between camera centres (a view at a photo sees that photo's colours)."""
        distance = torch.cdist(c2w[:, :3, 3].float(), self.centres.float())
        closeness = 1.0 / distance.clamp_min(1e-6) ** 2
        return closeness / closeness.sum(1, keepdim=True)


SAMPLES_PER_RAY = 24
"""Points tried along each unmatched pixel's ray, evenly in depth between the height cap and the floor."""

HEIGHT_CAP = 0.6
"""Hull points stand at most this share of the lower camera's height above the floor."""


def _lookup(values: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Nearest-pixel ``values [C,H,W]`` (float) at pixel coordinates ``uv [N,2]``: ``[N,C]``, NaN outside."""
    height, width = values.shape[-2:]
    col, row = torch.floor(uv[:, 0]).long(), torch.floor(uv[:, 1]).long()
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    found = torch.full((uv.shape[0], values.shape[0]), float("nan"))
    found[inside] = values[:, row[inside], col[inside]].T
    return found


def _ray_samples(depth: torch.Tensor, floorlike: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor,
                 normal: torch.Tensor, offset: float, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """World points ``[N,S,3]`` along the rays of every ``stride``-th unmatched pixel of ``depth [H,W]`` that meets
    the floor, between the height cap and the floor, and their z-depth ``[N,S]`` in this view."""
    camera_height = float(normal @ c2w[:3, 3]) - offset
    grid = depth[::stride, ::stride]
    unit = unproject_depth(torch.ones_like(depth), K, c2w)[::stride, ::stride]  # the ray's point at z = 1
    drop = (unit - c2w[:3, 3]) @ normal  # height change per unit of z (negative: toward the floor)
    pick = ~torch.isfinite(grid) & ~floorlike[::stride, ::stride] & (drop < -1e-6)
    drop, ray = drop[pick], unit[pick] - c2w[:3, 3]
    cap = HEIGHT_CAP * camera_height
    z_floor = camera_height / -drop
    z_top = ((camera_height - cap) / -drop).clamp_min(0) if camera_height > cap else torch.zeros_like(drop)
    steps = (torch.arange(SAMPLES_PER_RAY) + 0.5) / SAMPLES_PER_RAY
    z = z_top[:, None] + (z_floor - z_top)[:, None] * steps
    return c2w[:3, 3] + z[..., None] * ray[:, None], z


def hull_above_floor(images: torch.Tensor, depth: torch.Tensor, floorlike: torch.Tensor, K: torch.Tensor,
                     c2w: torch.Tensor, plane: torch.Tensor, stride: int = 2) -> VisualHull:
    """The visual hull of a posed pair's unmatched pixels above its floor, each point as big as the footprint of a
    ``stride`` pixel at its depth.

    ``images [2,3,H,W]``, ``depth [2,H,W]`` (NaN unmatched), ``floorlike [2,H,W]``: pixels of a floor colour
    (unmatched floor: they neither start nor hold hull points); ``K [2,3,3]``, ``c2w [2,4,4]``; ``plane [4]``: the
    floor, ``normal . X = offset``, cameras on the side the normal points to."""
    normal, offset = plane[:3].float(), float(plane[3])
    points, sizes = [], []
    for ref in range(2):
        other = 1 - ref
        samples, z = _ray_samples(depth[ref], floorlike[ref], K[ref], c2w[ref], normal, offset, stride)
        flat = samples.reshape(-1, 3)
        uv, z_other = project_points(flat, K[other], c2w[other])
        unmatched = ~torch.isfinite(_lookup(depth[other][None], uv)[:, 0])
        unmatched &= _lookup(floorlike[other][None].float(), uv)[:, 0] == 0  # (NaN outside the frame: not kept)
        keep = unmatched & (z_other > 0)
        points.append(flat[keep])
        sizes.append((0.5 * stride * z.reshape(-1) / K[ref, 0, 0])[keep])
    points = torch.cat(points)
    colors = torch.stack([_lookup(images[view].float(), project_points(points, K[view], c2w[view])[0])
                          for view in range(2)], 1)
    return VisualHull(points.contiguous(), torch.cat(sizes).contiguous(), colors.nan_to_num(0.0).contiguous(),
                      c2w[:, :3, 3].float().clone())
