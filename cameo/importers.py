"""Converters between outside camera formats and the internal OpenCV ``c2w`` + pixel ``K`` convention.

* nerfstudio ``transforms.json`` (OpenGL camera axes: x right, y up, z back), read and written; the reconstruction
  step writes one so nerfstudio can train on the generated views.
* 3x4 projection matrices ``P = K [R | t]`` as DTU/IDR ``cameras.npz`` ship them (``world_mat_i``, optional
  ``scale_mat_i``), split by RQ decomposition into K (positive focal lengths) and a proper rotation, and composed back.

Conversions happen only here (see docs/CONTRACTS.md); everything returned is OpenCV.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cameo.atomic import write_json_atomic
from cameo.cameras import invert_pose
from cameo.scene import (
    Frame,
    Scene,
    SceneError,
    check_intrinsics,
    check_pose,
    read_json,
    relative_image_path,
    validate_scene,
)

# Flipping the camera's y and z axes maps OpenGL camera axes to OpenCV ones (and back: it is its own inverse).
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
MAX_SKEW = 1e-3  # |K[0,1]| / fx above which a projection matrix is rejected (Frame has no skew term)


def opengl_to_opencv(c2w: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Camera-to-world [..., 4, 4] with OpenGL camera axes -> OpenCV camera axes (same world frame)."""
    flip = torch.as_tensor(_GL_TO_CV, dtype=c2w.dtype) if isinstance(c2w, torch.Tensor) else _GL_TO_CV
    return c2w @ flip


opencv_to_opengl = opengl_to_opencv  # the axis flip is an involution


# ---------------------------------------------------------------------------------------------------- nerfstudio


def _number(obj: dict[str, Any], key: str, source: Path, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SceneError(source, f"{where}{key}", f"must be a number, got {value!r}")
    return float(value)


def _resolve_image(folder: Path, file_path: str) -> Path:
    """nerfstudio/Blender paths are relative to the json; Blender ones may omit the ``.png`` extension."""
    path = (folder / file_path).resolve()
    if not path.exists() and not path.suffix and path.with_suffix(".png").exists():
        return path.with_suffix(".png")
    return path


def _ns_frame(meta: dict[str, Any], frame: Any, index: int, source: Path) -> Frame:
    """One nerfstudio frame; per-frame intrinsics override the global ones."""
    where = f"frames[{index}]."
    if not isinstance(frame, dict):
        raise SceneError(source, f"frames[{index}]", "must be an object")
    if not isinstance(frame.get("file_path"), str):
        raise SceneError(source, f"{where}file_path", "missing or not a string")
    if "transform_matrix" not in frame:
        raise SceneError(source, f"{where}transform_matrix", "missing field")
    image = _resolve_image(source.parent, frame["file_path"])

    def get(key: str) -> float | None:
        local = _number(frame, key, source, where)
        return local if local is not None else _number(meta, key, source, "")

    for key in _DISTORTION_KEYS:
        if get(key):
            raise SceneError(source, f"{where}{key}", "lens distortion is not supported; undistort the images first")
    w, h = get("w"), get("h")
    if w is None or h is None:
        try:
            with Image.open(image) as im:
                w, h = im.size
        except OSError as err:
            raise SceneError(source, f"{where}file_path", f"no w/h given and cannot read image {image}: {err}") from None
    fx, fy = get("fl_x"), get("fl_y")
    angle_x = get("camera_angle_x")
    if fx is None and angle_x is not None:  # Blender synthetic format
        fx = 0.5 * w / math.tan(0.5 * angle_x)
    if fx is None:
        raise SceneError(source, f"{where}fl_x", "missing field (neither per-frame, global, nor camera_angle_x)")
    fy = fx if fy is None else fy
    cx, cy = get("cx"), get("cy")
    c2w = opengl_to_opencv(check_pose(frame["transform_matrix"], source, f"{where}transform_matrix"))
    if w != int(w) or h != int(h):
        raise SceneError(source, f"{where}w/h", f"must be integers, got {w}x{h}")
    out = Frame(image, int(w), int(h), fx, fy, w / 2 if cx is None else cx, h / 2 if cy is None else cy, c2w)
    check_intrinsics(out, source, index)
    return out


def read_nerfstudio(path: str | os.PathLike[str]) -> list[Frame]:
    """All frames of a nerfstudio ``transforms.json`` as OpenCV frames (image files are not opened)."""
    source = Path(path)
    meta = read_json(source)
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise SceneError(source, "frames", "missing field (expected a list of frames)")
    model = meta.get("camera_model", "OPENCV")
    if model not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE"):
        raise SceneError(source, "camera_model", f"{model!r} is not a pinhole model; undistort the images first")
    return [_ns_frame(meta, f, i, source) for i, f in enumerate(meta["frames"])]


def _select(frames: list[Frame], indices: Sequence[int] | None, source: Path) -> list[Frame]:
    if indices is None:
        if len(frames) > 2:
            raise SceneError(source, "frames", f"has {len(frames)} frames; choose 1 or 2 with indices=[i, j]")
        return frames
    for i in indices:
        if not -len(frames) <= i < len(frames):
            raise SceneError(source, "frames", f"index {i} out of range (0..{len(frames) - 1})")
    return [frames[i] for i in indices]


def import_nerfstudio(
    path: str | os.PathLike[str], indices: Sequence[int] | None = None, check_images: bool = True
) -> Scene:
    """A validated 1-2 frame :class:`Scene` from ``transforms.json`` (``indices`` picks frames when it has more)."""
    source = Path(path)
    return validate_scene(Scene(_select(read_nerfstudio(source), indices, source), source), check_images)


def save_nerfstudio(frames: Sequence[Frame], path: str | os.PathLike[str]) -> Path:
    """Write ``transforms.json`` (per-frame pinhole intrinsics, OpenGL ``transform_matrix``) atomically.

    ``file_path`` entries are relative to the json's folder, as nerfstudio's dataparser expects.
    """
    path = Path(path)
    for i, f in enumerate(frames):
        check_intrinsics(f, path, i)
        check_pose(f.c2w, path, f"frames[{i}].transform_matrix")
    meta = {
        "camera_model": "OPENCV",
        "frames": [
            {
                "file_path": relative_image_path(f.image, path.parent),
                "w": int(f.width),
                "h": int(f.height),
                "fl_x": float(f.fx),
                "fl_y": float(f.fy),
                "cx": float(f.cx),
                "cy": float(f.cy),
                "transform_matrix": opencv_to_opengl(np.asarray(f.c2w, dtype=np.float64)).tolist(),
            }
            for f in frames
        ],
    }
    write_json_atomic(path, meta)
    return path


# ------------------------------------------------------------------------------------------- projection matrices


def decompose_projection(P: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Split projection matrices ``[..., 3, 4]`` (any scale, any sign) into ``K [..., 3, 3]`` and OpenCV ``c2w``.

    RQ decomposition of the left 3x3 block, done with a batched QR (torch has no RQ) on the row-reversed transpose.
    K is normalised to ``K[2, 2] = 1`` with positive focal lengths; the rotation is proper (det +1); the overall
    sign of ``P`` is absorbed so that the scene lies in front of the camera exactly as ``P`` says. float64 out.
    """
    P = torch.as_tensor(P, dtype=torch.float64)
    M = P[..., :3, :3]
    J = torch.eye(3, dtype=P.dtype).flip(-1)
    Q, U = torch.linalg.qr((J @ M).transpose(-1, -2))  # J M = U^T Q^T  =>  M = (J U^T J)(J Q^T)
    K = J @ U.transpose(-1, -2) @ J
    R = J @ Q.transpose(-1, -2)
    D = torch.diag_embed(torch.sign(torch.diagonal(K, dim1=-2, dim2=-1)))
    K, R = K @ D, D @ R  # D^2 = I: make diag(K) positive
    sign = torch.sign(torch.linalg.det(R))  # det -1 means P was scaled by a negative number
    R = R * sign[..., None, None]
    scale = sign * K[..., 2, 2]  # P = scale * (K / K22) [R | t]
    K = K / K[..., 2:3, 2:3]
    t = torch.linalg.solve(K, P[..., :3, 3:]) / scale[..., None, None]
    w2c = torch.zeros(*P.shape[:-2], 4, 4, dtype=P.dtype)
    w2c[..., :3, :3], w2c[..., :3, 3:], w2c[..., 3, 3] = R, t, 1.0
    return K, invert_pose(w2c)


def compose_projection(K: torch.Tensor | np.ndarray, c2w: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``P = K [R | t]`` ``[..., 3, 4]`` from intrinsics and OpenCV camera-to-world (world -> pixel, homogeneous)."""
    K = torch.as_tensor(K, dtype=torch.float64)
    return K @ invert_pose(torch.as_tensor(c2w, dtype=torch.float64))[..., :3, :]


def read_cameras_npz(
    path: str | os.PathLike[str],
    indices: Sequence[int] | None = None,
    pixel_transform: np.ndarray | None = None,
    use_scale_mat: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``K [V, 3, 3]``, OpenCV ``c2w [V, 4, 4]`` (float64) from an IDR/DTU ``cameras.npz``.

    ``P_i = pixel_transform @ world_mat_i[:3] @ scale_mat_i``: ``scale_mat_i`` maps the normalised (unit-sphere)
    frame to the world, so with ``use_scale_mat`` the cameras come out in that normalised frame. ``pixel_transform``
    (3x3) fixes images that were cropped/resized after calibration (e.g. DTU's ``[[0.32,0,-64],[0,0.32,0],[0,0,1]]``).
    ``indices`` default: every ``world_mat_i`` in order.
    """
    source = Path(path)
    try:
        data = dict(np.load(source))
    except (OSError, ValueError) as err:
        raise SceneError(source, "", f"cannot read npz: {err}") from None
    if indices is None:
        indices = sorted(int(k.removeprefix("world_mat_")) for k in data if k.startswith("world_mat_") and "inv" not in k)
        if not indices:
            raise SceneError(source, "world_mat_0", "missing field (no world_mat_i arrays)")
    mats = []
    for i in indices:
        key = f"world_mat_{i}"
        if key not in data:
            raise SceneError(source, key, "missing field")
        P = np.asarray(data[key], dtype=np.float64)
        if P.shape not in ((3, 4), (4, 4)) or not np.isfinite(P).all():
            raise SceneError(source, key, f"must be a finite 3x4 or 4x4 matrix, got shape {list(P.shape)}")
        P = P[:3]
        if use_scale_mat and f"scale_mat_{i}" in data:
            P = P @ np.asarray(data[f"scale_mat_{i}"], dtype=np.float64)
        if pixel_transform is not None:
            P = np.asarray(pixel_transform, dtype=np.float64) @ P
        if abs(np.linalg.det(P[:, :3])) < 1e-12 * max(1.0, np.abs(P[:, :3]).max() ** 3):
            raise SceneError(source, key, "left 3x3 block is singular (not a projective camera)")
        mats.append(P)
    K, c2w = decompose_projection(np.stack(mats))
    skew = (K[:, 0, 1].abs() / K[:, 0, 0]).max()
    if skew > MAX_SKEW:
        bad = indices[int((K[:, 0, 1].abs() / K[:, 0, 0]).argmax())]
        raise SceneError(source, f"world_mat_{bad}", f"intrinsics have skew {float(skew):.3g} x fx (not supported)")
    return K, c2w


def import_cameras_npz(
    path: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    indices: Sequence[int],
    pixel_transform: np.ndarray | None = None,
    use_scale_mat: bool = True,
    check_images: bool = True,
) -> Scene:
    """A validated :class:`Scene` of views ``indices`` from ``cameras.npz``; ``images`` are their files (same order).

    Image sizes come from the files (the npz carries none).
    """
    source = Path(path)
    if len(images) != len(indices):
        raise SceneError(source, "images", f"got {len(images)} images for {len(indices)} indices")
    K, c2w = read_cameras_npz(source, indices, pixel_transform, use_scale_mat)
    frames = []
    for j, (image, k, m) in enumerate(zip(images, K.numpy(), c2w.numpy())):
        try:
            with Image.open(image) as im:
                width, height = im.size
        except OSError as err:
            raise SceneError(source, f"images[{j}]", f"cannot read image {image}: {err}") from None
        frames.append(Frame(Path(image).resolve(), width, height, k[0, 0], k[1, 1], k[0, 2], k[1, 2], m))
    return validate_scene(Scene(frames, source), check_images)
