"""Camera geometry shared by every stage (vectorised over leading batch dimensions).

Convention used everywhere inside the code (convert only at the edges):

* ``c2w``: OpenCV camera-to-world rigid transforms ``[..., 4, 4]`` (x right, y down, z forward).
* ``K``: pixel intrinsics ``[..., 3, 3]``; the image's top-left corner is pixel coordinate (0, 0), so the centre of
  the pixel in row ``i`` and column ``j`` is ``(u, v) = (j + 0.5, i + 0.5)``. Resizing by ``(sx, sy)`` scales the
  first two rows of ``K``.
* Depth is z-depth (distance along the optical axis), not ray length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def pixel_centers(
    height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Pixel-centre coordinates ``[H, W, 2]`` as (u, v) = (column + 0.5, row + 0.5)."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype) + 0.5,
        torch.arange(width, device=device, dtype=dtype) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def sampling_grid(uv: torch.Tensor, height: int, width: int, limit: float = 3.0) -> torch.Tensor:
    """``grid_sample`` coordinates (``align_corners=False``) of pixel coordinates ``uv [..., 2]`` in a ``height x
    width`` image; NaN and far-off coordinates go to ``limit`` (beyond [-1, 1], where the padding mode decides)."""
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=uv.dtype, device=uv.device)
    return (uv * scale - 1).nan_to_num(nan=-limit).clamp(-limit, limit)


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Intrinsics of the same camera after resizing the image by ``(sx, sy)`` (new size / old size)."""
    scale = torch.tensor([sx, sy, 1.0], dtype=K.dtype, device=K.device)
    return K * scale[:, None]


def resize_with_intrinsics(
    images: torch.Tensor, K: torch.Tensor, size: tuple[int, int], mode: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize ``images [..., C, H, W]`` to ``size = (h, w)`` and return the matching intrinsics.

    Downsampling uses antialiasing (area-weighted) so small renders do not alias.
    """
    *lead, c, h0, w0 = images.shape
    h, w = size
    flat = images.reshape(-1, c, h0, w0)
    if mode in ("bilinear", "bicubic"):
        out = F.interpolate(flat, size=(h, w), mode=mode, align_corners=False, antialias=(h < h0 or w < w0))
    else:
        out = F.interpolate(flat, size=(h, w), mode=mode)
    return out.reshape(*lead, c, h, w), scale_intrinsics(K, w / w0, h / h0)


def center_crop_with_intrinsics(
    images: torch.Tensor, K: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre-crop ``images [..., C, H, W]`` to ``size = (h, w)``; the principal point shifts by the offset."""
    h0, w0 = images.shape[-2:]
    h, w = size
    if h > h0 or w > w0:
        raise ValueError(f"crop size {size} is larger than the image ({h0}, {w0})")
    top, left = (h0 - h) // 2, (w0 - w) // 2
    K = K.clone()
    K[..., 0, 2] -= left
    K[..., 1, 2] -= top
    return images[..., top : top + h, left : left + w], K


def invert_pose(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms ``[..., 4, 4]`` (uses R^T, exact for orthonormal rotations)."""
    R, t = T[..., :3, :3], T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


def relative_to_reference(c2w: torch.Tensor, ref: int = 0) -> torch.Tensor:
    """Express cameras ``[..., V, 4, 4]`` in the frame of camera ``ref`` (which becomes the identity)."""
    ref_w2c = invert_pose(c2w[..., ref : ref + 1, :, :])
    return ref_w2c @ c2w


@dataclass(frozen=True)
class SceneNormalization:
    """Similarity transform from a scene's world frame to the normalised frame (and back).

    Normalised coordinates: ``x_n = scale * (ref_w2c @ x)``: the reference camera becomes the identity and the
    farthest camera sits at distance 1. ``ref_c2w [*B, 4, 4]`` and ``scale [*B]`` may carry batch dimensions
    ``*B``; the methods then take cameras ``[*B, ..., 4, 4]`` and points ``[*B, ..., 3]``.
    """

    ref_c2w: torch.Tensor
    scale: torch.Tensor

    def _broadcast(self, x: torch.Tensor, trailing: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference pose and scale viewed so they broadcast against ``x`` (which has ``trailing`` item dims)."""
        n_items = x.ndim - self.scale.ndim - trailing
        shape = self.scale.shape + (1,) * n_items
        ref = self.ref_c2w.to(x.dtype).reshape(*shape, 4, 4)
        return ref, self.scale.to(x.dtype).reshape(shape)

    def apply_c2w(self, c2w: torch.Tensor) -> torch.Tensor:
        """World-frame cameras -> normalised cameras."""
        ref, scale = self._broadcast(c2w, 2)
        out = invert_pose(ref) @ c2w
        out[..., :3, 3] *= scale[..., None]
        return out

    def invert_c2w(self, c2w_n: torch.Tensor) -> torch.Tensor:
        """Normalised cameras -> world-frame cameras in the original units."""
        ref, scale = self._broadcast(c2w_n, 2)
        out = c2w_n.clone()
        out[..., :3, 3] /= scale[..., None]
        return ref @ out

    def apply_points(self, points: torch.Tensor) -> torch.Tensor:
        """World points -> normalised points."""
        ref, scale = self._broadcast(points, 1)
        w2c = invert_pose(ref)
        local = (w2c[..., :3, :3] @ points[..., None]).squeeze(-1) + w2c[..., :3, 3]
        return local * scale[..., None]

    def invert_points(self, points_n: torch.Tensor) -> torch.Tensor:
        """Normalised points -> world points."""
        ref, scale = self._broadcast(points_n, 1)
        local = points_n / scale[..., None]
        return (ref[..., :3, :3] @ local[..., None]).squeeze(-1) + ref[..., :3, 3]


def normalize_cameras(c2w: torch.Tensor, ref: int = 0, eps: float = 1e-8) -> tuple[torch.Tensor, SceneNormalization]:
    """Cameras ``[..., V, 4, 4]`` relative to view ``ref``, scaled so the farthest camera is at distance 1.

    This is the normalisation of the reference implementation's camera conditioning. If all cameras coincide the
    scale is 1. Returns the normalised cameras and the transform that maps results back to the input frame.
    """
    rel = relative_to_reference(c2w, ref)
    dist = rel[..., :3, 3].norm(dim=-1).amax(dim=-1)  # [...]
    scale = torch.where(dist > eps, 1.0 / dist.clamp_min(eps), torch.ones_like(dist))
    rel = rel.clone()
    rel[..., :3, 3] = rel[..., :3, 3] * scale[..., None, None]
    return rel, SceneNormalization(ref_c2w=c2w[..., ref, :, :].clone(), scale=scale)


def camera_rays(
    c2w: torch.Tensor, K: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space ray origins and unit directions ``[..., H, W, 3]`` through every pixel centre."""
    uv = pixel_centers(height, width, device=c2w.device, dtype=c2w.dtype)  # [H, W, 2]
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy = K[..., 0, 2, None, None], K[..., 1, 2, None, None]
    x = (uv[..., 0] - cx) / fx
    y = (uv[..., 1] - cy) / fy
    dirs_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [..., H, W, 3]
    R = c2w[..., None, None, :3, :3]
    dirs = (R @ dirs_cam[..., None]).squeeze(-1)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[..., None, None, :3, 3].expand_as(dirs)
    return origins, dirs


def plucker_rays(c2w: torch.Tensor, K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Plücker ray maps ``[..., 6, H, W]``: unit direction d and moment o x d per pixel.

    ``K`` must be the intrinsics of an image of size ``(height, width)``; use :func:`scale_intrinsics` first to
    produce rays at another resolution (e.g. the latent grid).
    """
    origins, dirs = camera_rays(c2w, K, height, width)
    moment = torch.cross(origins, dirs, dim=-1)
    return torch.cat([dirs, moment], dim=-1).movedim(-1, -3)


def unproject_depth(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """World points ``[..., H, W, 3]`` from z-depth maps ``[..., H, W]`` (NaN depth gives NaN points)."""
    h, w = depth.shape[-2:]
    uv = pixel_centers(h, w, device=depth.device, dtype=depth.dtype)
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy = K[..., 0, 2, None, None], K[..., 1, 2, None, None]
    cam = torch.stack([(uv[..., 0] - cx) / fx * depth, (uv[..., 1] - cy) / fy * depth, depth], dim=-1)
    R = c2w[..., None, None, :3, :3]
    return (R @ cam[..., None]).squeeze(-1) + c2w[..., None, None, :3, 3]


def project_points(points: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points ``[..., N, 3]`` into cameras; returns pixel coordinates ``[..., N, 2]`` and z ``[..., N]``."""
    w2c = invert_pose(c2w)
    cam = points @ w2c[..., :3, :3].transpose(-1, -2) + w2c[..., None, :3, 3]
    z = cam[..., 2]
    pix = cam @ K.transpose(-1, -2)
    return pix[..., :2] / z[..., None], z


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """OpenCV camera-to-world ``[..., 4, 4]`` at ``eye`` looking at ``target``; ``up`` points up in the image.

    The camera z axis points at the target, x to the right and y down (so image-up is ``-y`` ~ ``up``).
    """
    z = target - eye
    z = z / z.norm(dim=-1, keepdim=True)
    x = torch.cross(z, up.expand_as(z).to(z.dtype), dim=-1)
    x_norm = x.norm(dim=-1, keepdim=True)
    if bool((x_norm < 1e-8).any()):
        raise ValueError("look_at: viewing direction is parallel to the up vector")
    x = x / x_norm
    y = torch.cross(z, x, dim=-1)
    c2w = torch.zeros(*z.shape[:-1], 4, 4, dtype=z.dtype, device=z.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = x, y, z, eye
    c2w[..., 3, 3] = 1.0
    return c2w


def look_at_point(c2w: torch.Tensor) -> torch.Tensor:
    """Least-squares point closest to all optical axes (falls back to 1 unit ahead of the mean camera)."""
    o, d = c2w[:, :3, 3], c2w[:, :3, 2]
    proj = torch.eye(3, dtype=c2w.dtype, device=c2w.device) - d[:, :, None] * d[:, None, :]
    A, b = proj.sum(0), (proj @ o[:, :, None]).sum(0)
    if torch.linalg.matrix_rank(A) < 3 or torch.linalg.cond(A) > 1e6:
        return o.mean(0) + F.normalize(d.mean(0), dim=0)
    return torch.linalg.solve(A, b)[:, 0]


def focus_depth(point: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """Z-depth of a world ``point [3]`` in the view ``K [3,3]``, ``c2w [4,4]``; its distance (at least 1e-3) when
    it lies behind the camera, so a plane through it is always in front."""
    z = project_points(point[None], K, c2w)[1][0]
    return torch.where(z > 0, z, (c2w[:3, 3] - point).norm().clamp_min(1e-3))


def up_direction(c2w: torch.Tensor, parallel: float = 0.01) -> torch.Tensor:
    """World up ``[3]`` as cameras ``c2w [N,4,4]`` (OpenCV) are held: the direction perpendicular to every camera's
    x axis (a camera without roll keeps its x axis level, whatever its pitch or heading). When the x axes are all
    (nearly) parallel, which leaves up free to turn about them (one camera, facing or opposite views), the cameras'
    mean up axis (-y) made perpendicular to them. The sign follows that axis."""
    c2w = c2w.double()
    x, up = c2w[:, :3, 0], F.normalize(-c2w[:, :3, 1].mean(0), dim=0)
    values, vectors = torch.linalg.eigh(x.T @ x / len(x))
    if values[1] > parallel:
        direction = vectors[:, 0]
    else:
        axis = vectors[:, 2]
        direction = F.normalize(up - (up @ axis) * axis, dim=0)
    return (direction if direction @ up >= 0 else -direction).float()
