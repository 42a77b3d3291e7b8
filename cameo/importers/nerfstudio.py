"""nerfstudio ``transforms.json`` (OpenGL camera axes: x right, y up, z back), read and written; the reconstruction
step writes one so nerfstudio can train on the generated views."""

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
from cameo.importers.common import select_frames
from cameo.undistort import Lens, make_lens, pinhole_intrinsics
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
_PERSPECTIVE = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")  # nerfstudio applies k1..k3, p1, p2 to all three
_REFUSED = {  # camera models no single pinhole image (or no OpenCV lens model) can represent, and why
    "EQUIRECTANGULAR": "a 360-degree panorama has no single pinhole image",
    "OMNIDIRECTIONALSTEREO_L": "a 360-degree stereo panorama has no single pinhole image",
    "OMNIDIRECTIONALSTEREO_R": "a 360-degree stereo panorama has no single pinhole image",
    "VR180_L": "a 180-degree panorama has no single pinhole image",
    "VR180_R": "a 180-degree panorama has no single pinhole image",
    "FISHEYE624": "OpenCV has no model for its 6 radial, 2 tangential and 4 thin-prism terms",
}


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
    model = frame.get("camera_model", meta.get("camera_model", "OPENCV"))
    out.lens = _ns_lens(model, {k: get(k) or 0.0 for k in _DISTORTION_KEYS}, out, source, where)
    if out.lens is not None:
        out.fx, out.fy, out.cx, out.cy = pinhole_intrinsics(out.lens, out.width, out.height)
    return out


def _ns_lens(model: str, terms: dict[str, float], frame: Frame, source: Path, where: str) -> Lens | None:
    """The lens of a nerfstudio frame (``k1..k4, p1, p2`` as nerfstudio's OPENCV / OPENCV_FISHEYE models use them);
    terms OpenCV has no place for are refused, naming the field."""
    if model == "OPENCV_FISHEYE":
        for key in ("p1", "p2"):
            if terms[key]:
                raise SceneError(source, f"{where}{key}", "OPENCV_FISHEYE has no tangential terms")
        coeffs = tuple(terms[k] for k in ("k1", "k2", "k3", "k4"))
        return make_lens(frame.fx, frame.fy, frame.cx, frame.cy, "fisheye", coeffs)
    if terms["k4"]:
        raise SceneError(source, f"{where}k4", f"{model}: nerfstudio's radial r^8 term has no OpenCV equivalent; "
                                               "undistort the images first")
    coeffs = tuple(terms[k] for k in ("k1", "k2", "p1", "p2", "k3"))
    return make_lens(frame.fx, frame.fy, frame.cx, frame.cy, "radtan", coeffs)


def read_nerfstudio(path: str | os.PathLike[str]) -> list[Frame]:
    """All frames of a nerfstudio ``transforms.json`` as OpenCV frames (image files are not opened)."""
    source = Path(path)
    meta = read_json(source)
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise SceneError(source, "frames", "missing field (expected a list of frames)")
    models = {str(meta.get("camera_model", "OPENCV"))} | {str(f["camera_model"]) for f in meta["frames"]
                                                           if isinstance(f, dict) and f.get("camera_model")}
    for model in sorted(models):
        if model in _REFUSED:
            raise SceneError(source, "camera_model", f"{model!r} cannot be undistorted: {_REFUSED[model]}")
        if model not in _PERSPECTIVE + ("OPENCV_FISHEYE",):
            raise SceneError(source, "camera_model", f"unknown camera model {model!r} (known: "
                                                     f"{', '.join(_PERSPECTIVE + ('OPENCV_FISHEYE',))})")
    return [_ns_frame(meta, f, i, source) for i, f in enumerate(meta["frames"])]


def import_nerfstudio(
    path: str | os.PathLike[str], indices: Sequence[int] | None = None, check_images: bool = True
) -> Scene:
    """A validated 1-2 frame :class:`Scene` from ``transforms.json`` (``indices`` picks frames when it has more)."""
    source = Path(path)
    return validate_scene(Scene(select_frames(read_nerfstudio(source), indices, source), source), check_images)


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

