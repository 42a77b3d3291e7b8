"""Converters between outside camera formats and the internal OpenCV ``c2w`` + pixel ``K`` convention.

* nerfstudio ``transforms.json`` (OpenGL camera axes: x right, y up, z back), read and written; the reconstruction
  step writes one so nerfstudio can train on the generated views.
* 3x4 projection matrices ``P = K [R | t]`` as DTU/IDR ``cameras.npz`` ship them (``world_mat_i``, optional
  ``scale_mat_i``), split by RQ decomposition into K (positive focal lengths) and a proper rotation, and composed back.
* COLMAP sparse models (``cameras``/``images`` as ``.txt`` or ``.bin``): world-to-camera quaternion + translation,
  already in OpenCV camera axes; pinhole-type camera models only (distortion must be negligible).
* LLFF ``poses_bounds.npy``: 3x5 ``[R | t | hwf]`` camera-to-world in ``[down, right, back]`` camera axes.

Conversions happen only here (see docs/CONTRACTS.md); everything returned is OpenCV.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

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


def _image_size(image: Path, source: Path, field_name: str) -> tuple[int, int]:
    """(width, height) of an image file from its header; unreadable files raise SceneError."""
    try:
        with Image.open(image) as im:
            return im.size
    except (OSError, ValueError) as err:
        raise SceneError(source, field_name, f"cannot read image {image}: {err}") from None


# -------------------------------------------------------------------------------------------------------- COLMAP

# Every COLMAP camera model: id (binary files) -> (name (text files), number of parameters).
COLMAP_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12), 11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
_NUM_PARAMS = dict(COLMAP_MODELS.values())
# The pinhole-type models: positions in ``params + [0.0]`` of (fx, fy, cx, cy, k1, k2, p1, p2); -1 selects the
# appended 0 for a term the model lacks. All of them are special cases of OpenCV's radial-tangential distortion.
_PINHOLE_LAYOUT: dict[str, tuple[int, ...]] = {
    "SIMPLE_PINHOLE": (0, 0, 1, 2, -1, -1, -1, -1),
    "PINHOLE": (0, 1, 2, 3, -1, -1, -1, -1),
    "SIMPLE_RADIAL": (0, 0, 1, 2, 3, -1, -1, -1),
    "RADIAL": (0, 0, 1, 2, 3, 4, -1, -1),
    "OPENCV": (0, 1, 2, 3, 4, 5, 6, 7),
}
MAX_DISTORTION_PX = 0.5  # Frame is an ideal pinhole: larger lens distortion must be removed from the images first
_UNDISTORT_HINT = "undistort first (`colmap image_undistorter` writes PINHOLE cameras and undistorted images)"


class _ColmapCamera(NamedTuple):
    model: str
    width: int
    height: int
    params: np.ndarray


class _ColmapImage(NamedTuple):
    name: str
    qvec: np.ndarray  # world-to-camera rotation as a unit quaternion (qw, qx, qy, qz), Hamilton convention
    tvec: np.ndarray  # world-to-camera translation
    camera_id: int
    where: str  # location for error messages: "line 7" (text) or "images[3]" (binary)


def quaternion_to_rotation(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` from quaternions ``[..., 4]`` in (w, x, y, z) order (normalised first)."""
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def colmap_to_c2w(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """OpenCV ``c2w [N, 4, 4]`` from COLMAP poses: quaternions (qw, qx, qy, qz) ``[N, 4]`` and translations ``[N, 3]``.

    COLMAP stores world-to-camera, ``x_cam = R x_world + t``, and its camera axes already are OpenCV's (x right,
    y down, z forward), so only the inverse is needed: ``c2w = [R^T | -R^T t]``.
    """
    R = quaternion_to_rotation(np.asarray(qvec, dtype=np.float64))
    c2w = np.tile(np.eye(4), (len(R), 1, 1))
    c2w[:, :3, :3] = R.transpose(0, 2, 1)
    c2w[:, :3, 3] = -np.einsum("nji,nj->ni", R, np.asarray(tvec, dtype=np.float64))
    return c2w


def _distortion_px(fx: float, fy: float, cx: float, cy: float, dist: Sequence[float], width: int, height: int) -> float:
    """Largest pixel shift of radial-tangential distortion (k1, k2, p1, p2) over the image border's corners and
    edge midpoints (where it is largest), as COLMAP's OPENCV model applies it to normalised coordinates."""
    k1, k2, p1, p2 = dist
    u, v = np.meshgrid([0.0, width / 2, width], [0.0, height / 2, height])
    x, y = (u - cx) / fx, (v - cy) / fy
    r2 = x * x + y * y
    radial = k1 * r2 + k2 * r2 * r2
    dx = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    dy = y * radial + 2 * p2 * x * y + p1 * (r2 + 2 * y * y)
    return float(np.hypot(fx * dx, fy * dy).max())


def _pinhole(camera: _ColmapCamera, camera_id: int, source: Path) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a COLMAP camera; other models, bad values and visible distortion raise SceneError."""
    where = f"camera {camera_id}"
    layout = _PINHOLE_LAYOUT.get(camera.model)
    if layout is None:
        raise SceneError(source, where, f"model {camera.model} is not a pinhole-type model "
                                        f"({', '.join(_PINHOLE_LAYOUT)}); {_UNDISTORT_HINT}")
    if camera.width <= 0 or camera.height <= 0:
        raise SceneError(source, f"{where} WIDTH/HEIGHT", f"must be positive, got {camera.width}x{camera.height}")
    fx, fy, cx, cy, *dist = (float(p) for p in np.append(camera.params, 0.0)[list(layout)])
    if fx <= 0 or fy <= 0:
        raise SceneError(source, f"{where} PARAMS", f"focal length must be > 0, got {fx:g}, {fy:g}")
    shift = _distortion_px(fx, fy, cx, cy, dist, camera.width, camera.height)
    if shift > MAX_DISTORTION_PX:
        raise SceneError(source, where, f"model {camera.model} has lens distortion moving pixels by up to "
                                        f"{shift:.3g} px (> {MAX_DISTORTION_PX}); {_UNDISTORT_HINT}")
    return fx, fy, cx, cy


def _parse(token: str, kind: type[int] | type[float], source: Path, field_name: str) -> Any:
    """One number of a text file; bad tokens raise SceneError naming the field."""
    try:
        value = kind(token)
    except ValueError:
        raise SceneError(source, field_name, f"must be {'an integer' if kind is int else 'a number'}, got {token!r}") from None
    if not math.isfinite(value):
        raise SceneError(source, field_name, f"must be finite, got {token!r}")
    return value


def _image_record(name: str, pose: Sequence[float], camera_id: int, where: str, source: Path) -> _ColmapImage:
    """A parsed image entry; a zero quaternion raises (it is no rotation)."""
    qvec, tvec = np.array(pose[:4], dtype=np.float64), np.array(pose[4:], dtype=np.float64)
    if not np.isfinite(qvec).all() or not np.isfinite(tvec).all():
        raise SceneError(source, f"{where} QW..TZ", "pose contains non-finite numbers (NaN or inf)")
    if np.linalg.norm(qvec) < 1e-9:
        raise SceneError(source, f"{where} QW..QZ", "quaternion is zero (not a rotation)")
    return _ColmapImage(name, qvec, tvec, camera_id, where)


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, line) of a COLMAP text file, every line kept (images.txt has empty point lines)."""
    try:
        return list(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))
    except OSError as err:
        raise SceneError(path, "", f"cannot read file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise SceneError(path, "", f"not a text file: {err}") from None


def _is_comment_or_blank(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _read_cameras_txt(path: Path) -> dict[int, _ColmapCamera]:
    """``cameras.txt``: one ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]`` line per camera."""
    cameras = {}
    for number, line in _data_lines(path):
        if _is_comment_or_blank(line):
            continue
        where, tokens = f"line {number}", line.split()
        if len(tokens) < 4:
            raise SceneError(path, where, f"expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[], got {line.strip()!r}")
        model = tokens[1]
        if model not in _NUM_PARAMS:
            raise SceneError(path, f"{where} MODEL", f"unknown camera model {model!r} (COLMAP's: {', '.join(_NUM_PARAMS)})")
        if len(tokens) - 4 != _NUM_PARAMS[model]:
            raise SceneError(path, f"{where} PARAMS", f"{model} has {_NUM_PARAMS[model]} parameters, got {len(tokens) - 4}")
        cameras[_parse(tokens[0], int, path, f"{where} CAMERA_ID")] = _ColmapCamera(
            model,
            _parse(tokens[2], int, path, f"{where} WIDTH"),
            _parse(tokens[3], int, path, f"{where} HEIGHT"),
            np.array([_parse(t, float, path, f"{where} PARAMS") for t in tokens[4:]]),
        )
    return cameras


_POSE_COLUMNS = ("QW", "QX", "QY", "QZ", "TX", "TY", "TZ")


def _read_images_txt(path: Path) -> list[_ColmapImage]:
    """``images.txt``: per image a ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` line, then a POINTS2D line."""
    images = []
    lines = iter(_data_lines(path))
    for number, line in lines:
        if _is_comment_or_blank(line):
            continue
        where, tokens = f"line {number}", line.split(maxsplit=9)
        if len(tokens) < 10:
            raise SceneError(path, where, f"expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {line.strip()!r}")
        _parse(tokens[0], int, path, f"{where} IMAGE_ID")
        pose = [_parse(t, float, path, f"{where} {col}") for t, col in zip(tokens[1:8], _POSE_COLUMNS)]
        camera_id = _parse(tokens[8], int, path, f"{where} CAMERA_ID")
        images.append(_image_record(tokens[9].strip(), pose, camera_id, where, path))
        next(lines, None)  # the image's POINTS2D line (possibly empty): not needed
    return images


class _BinaryReader:
    """Little-endian reader over a COLMAP ``.bin`` file; running out of bytes raises SceneError (truncated)."""

    def __init__(self, path: Path) -> None:
        try:
            self.data = path.read_bytes()
        except OSError as err:
            raise SceneError(path, "", f"cannot read file: {err.strerror or err}") from None
        self.path, self.pos = path, 0

    def _advance(self, size: int, field_name: str) -> int:
        if self.pos + size > len(self.data):
            raise SceneError(self.path, field_name, f"file ends early at byte {len(self.data)} (truncated?)")
        self.pos += size
        return self.pos - size

    def take(self, fmt: str, field_name: str) -> tuple[Any, ...]:
        """Unpack ``fmt`` (struct codes, little-endian, no padding) at the current position."""
        return struct.unpack_from("<" + fmt, self.data, self._advance(struct.calcsize("<" + fmt), field_name))

    def skip(self, size: int, field_name: str) -> None:
        self._advance(size, field_name)

    def string(self, field_name: str) -> str:
        """A NUL-terminated UTF-8 string."""
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise SceneError(self.path, field_name, "unterminated string (truncated file?)")
        raw, self.pos = self.data[self.pos : end], end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SceneError(self.path, field_name, f"not valid UTF-8: {raw!r}") from None

    def finish(self) -> None:
        """Every byte must have been read: extra bytes mean a miscount or a different format."""
        if self.pos != len(self.data):
            raise SceneError(self.path, "", f"{len(self.data) - self.pos} unexpected bytes after the last entry")


def _read_cameras_bin(path: Path) -> dict[int, _ColmapCamera]:
    """``cameras.bin``: uint64 count; per camera int32 CAMERA_ID, int32 MODEL_ID, uint64 WIDTH, HEIGHT, double PARAMS[]."""
    reader = _BinaryReader(path)
    (count,) = reader.take("Q", "num_cameras")
    cameras = {}
    for k in range(count):
        where = f"cameras[{k}]"
        camera_id, model_id, width, height = reader.take("iiQQ", where)
        if model_id not in COLMAP_MODELS:
            raise SceneError(path, f"{where} MODEL_ID", f"unknown camera model id {model_id} (COLMAP's: 0-{len(COLMAP_MODELS) - 1})")
        model, num_params = COLMAP_MODELS[model_id]
        params = np.array(reader.take(f"{num_params}d", f"{where} PARAMS"))
        if not np.isfinite(params).all():
            raise SceneError(path, f"{where} PARAMS", "contains non-finite numbers (NaN or inf)")
        cameras[camera_id] = _ColmapCamera(model, width, height, params)
    reader.finish()
    return cameras


def _read_images_bin(path: Path) -> list[_ColmapImage]:
    """``images.bin``: uint64 count; per image int32 IMAGE_ID, double QW..TZ, int32 CAMERA_ID, NUL-terminated NAME,
    uint64 point count and that many (double x, double y, int64 POINT3D_ID) records (skipped)."""
    reader = _BinaryReader(path)
    (count,) = reader.take("Q", "num_images")
    images = []
    for k in range(count):
        where = f"images[{k}]"
        _, *pose, camera_id = reader.take("i7di", where)
        name = reader.string(f"{where} NAME")
        (num_points,) = reader.take("Q", f"{where} POINTS2D")
        reader.skip(num_points * struct.calcsize("<ddq"), f"{where} POINTS2D")
        images.append(_image_record(name, pose, camera_id, where, path))
    reader.finish()
    return images


def _colmap_files(sparse_dir: Path) -> tuple[Path, Path]:
    """The model's cameras and images files; binary is preferred when both formats exist (as COLMAP does)."""
    for ext in (".bin", ".txt"):
        cameras, images = sparse_dir / f"cameras{ext}", sparse_dir / f"images{ext}"
        if cameras.is_file() and images.is_file():
            return cameras, images
    raise SceneError(sparse_dir, "", "not a COLMAP sparse model folder (needs cameras.bin + images.bin or "
                                     "cameras.txt + images.txt)")


def _colmap_image_folder(sparse_dir: Path, first_name: str, images_dir: str | os.PathLike[str] | None) -> Path:
    """The folder image NAMEs are relative to: ``images_dir`` if given, else whichever of ``<sparse>/../images``
    (undistorted workspace: ``images/`` + ``sparse/``) and ``<sparse>/../../images`` (mapper output:
    ``images/`` + ``sparse/0/``) holds the first image; the latter when neither does."""
    if images_dir is not None:
        return Path(images_dir).resolve()
    base = sparse_dir.resolve()
    candidates = (base.parent / "images", base.parent.parent / "images")
    return next((c for c in candidates if (c / first_name).is_file()), candidates[1])


def read_colmap(sparse_dir: str | os.PathLike[str], images_dir: str | os.PathLike[str] | None = None) -> list[Frame]:
    """All registered images of a COLMAP sparse model as OpenCV frames, sorted by image name (files not opened).

    Reads ``cameras``/``images`` ``.bin`` or ``.txt``. Pinhole-type camera models only (SIMPLE_PINHOLE, PINHOLE,
    SIMPLE_RADIAL, RADIAL, OPENCV) whose distortion moves no pixel by more than ``MAX_DISTORTION_PX``. COLMAP's
    pixel convention (pixel centres at +0.5) is ours, so K is used as stored.
    """
    sparse = Path(sparse_dir)
    cameras_path, images_path = _colmap_files(sparse)
    binary = cameras_path.suffix == ".bin"
    cameras = (_read_cameras_bin if binary else _read_cameras_txt)(cameras_path)
    images = sorted((_read_images_bin if binary else _read_images_txt)(images_path), key=lambda im: im.name)
    if not images:
        raise SceneError(images_path, "", "no registered images")
    for im in images:
        if im.camera_id not in cameras:
            raise SceneError(images_path, f"{im.where} CAMERA_ID", f"camera {im.camera_id} is not in {cameras_path.name}")
    intrinsics = {cid: _pinhole(cameras[cid], cid, cameras_path) for cid in sorted({im.camera_id for im in images})}
    folder = _colmap_image_folder(sparse, images[0].name, images_dir)
    c2w = colmap_to_c2w(np.stack([im.qvec for im in images]), np.stack([im.tvec for im in images]))
    return [
        Frame(folder / im.name, cameras[im.camera_id].width, cameras[im.camera_id].height, *intrinsics[im.camera_id], m)
        for im, m in zip(images, c2w)
    ]


def import_colmap(
    sparse_dir: str | os.PathLike[str],
    indices: Sequence[int] | None = None,
    images_dir: str | os.PathLike[str] | None = None,
    check_images: bool = True,
) -> Scene:
    """A validated 1-2 frame :class:`Scene` from a COLMAP sparse model (``indices`` into the name-sorted images)."""
    source = Path(sparse_dir)
    frames = _select(read_colmap(source, images_dir), indices, source)
    missing = [f.image for f in frames if not f.image.is_file()]
    if check_images and missing and images_dir is None:
        raise SceneError(source, "images", f"{missing[0]} not found; pass the image folder "
                                           "(images_dir, or cameo-recon --images DIR)")
    return validate_scene(Scene(frames, source), check_images)


# ---------------------------------------------------------------------------------------------------------- LLFF

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def llff_to_opencv(poses: np.ndarray) -> np.ndarray:
    """LLFF camera-to-world ``[N, 3, 4]`` (camera axes: columns 0-2 = down, right, back) -> OpenCV ``[N, 4, 4]``.

    OpenCV x (right) is LLFF's column 1, y (down) its column 0, z (forward) minus its column 2 (back); both are
    right-handed, the world frame and the translation are unchanged.
    """
    c2w = np.tile(np.eye(4), (len(poses), 1, 1))
    c2w[:, :3, :4] = np.asarray(poses, dtype=np.float64)[:, :, [1, 0, 2, 3]] * np.array([1.0, 1.0, -1.0, 1.0])
    return c2w


def _load_poses_bounds(source: Path) -> np.ndarray:
    """The ``[N, 17]`` float64 array of a ``poses_bounds.npy``, checked for shape and finiteness."""
    try:
        arr = np.asarray(np.load(source, allow_pickle=False), dtype=np.float64)
    except (OSError, ValueError) as err:
        raise SceneError(source, "", f"cannot read npy: {err}") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or len(arr) == 0:
        raise SceneError(source, "shape", f"must be [N, 17] (3x5 pose [R | t | hwf], near, far per image), "
                                          f"got {list(arr.shape)}")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise SceneError(source, f"poses[{bad[0]}]", "contains non-finite numbers (NaN or inf)")
    return arr


def _llff_images(folder: Path, count: int, source: Path) -> list[Path]:
    """The sorted image files of ``folder``, one per pose."""
    if not folder.is_dir():
        raise SceneError(source, "images", f"image folder {folder} not found; pass it (images_dir, or --images DIR)")
    files = sorted(p.resolve() for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(files) != count:
        raise SceneError(source, "images", f"{folder} holds {len(files)} images but the file has {count} poses")
    return files


def _llff_frame(image: Path, hwf: np.ndarray, c2w: np.ndarray, source: Path, index: int) -> Frame:
    """One frame: fx = fy = f and the principal point at the centre, scaled from the matrix's h x w to the file's
    real size (LLFF's ``images_4`` etc. are downsampled copies of the images the poses were computed on)."""
    h, w, f = (float(v) for v in hwf)
    if min(h, w, f) <= 0:
        raise SceneError(source, f"poses[{index}].hwf", f"height, width, focal must be > 0, got {h:g}, {w:g}, {f:g}")
    width, height = _image_size(image, source, f"poses[{index}].image")
    sx, sy = width / w, height / h
    if abs(sx / sy - 1.0) > 0.01:
        raise SceneError(source, f"poses[{index}].hwf", f"image {image} is {width}x{height}, not a resized copy of "
                                                        f"the {w:g}x{h:g} image of the pose matrix")
    pose = check_pose(c2w, source, f"poses[{index}]")
    return Frame(image, width, height, f * sx, f * sy, width / 2, height / 2, pose)


def read_llff(poses_bounds_path: str | os.PathLike[str], images_dir: str | os.PathLike[str] | None = None) -> list[Frame]:
    """Frames of an LLFF ``poses_bounds.npy``: per image a row-major 3x5 ``[R | t | hwf]`` camera-to-world (hwf =
    height, width, focal) then near/far depth bounds (unused). Images: the sorted files of ``images_dir`` (default
    ``images/`` next to the npy), one per row; their headers give the real image size."""
    source = Path(poses_bounds_path)
    arr = _load_poses_bounds(source)
    folder = Path(images_dir) if images_dir is not None else source.parent / "images"
    files = _llff_images(folder, len(arr), source)
    poses = arr[:, :15].reshape(-1, 3, 5)
    c2w = llff_to_opencv(poses[:, :, :4])
    return [_llff_frame(file, poses[i, :, 4], c2w[i], source, i) for i, file in enumerate(files)]


def import_llff(
    poses_bounds_path: str | os.PathLike[str],
    indices: Sequence[int] | None = None,
    images_dir: str | os.PathLike[str] | None = None,
    check_images: bool = True,
) -> Scene:
    """A validated 1-2 frame :class:`Scene` from an LLFF ``poses_bounds.npy`` (``indices`` into its rows)."""
    source = Path(poses_bounds_path)
    return validate_scene(Scene(_select(read_llff(source, images_dir), indices, source), source), check_images)
