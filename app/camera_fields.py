"""Cameras for uploaded images without a camera file: a field of view and, for two images, their relative pose.

Camera 1 sits at the world origin looking along +z (OpenCV axes, identity ``c2w``). Camera 2 is either
orbited about a look-at point ``distance`` ahead of camera 1 (around the image's vertical axis, positive angles
to the right) or translated in camera 1's frame with the same orientation. Units are arbitrary: the pipeline
normalises the cameras, and the .ply comes out in these units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cameo.cameras import look_at

RELATIVE_POSE_MODES = ("orbit", "translation")


@dataclass
class CameraFields:
    """What the user typed: horizontal field of view and the second camera's pose relative to the first."""

    fov_deg: float = 50.0
    """Horizontal field of view of both images, degrees (a phone's main camera is about 65-70)."""
    mode: str = "orbit"
    """``orbit`` (angle about a look-at point) or ``translation`` (same orientation, moved)."""
    orbit_deg: float = 30.0
    """Orbit: angle of camera 2 around the look-at point, degrees; positive = to the right of camera 1."""
    distance: float = 1.0
    """Orbit: distance from camera 1 to the look-at point, along its viewing direction."""
    translation: tuple[float, float, float] = (0.3, 0.0, 0.0)
    """Translation: camera 2's centre in camera 1's frame (x right, y down, z forward)."""


def intrinsics_from_fov(width: int, height: int, fov_deg: float) -> torch.Tensor:
    """Square-pixel pinhole ``K [3,3]`` with horizontal field of view ``fov_deg`` and the principal point centred."""
    if not 1.0 <= fov_deg <= 170.0:
        raise ValueError(f"field of view must be between 1 and 170 degrees, got {fov_deg:g}")
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def second_camera(fields: CameraFields) -> torch.Tensor:
    """OpenCV ``c2w [4,4]`` of camera 2 relative to camera 1 (the identity)."""
    if fields.mode == "orbit":
        if fields.distance <= 0:
            raise ValueError(f"look-at distance must be > 0, got {fields.distance:g}")
        if not 0 < abs(fields.orbit_deg) < 180:
            raise ValueError(f"orbit angle must be non-zero and within (-180, 180) degrees, got {fields.orbit_deg:g}")
        angle = math.radians(fields.orbit_deg)
        target = torch.tensor([0.0, 0.0, fields.distance])
        eye = torch.tensor([fields.distance * math.sin(angle), 0.0, fields.distance * (1 - math.cos(angle))])
        return look_at(eye, target, torch.tensor([0.0, -1.0, 0.0]))
    if fields.mode == "translation":
        t = torch.tensor([float(v) for v in fields.translation])
        if t.norm() <= 1e-9:
            raise ValueError("translation of camera 2 must be non-zero (two identical cameras give no path)")
        c2w = torch.eye(4)
        c2w[:3, 3] = t
        return c2w
    raise ValueError(f"relative pose mode must be one of {', '.join(RELATIVE_POSE_MODES)}, got {fields.mode!r}")


def cameras_from_fields(
    num_images: int, width: int, height: int, fields: CameraFields
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K [N,3,3], c2w [N,4,4])`` for ``num_images`` (1 or 2) images of ``width`` x ``height`` pixels."""
    K = intrinsics_from_fov(width, height, fields.fov_deg)
    poses = [torch.eye(4)] if num_images == 1 else [torch.eye(4), second_camera(fields)]
    return K.expand(num_images, 3, 3).clone(), torch.stack(poses)
