"""COLMAP sparse models (``cameras``/``images`` as ``.txt`` or ``.bin``): world-to-camera quaternion + translation,
already in OpenCV camera axes; lens distortion (radial-tangential, fisheye) is undistorted on load."""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cameo.importers.common import select_frames
from cameo.scene import Frame, Scene, SceneError, validate_scene
from cameo.undistort import Lens, make_lens, pinhole_intrinsics

# Every COLMAP camera model: id (binary files) -> (name (text files), number of parameters).
COLMAP_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12), 11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
_NUM_PARAMS = dict(COLMAP_MODELS.values())
# The models OpenCV can undistort: positions in ``params`` of (fx, fy, cx, cy), the OpenCV lens model, and the
# positions of its coefficients (OpenCV order; -1 selects a 0 for a term the model lacks).
_LAYOUT: dict[str, tuple[tuple[int, int, int, int], str, tuple[int, ...]]] = {
    "SIMPLE_PINHOLE": ((0, 0, 1, 2), "radtan", (-1, -1, -1, -1)),
    "PINHOLE": ((0, 1, 2, 3), "radtan", (-1, -1, -1, -1)),
    "SIMPLE_RADIAL": ((0, 0, 1, 2), "radtan", (3, -1, -1, -1)),
    "RADIAL": ((0, 0, 1, 2), "radtan", (3, 4, -1, -1)),
    "OPENCV": ((0, 1, 2, 3), "radtan", (4, 5, 6, 7)),
    "FULL_OPENCV": ((0, 1, 2, 3), "radtan", (4, 5, 6, 7, 8, 9, 10, 11)),  # k1 k2 p1 p2 k3 k4 k5 k6: OpenCV order
    "OPENCV_FISHEYE": ((0, 1, 2, 3), "fisheye", (4, 5, 6, 7)),
    "SIMPLE_RADIAL_FISHEYE": ((0, 0, 1, 2), "fisheye", (3, -1, -1, -1)),
    "RADIAL_FISHEYE": ((0, 0, 1, 2), "fisheye", (3, 4, -1, -1)),
}
# Models with no OpenCV counterpart, and why.
_REFUSED = {
    "FOV": "its arctan field-of-view distortion has no OpenCV counterpart",
    "THIN_PRISM_FISHEYE": "OpenCV's fisheye model has no thin-prism terms",
    "RAD_TAN_THIN_PRISM_FISHEYE": "OpenCV's fisheye model has no tangential or thin-prism terms",
}
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


def _camera(camera: _ColmapCamera, camera_id: int, source: Path) -> tuple[tuple[float, float, float, float],
                                                                         Lens | None]:
    """Pinhole intrinsics (of the undistorted image when the model has distortion) and the lens of a COLMAP camera;
    models OpenCV cannot undistort and bad values raise SceneError."""
    where = f"camera {camera_id}"
    if camera.model in _REFUSED:
        raise SceneError(source, where, f"model {camera.model} cannot be undistorted here: "
                                        f"{_REFUSED[camera.model]}; {_UNDISTORT_HINT}")
    if camera.width <= 0 or camera.height <= 0:
        raise SceneError(source, f"{where} WIDTH/HEIGHT", f"must be positive, got {camera.width}x{camera.height}")
    pinhole, model, terms = _LAYOUT[camera.model]
    params = np.append(camera.params, 0.0)
    fx, fy, cx, cy = (float(params[i]) for i in pinhole)
    if fx <= 0 or fy <= 0:
        raise SceneError(source, f"{where} PARAMS", f"focal length must be > 0, got {fx:g}, {fy:g}")
    try:
        lens = make_lens(fx, fy, cx, cy, model, tuple(float(params[i]) for i in terms))
        if lens is not None:
            return pinhole_intrinsics(lens, camera.width, camera.height), lens
    except ValueError as err:
        raise SceneError(source, f"{where} PARAMS", str(err)) from None
    return (fx, fy, cx, cy), None


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

    Reads ``cameras``/``images`` ``.bin`` or ``.txt``. Every camera model OpenCV can undistort (the pinhole,
    radial-tangential and fisheye ones): frames with distortion carry their ``lens`` and the intrinsics of the
    undistorted image (``Scene.load_images`` undistorts). COLMAP's pixel convention (pixel centres at +0.5) is
    ours, so K is used as stored.
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
    intrinsics = {cid: _camera(cameras[cid], cid, cameras_path) for cid in sorted({im.camera_id for im in images})}
    folder = _colmap_image_folder(sparse, images[0].name, images_dir)
    c2w = colmap_to_c2w(np.stack([im.qvec for im in images]), np.stack([im.tvec for im in images]))
    return [
        Frame(folder / im.name, cameras[im.camera_id].width, cameras[im.camera_id].height,
              *intrinsics[im.camera_id][0], m, lens=intrinsics[im.camera_id][1])
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
    frames = select_frames(read_colmap(source, images_dir), indices, source)
    missing = [f.image for f in frames if not f.image.is_file()]
    if check_images and missing and images_dir is None:
        raise SceneError(source, "images", f"{missing[0]} not found; pass the image folder "
                                           "(images_dir, or cameo-recon --images DIR)")
    return validate_scene(Scene(frames, source), check_images)
