"""The input scene format (``scene.json``): 1 or 2 posed images, validated on load.

Cameras are stored exactly as they are used inside the code (OpenCV camera-to-world, pixel intrinsics; see
``cameo/cameras.py``), so loading needs no conversion. Every bad input raises :class:`SceneError` naming the file
and the field, never a raw traceback.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cameo.atomic import write_json_atomic
from cameo.undistort import Lens, undistort_image

SCENE_VERSION = 1
SCENE_CONVENTION = "opencv"
MAX_FRAMES = 2
ROTATION_TOL = 1e-3

SCENE_FORMAT_HELP = """\
scene.json: the input scene, 1 or 2 posed images.

  {
    "version": 1,
    "convention": "opencv",
    "frames": [
      {
        "image": "images/left.png",          # path relative to scene.json
        "width": 512, "height": 384,         # must match the image file
        "fx": 450.0, "fy": 450.0,            # focal lengths in pixels (> 0)
        "cx": 256.0, "cy": 192.0,            # principal point in pixels; pixel (0,0)'s corner is the origin
        "c2w": [[r00, r01, r02, tx],         # 4x4 camera-to-world, OpenCV axes:
                [r10, r11, r12, ty],         #   x right, y down, z forward (into the scene)
                [r20, r21, r22, tz],         # rotation orthonormal with det +1; last row 0 0 0 1
                [0, 0, 0, 1]],
        "depth": "depth/left.npy",           # optional: z-depth map of this image (same width x height):
        "depth_scale": 0.001                 #   .npy float z-depth, or 16-bit PNG (z = value * depth_scale,
      }                                      #   depth_scale required); 0 or NaN = unknown pixel, the rest
    ]                                        #   must be finite and > 0
  }

Numbers must be JSON numbers ("1" is refused). With 2 frames the cameras must differ (a camera path between
identical cameras is empty). A depth map replaces two-view stereo for its view, so one RGB-D image gives a point
cloud too.
nerfstudio transforms.json (OpenGL axes) and DTU/IDR cameras.npz (3x4 projection matrices) can be
converted with cameo.importers.
"""


class SceneError(ValueError):
    """Invalid scene input; ``str()`` reads ``"<file>: <field>: <message>"``."""

    def __init__(self, file: str | os.PathLike[str] | None, field: str, message: str) -> None:
        self.file = str(file) if file is not None else "<scene>"
        self.field = field
        self.message = message
        super().__init__(f"{self.file}: {field}: {message}" if field else f"{self.file}: {message}")


@dataclass
class Frame:
    """One posed image: absolute ``image`` path, size, pinhole intrinsics and an OpenCV ``c2w`` [4, 4] (float64).

    ``lens``: the photo's lens distortion (importers of COLMAP / nerfstudio captures); the image is undistorted on
    load and ``fx, fy, cx, cy`` are the undistorted image's intrinsics.
    """

    image: Path
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    c2w: np.ndarray = field(default_factory=lambda: np.eye(4))
    depth: Path | None = None
    depth_scale: float | None = None
    lens: Lens | None = None

    @property
    def K(self) -> np.ndarray:
        """Pixel intrinsics [3, 3]."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass
class Scene:
    """1 or 2 posed frames; ``source`` is the file they came from (used in error messages)."""

    frames: list[Frame]
    source: Path | None = None

    @property
    def c2w(self) -> torch.Tensor:
        """OpenCV camera-to-world matrices [V, 4, 4] (float32)."""
        return torch.from_numpy(np.stack([f.c2w for f in self.frames])).float()

    @property
    def K(self) -> torch.Tensor:
        """Pixel intrinsics [V, 3, 3] (float32)."""
        return torch.from_numpy(np.stack([f.K for f in self.frames])).float()

    def load_images(self) -> torch.Tensor:
        """RGB images [V, 3, H, W] float in [0, 1]; all frames must share one size."""
        sizes = {(f.height, f.width) for f in self.frames}
        if len(sizes) > 1:
            raise SceneError(self.source, "frames", f"images have different sizes {sorted(sizes)}; resize them first")
        arrays = [_read_rgb(f.image, self.source, f"frames[{i}].image") for i, f in enumerate(self.frames)]
        for i, (a, f) in enumerate(zip(arrays, self.frames)):
            _check_size(a.shape[1], a.shape[0], f, self.source, i)
        arrays = [a if f.lens is None else undistort_image(a, f.lens) for a, f in zip(arrays, self.frames)]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0

    def load_depths(self) -> list[torch.Tensor | None]:
        """Per frame its z-depth map ``[H,W]`` float32 (NaN = unknown) or None when the frame names none."""
        return [None if f.depth is None else torch.from_numpy(read_depth(f, self.source, i))
                for i, f in enumerate(self.frames)]


def read_depth(frame: Frame, source: Path | None, index: int) -> np.ndarray:
    """Frame ``index``'s depth map as float32 z-depth ``[H,W]``, NaN where unknown (0 or NaN in the file).

    Refused with a :class:`SceneError` naming the file and field: unreadable, not 2-D, another size than the image,
    negative or infinite values.
    """
    field_name, path = f"frames[{index}].depth", frame.depth
    try:
        if path.suffix.lower() == ".npy":
            raw = np.load(path, allow_pickle=False)
            if not np.issubdtype(raw.dtype, np.floating) and not np.issubdtype(raw.dtype, np.integer):
                raise ValueError(f"dtype {raw.dtype} is not numeric")
        else:
            with Image.open(path) as im:
                if im.mode not in ("I;16", "I;16B", "I"):
                    raise ValueError(f"a PNG depth map must be 16-bit grey, got mode {im.mode}")
                raw = np.asarray(im)
    except (OSError, ValueError) as err:
        raise SceneError(source, field_name, f"cannot read depth map {path}: {err}") from None
    if raw.ndim != 2 or raw.shape != (frame.height, frame.width):
        raise SceneError(source, field_name, f"depth map {path} has shape {list(raw.shape)}, the image is "
                                             f"{frame.height}x{frame.width} (rows x columns)")
    depth = raw.astype(np.float64) * (1.0 if frame.depth_scale is None else frame.depth_scale)
    known = ~np.isnan(depth) & (depth != 0)
    if np.isinf(depth[known]).any():
        raise SceneError(source, field_name, f"depth map {path} has infinite values (use 0 or NaN for unknown)")
    if (depth[known] < 0).any():
        raise SceneError(source, field_name, f"depth map {path} has negative values (z-depth must be > 0)")
    return np.where(known, depth, np.nan).astype(np.float32)


def _read_rgb(path: Path, source: Path | None, field_name: str) -> np.ndarray:
    """Decode an image to uint8 RGB [H, W, 3], turning I/O and decoder errors into a SceneError."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as err:
        raise SceneError(source, field_name, f"cannot read image {path}: {err}") from None


def _check_size(width: int, height: int, frame: Frame, source: Path | None, index: int) -> None:
    if (width, height) != (frame.width, frame.height):
        raise SceneError(
            source,
            f"frames[{index}].width/height",
            f"image {frame.image} is {width}x{height} but the frame says {frame.width}x{frame.height}",
        )


def check_pose(c2w: Any, source: str | os.PathLike[str] | None, field_name: str, tol: float = ROTATION_TOL) -> np.ndarray:
    """Validate a 4x4 OpenCV camera-to-world matrix (finite, orthonormal rotation with det +1); returns float64."""
    if not isinstance(c2w, np.ndarray) and not _all_numbers(c2w):
        raise SceneError(source, field_name, "must be a 4x4 array of numbers (JSON numbers, not strings)")
    try:
        m = np.asarray(c2w, dtype=np.float64)
    except (TypeError, ValueError):
        raise SceneError(source, field_name, "must be a 4x4 array of numbers") from None
    if m.shape != (4, 4):
        raise SceneError(source, field_name, f"must be 4x4, got shape {list(m.shape)}")
    if not np.isfinite(m).all():
        raise SceneError(source, field_name, "contains non-finite numbers (NaN or inf)")
    if np.abs(m[3] - [0.0, 0.0, 0.0, 1.0]).max() > tol:
        raise SceneError(source, field_name, f"last row must be [0, 0, 0, 1], got {m[3].tolist()}")
    R = m[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > tol:
        raise SceneError(source, field_name, f"rotation is not orthonormal (|R^T R - I| = {err:.3g} > {tol:g})")
    if np.linalg.det(R) < 0:
        raise SceneError(source, field_name, "rotation has det -1 (a reflection, not a camera pose)")
    return m


def _all_numbers(value: Any) -> bool:
    """Whether every leaf of nested lists/tuples is an int or float (no strings, booleans or nulls)."""
    if isinstance(value, (list, tuple)):
        return all(_all_numbers(v) for v in value)
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def check_intrinsics(frame: Frame, source: str | os.PathLike[str] | None, index: int) -> None:
    """Validate size and pinhole intrinsics of ``frames[index]``."""
    for name in ("width", "height"):
        value = getattr(frame, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise SceneError(source, f"frames[{index}].{name}", f"must be a positive integer, got {value!r}")
    for name in ("fx", "fy", "cx", "cy"):
        value = getattr(frame, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise SceneError(source, f"frames[{index}].{name}", f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise SceneError(source, f"frames[{index}].{name}", f"must be finite, got {value!r}")
    for name in ("fx", "fy"):
        if getattr(frame, name) <= 0:
            raise SceneError(source, f"frames[{index}].{name}", f"focal length must be > 0, got {getattr(frame, name)!r}")


def check_distinct_cameras(
    c2w: torch.Tensor | np.ndarray,
    source: str | os.PathLike[str] | None = None,
    field_name: str = "frames",
    min_translation: float = 1e-6,
    min_angle_deg: float = 1e-3,
) -> None:
    """Raise if two cameras coincide (same centre and same orientation): a path between them is empty.

    ``min_translation`` is relative to the larger camera distance from the origin (at least 1).
    """
    m = torch.as_tensor(c2w, dtype=torch.float64)
    if m.shape != (2, 4, 4):
        raise SceneError(source, field_name, f"need exactly 2 cameras [2, 4, 4], got shape {list(m.shape)}")
    scale = max(1.0, float(m[:, :3, 3].norm(dim=-1).max()))
    dist = float((m[0, :3, 3] - m[1, :3, 3]).norm()) / scale
    cos = float(((m[0, :3, :3].T @ m[1, :3, :3]).trace() - 1.0) / 2.0)
    angle = math.degrees(math.acos(max(-1.0, min(1.0, cos))))
    if dist <= min_translation and angle <= min_angle_deg:
        raise SceneError(
            source,
            field_name,
            f"the two cameras are identical (distance {dist:.3g}, angle {angle:.3g} deg); a path needs two distinct views",
        )


def validate_scene(scene: Scene, check_images: bool = True) -> Scene:
    """Check frame count, intrinsics, poses and (optionally) that every image exists with the stated size."""
    src = scene.source
    if not 1 <= len(scene.frames) <= MAX_FRAMES:
        raise SceneError(src, "frames", f"need 1 or {MAX_FRAMES} frames, got {len(scene.frames)}")
    for i, f in enumerate(scene.frames):
        check_intrinsics(f, src, i)
        f.c2w = check_pose(f.c2w, src, f"frames[{i}].c2w")
        if check_images:
            try:
                with Image.open(f.image) as im:
                    width, height = im.size
            except (OSError, ValueError) as err:
                raise SceneError(src, f"frames[{i}].image", f"cannot read image {f.image}: {err}") from None
            _check_size(width, height, f, src, i)
            if f.depth is not None:
                read_depth(f, src, i)
    if len(scene.frames) == 2:
        check_distinct_cameras(np.stack([f.c2w for f in scene.frames]), src, "frames")
    return scene


def _require(obj: dict[str, Any], key: str, types: tuple[type, ...], source: Path, where: str) -> Any:
    if key not in obj:
        raise SceneError(source, f"{where}{key}" if where else key, "missing field")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise SceneError(source, f"{where}{key}", f"must be {names}, got {type(value).__name__} {value!r}")
    return value


def _parse_frame(obj: Any, index: int, source: Path) -> Frame:
    where = f"frames[{index}]."
    if not isinstance(obj, dict):
        raise SceneError(source, f"frames[{index}]", f"must be an object, got {type(obj).__name__}")
    image = _require(obj, "image", (str,), source, where)
    c2w = _require(obj, "c2w", (list,), source, where)
    depth, scale = _parse_depth(obj, source, where)
    return Frame(
        image=(source.parent / image).resolve(),
        width=_require(obj, "width", (int,), source, where),
        height=_require(obj, "height", (int,), source, where),
        fx=float(_require(obj, "fx", (int, float), source, where)),
        fy=float(_require(obj, "fy", (int, float), source, where)),
        cx=float(_require(obj, "cx", (int, float), source, where)),
        cy=float(_require(obj, "cy", (int, float), source, where)),
        c2w=check_pose(c2w, source, f"{where}c2w"),
        depth=depth,
        depth_scale=scale,
    )


def _parse_depth(obj: dict[str, Any], source: Path, where: str) -> tuple[Path | None, float | None]:
    """The optional ``depth`` path and ``depth_scale`` of a frame (a PNG depth map needs a scale)."""
    if "depth" not in obj:
        if "depth_scale" in obj:
            raise SceneError(source, f"{where}depth_scale", "given without a depth map (field depth)")
        return None, None
    path = (source.parent / _require(obj, "depth", (str,), source, where)).resolve()
    if path.suffix.lower() not in (".npy", ".png"):
        raise SceneError(source, f"{where}depth", f"must be a .npy or 16-bit .png file, got {path.name}")
    scale = None
    if "depth_scale" in obj:
        scale = float(_require(obj, "depth_scale", (int, float), source, where))
        if not math.isfinite(scale) or scale <= 0:
            raise SceneError(source, f"{where}depth_scale", f"must be a finite number > 0, got {scale!r}")
    elif path.suffix.lower() == ".png":
        raise SceneError(source, f"{where}depth_scale", "a 16-bit PNG depth map needs depth_scale (z per unit)")
    return path, scale


def read_json(source: Path) -> Any:
    """Parse a JSON file; unreadable or malformed files raise :class:`SceneError` naming the file."""
    try:
        return json.loads(source.read_text(encoding="utf-8"))
    except OSError as err:
        raise SceneError(source, "", f"cannot read file: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SceneError(source, "", f"not valid JSON: {err}") from None


def load_scene(path: str | os.PathLike[str], check_images: bool = True) -> Scene:
    """Read and validate ``scene.json``; image paths become absolute. Raises :class:`SceneError` on bad input."""
    source = Path(path)
    data = read_json(source)
    if not isinstance(data, dict):
        raise SceneError(source, "", "top level must be a JSON object")
    version = _require(data, "version", (int,), source, "")
    if version != SCENE_VERSION:
        raise SceneError(source, "version", f"unsupported version {version} (this reader knows {SCENE_VERSION})")
    convention = _require(data, "convention", (str,), source, "")
    if convention != SCENE_CONVENTION:
        raise SceneError(source, "convention", f"must be {SCENE_CONVENTION!r}, got {convention!r}")
    frames = _require(data, "frames", (list,), source, "")
    scene = Scene([_parse_frame(f, i, source) for i, f in enumerate(frames)], source=source)
    return validate_scene(scene, check_images=check_images)


def relative_image_path(image: Path, folder: Path) -> str:
    """``image`` relative to ``folder`` with forward slashes (portable JSON)."""
    return Path(os.path.relpath(Path(image).resolve(), folder.resolve())).as_posix()


def scene_to_dict(scene: Scene, folder: Path) -> dict[str, Any]:
    """The JSON object of ``scene`` with image paths relative to ``folder``."""
    return {
        "version": SCENE_VERSION,
        "convention": SCENE_CONVENTION,
        "frames": [
            {
                "image": relative_image_path(f.image, folder),
                "width": int(f.width),
                "height": int(f.height),
                "fx": float(f.fx),
                "fy": float(f.fy),
                "cx": float(f.cx),
                "cy": float(f.cy),
                "c2w": np.asarray(f.c2w, dtype=np.float64).tolist(),
                **({} if f.depth is None else {"depth": relative_image_path(f.depth, folder)}),
                **({} if f.depth_scale is None else {"depth_scale": float(f.depth_scale)}),
            }
            for f in scene.frames
        ],
    }


def save_scene(scene: Scene, path: str | os.PathLike[str], check_images: bool = True) -> Path:
    """Validate ``scene`` and write it atomically to ``path`` (image paths relative to its folder)."""
    path = Path(path)
    validate_scene(Scene(scene.frames, source=path), check_images=check_images)
    for i, f in enumerate(scene.frames):
        if f.lens is not None:
            raise SceneError(path, f"frames[{i}]", "scene.json has no lens distortion; save undistorted images")
    write_json_atomic(path, scene_to_dict(scene, path.parent))
    return path


def make_frames(
    images: Sequence[str | os.PathLike[str]],
    K: torch.Tensor | np.ndarray,
    c2w: torch.Tensor | np.ndarray,
    sizes: Sequence[tuple[int, int]],
) -> list[Frame]:
    """Frames from per-view image paths, intrinsics [V, 3, 3], OpenCV c2w [V, 4, 4] and (width, height) sizes."""
    K = np.asarray(torch.as_tensor(K).double())
    c2w = np.asarray(torch.as_tensor(c2w).double())
    return [
        Frame(Path(p).resolve(), int(w), int(h), float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), m.copy())
        for p, k, m, (w, h) in zip(images, K, c2w, sizes, strict=True)
    ]
