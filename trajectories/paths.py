"""Camera paths for view generation, all as OpenCV camera-to-world tensors (see ``cameo/cameras.py``).

* Two views: ``two_view_path`` interpolates between the inputs (which are the path's exact ends), either linearly
  (positions lerped, rotations slerped) or as an orbit arc around the point where the two optical axes meet.
* One view: ``single_view_path`` starts at the input and moves around a look-at point at a plausible depth.

Rotations use scipy's ``Rotation``/``Slerp`` (unit quaternions); poses are computed in float64 and returned in the
input dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.spatial.transform import Rotation, Slerp

from cameo.cameras import look_at
from cameo.scene import Scene, SceneError, check_distinct_cameras

TwoViewMode = Literal["auto", "orbit", "linear"]
SingleViewKind = Literal["circle", "orbit", "forward", "sideways"]
DEFAULT_TARGETS = 98  # CAT3D/CAMEO protocol: 2 inputs + 98 generated views = 100
MIN_AXIS_ANGLE_DEG = 1.0  # optical axes closer to parallel than this do not define a look-at point


@dataclass(frozen=True)
class CameraPath:
    """Poses along a path: ``c2w [M, 4, 4]`` (OpenCV), ``K [M, 3, 3]``; ``input_indices`` are the given views."""

    c2w: torch.Tensor
    K: torch.Tensor
    input_indices: tuple[int, ...]
    mode: str

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    @property
    def target_indices(self) -> tuple[int, ...]:
        """Path indices of the views to generate (every index that is not an input)."""
        inputs = set(self.input_indices)
        return tuple(i for i in range(len(self)) if i not in inputs)


def _pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Stack rotations [M, 3, 3] and translations [M, 3] into c2w [M, 4, 4]."""
    out = np.zeros((len(t), 4, 4))
    out[:, :3, :3], out[:, :3, 3], out[:, 3, 3] = R, t, 1.0
    return out


def optical_axes_meeting_point(c2w: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
    """Where the two optical axes meet: the midpoint of their closest points, the depth of that point along each
    axis, and the larger distance from it to an axis. For (nearly) parallel axes the midpoint of the two camera
    centres stands in (cameras facing each other across an object still get a point in front of both)."""
    m = c2w.detach().double().cpu().numpy()
    o, d = m[:, :3, 3], m[:, :3, 2]
    w = o[0] - o[1]
    b = float(d[0] @ d[1])
    denom = 1.0 - b * b  # directions are unit vectors
    if denom < math.sin(math.radians(MIN_AXIS_ANGLE_DEG)) ** 2:
        point = o.mean(axis=0)
    else:
        s0 = (b * float(d[1] @ w) - float(d[0] @ w)) / denom
        s1 = (float(d[1] @ w) - b * float(d[0] @ w)) / denom
        point = (o[0] + s0 * d[0] + o[1] + s1 * d[1]) / 2
    depths = np.einsum("vi,vi->v", point - o, d)
    gap = float(np.linalg.norm(point - o - depths[:, None] * d, axis=1).max())
    return point, depths, gap


def choose_two_view_mode(c2w: torch.Tensor) -> Literal["orbit", "linear"]:
    """``"orbit"`` when the optical axes converge in front of both cameras (and pass close to each other relative
    to that depth), else ``"linear"`` (e.g. forward-facing or diverging cameras)."""
    _, depths, gap = optical_axes_meeting_point(c2w)
    return "orbit" if depths.min() > 0 and gap < 0.5 * depths.min() else "linear"


def _orbit_pivot_axis(u0: np.ndarray, u1: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit axis and angle of the rotation taking direction u0 to u1 (about the camera up when they are opposite)."""
    cross = np.cross(u0, u1)
    angle = math.atan2(float(np.linalg.norm(cross)), float(u0 @ u1))
    if np.linalg.norm(cross) > 1e-9:
        return cross / np.linalg.norm(cross), angle
    if angle < 1e-6:
        return np.array([0.0, 0.0, 1.0]), 0.0
    axis = up - (up @ u0) * u0  # opposite directions: swing around the cameras' shared up direction
    if np.linalg.norm(axis) < 1e-9:
        axis = np.cross(u0, [1.0, 0.0, 0.0] if abs(u0[0]) < 0.9 else [0.0, 1.0, 0.0])
    return axis / np.linalg.norm(axis), angle


def two_view_path(
    c2w: torch.Tensor,
    K: torch.Tensor,
    n_targets: int = DEFAULT_TARGETS,
    mode: TwoViewMode = "auto",
    source: str | None = None,
) -> CameraPath:
    """``n_targets`` views between two cameras; the path has ``n_targets + 2`` poses, inputs at index 0 and -1.

    ``"linear"``: centres lerped, rotations slerped at constant speed. ``"orbit"``: the camera centre moves on an
    arc about the look-at point triangulated from the optical axes (radius lerped, direction rotated at constant
    angular speed) and the orientation co-rotates with the arc, so cameras that look at that point keep looking
    at it; the residual orientation difference is slerped. ``"auto"``: see :func:`choose_two_view_mode`.
    Intrinsics are lerped. Raises :class:`SceneError` for identical cameras or a bad mode.
    """
    if c2w.shape != (2, 4, 4) or K.shape != (2, 3, 3):
        raise SceneError(source, "frames", f"need 2 cameras, got c2w {list(c2w.shape)} and K {list(K.shape)}")
    if n_targets < 0:
        raise ValueError(f"n_targets must be >= 0, got {n_targets}")
    check_distinct_cameras(c2w, source, "frames")
    if mode == "auto":
        mode = choose_two_view_mode(c2w)
    m = c2w.detach().double().cpu().numpy()
    t = np.linspace(0.0, 1.0, n_targets + 2)
    if mode == "linear":
        centres = (1 - t)[:, None] * m[0, :3, 3] + t[:, None] * m[1, :3, 3]
        rots = Slerp([0.0, 1.0], Rotation.from_matrix(m[:, :3, :3]))(t).as_matrix()
    elif mode == "orbit":
        pivot = optical_axes_meeting_point(c2w)[0]
        offsets = m[:, :3, 3] - pivot
        radii = np.linalg.norm(offsets, axis=1)
        u0, u1 = offsets / radii[:, None]
        axis, angle = _orbit_pivot_axis(u0, u1, -(m[0, :3, 1] + m[1, :3, 1]))
        swing = Rotation.from_rotvec(t[:, None] * angle * axis)  # G(t): takes u0 to the direction at t
        residual = Rotation.from_matrix(np.stack([m[0, :3, :3], swing[-1].inv().as_matrix() @ m[1, :3, :3]]))
        rots = (swing * Slerp([0.0, 1.0], residual)(t)).as_matrix()
        centres = pivot + ((1 - t) * radii[0] + t * radii[1])[:, None] * swing.apply(u0)
    else:
        raise SceneError(source, "mode", f"unknown two-view path mode {mode!r} (auto, orbit, linear)")
    Kd = K.detach().double().cpu()
    tt = torch.from_numpy(t)[:, None, None]
    K_path = (1 - tt) * Kd[0] + tt * Kd[1]
    out = torch.from_numpy(_pose(rots, centres)).to(c2w.dtype)
    return CameraPath(out, K_path.to(K.dtype), (0, n_targets + 1), mode)


def default_look_at_depth(c2w: torch.Tensor) -> float:
    """A plausible look-at depth for one view: the z-depth of the world origin when it lies in front of the camera
    (object-centric datasets centre the object there), else 1 (unit-normalised scenes)."""
    m = c2w.detach().double().cpu()
    depth = float((-m[:3, 3]) @ m[:3, 2])
    return depth if depth > 1e-6 * max(1.0, float(m[:3, 3].norm())) else 1.0


def single_view_path(
    c2w: torch.Tensor,
    K: torch.Tensor,
    n_targets: int = DEFAULT_TARGETS,
    kind: SingleViewKind = "circle",
    size: float = 0.15,
    depth: float | None = None,
) -> CameraPath:
    """``n_targets`` views starting from one camera (index 0 is the input); the look-at point is ``depth`` ahead.

    ``size`` sets the motion relative to the look-at depth: ``"circle"`` moves the centre on a circle of radius
    ``size * depth`` in the image plane while looking at the point; ``"orbit"`` swings around the point about the
    camera's up axis by ``size`` of a full turn; ``"forward"`` / ``"sideways"`` translate by up to ``size * depth``
    along the optical axis / image x axis with fixed orientation. ``depth`` default: :func:`default_look_at_depth`.
    """
    if c2w.shape != (4, 4) or K.shape != (3, 3):
        raise ValueError(f"need one camera c2w [4, 4] and K [3, 3], got {list(c2w.shape)} and {list(K.shape)}")
    if n_targets < 0 or size <= 0:
        raise ValueError(f"n_targets must be >= 0 and size > 0, got {n_targets}, {size}")
    depth = default_look_at_depth(c2w) if depth is None else float(depth)
    if not depth > 0:
        raise ValueError(f"look-at depth must be > 0, got {depth}")
    m = c2w.detach().double().cpu()
    R0, C0 = m[:3, :3], m[:3, 3]
    x0, y0, z0 = R0.T
    target = C0 + depth * z0
    t = torch.arange(n_targets + 1, dtype=torch.float64)[:, None] / (n_targets + 1)  # t < 1: never back at the start
    if kind == "circle":
        theta = 2 * math.pi * t
        centres = C0 + size * depth * ((torch.cos(theta) - 1) * x0 + torch.sin(theta) * y0)
        out = look_at(centres, target.expand_as(centres), -y0)
    elif kind == "orbit":
        swing = torch.from_numpy(Rotation.from_rotvec((2 * math.pi * size * t).numpy() * (-y0.numpy())).as_matrix())
        out = torch.from_numpy(_pose((swing @ R0).numpy(), (target + (swing @ (C0 - target))).numpy()))
    elif kind in ("forward", "sideways"):
        direction = z0 if kind == "forward" else x0
        out = m.expand(n_targets + 1, 4, 4).clone()
        out[:, :3, 3] = C0 + size * depth * t * direction
    else:
        raise ValueError(f"unknown single-view path kind {kind!r} (circle, orbit, forward, sideways)")
    K_path = K.detach().expand(n_targets + 1, 3, 3).clone()
    return CameraPath(out.to(c2w.dtype), K_path, (0,), kind)


def scene_path(scene: Scene, n_targets: int = DEFAULT_TARGETS, mode: str = "auto", size: float = 0.15) -> CameraPath:
    """The default path for a loaded scene: two-view interpolation for 2 frames, a single-view path for 1.

    ``mode`` is a two-view mode (auto, orbit, linear) or a single-view kind ("auto" means circle).
    """
    src = str(scene.source) if scene.source is not None else None
    if len(scene.frames) == 2:
        return two_view_path(scene.c2w, scene.K, n_targets, mode, src)  # type: ignore[arg-type]
    kind = "circle" if mode == "auto" else mode
    return single_view_path(scene.c2w[0], scene.K[0], n_targets, kind, size)  # type: ignore[arg-type]
