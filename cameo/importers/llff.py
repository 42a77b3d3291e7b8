"""LLFF ``poses_bounds.npy``: 3x5 ``[R | t | hwf]`` camera-to-world in ``[down, right, back]`` camera axes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cameo.importers.common import select_frames
from cameo.scene import Frame, Scene, SceneError, check_pose, validate_scene

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _image_size(image: Path, source: Path, field_name: str) -> tuple[int, int]:
    """(width, height) of an image file from its header; unreadable files raise SceneError."""
    try:
        with Image.open(image) as im:
            return im.size
    except (OSError, ValueError) as err:
        raise SceneError(source, field_name, f"cannot read image {image}: {err}") from None



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
    return validate_scene(Scene(select_frames(read_llff(source, images_dir), indices, source), source), check_images)
