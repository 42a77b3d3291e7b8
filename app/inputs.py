"""Turn what was uploaded (1-2 images, an optional camera file, camera fields) into a validated ``Scene``.

Every problem becomes an :class:`InputError` (or ``cameo.scene.SceneError`` naming the camera file and field)
with a message meant for the person at the browser: which input, what is wrong, what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.camera_fields import CameraFields, cameras_from_fields
from cameo.importers import import_nerfstudio
from cameo.scene import Frame, Scene, load_scene, make_frames, validate_scene

DEFAULT_MAX_PIXELS = 25_000_000
"""Largest accepted image (width x height); the model works at a few hundred pixels, so bigger only costs memory."""

CAMERA_SOURCES = ("fields", "file")


class InputError(ValueError):
    """An uploaded input the app cannot use; ``str()`` is a message for the user."""


def image_size(path: str | os.PathLike[str], label: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of an image file after checking it decodes and is not larger than ``max_pixels``.

    The size comes from the header, so a huge image is rejected before its pixels are decoded.
    """
    name = Path(path).name
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise InputError(f"{label} ({name}) is {width}x{height} = {width * height:,} pixels; the limit is "
                                 f"{max_pixels:,} ({max_pixels / 1e6:g} MP). Downscale it first.")
            im.load()
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise InputError(f"{label} ({name}) is not an image this app can read (PNG, JPEG, WebP, ...): {err}") from None
    except OSError as err:
        raise InputError(f"{label} ({name}) cannot be read: {err}") from None
    return width, height


def build_scene(
    images: Sequence[str | os.PathLike[str] | None],
    camera_source: str = "fields",
    camera_file: str | os.PathLike[str] | None = None,
    fields: CameraFields | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Scene:
    """A validated 1-2 frame scene of the uploaded ``images`` (empty slots skipped, order kept).

    ``camera_source`` is ``"file"`` (cameras from ``camera_file``: ``scene.json`` or nerfstudio
    ``transforms.json``) or ``"fields"`` (cameras from ``fields``, see :mod:`app.camera_fields`).
    """
    paths = [Path(p) for p in images if p]
    if not paths:
        raise InputError("No image: upload one image (single-view) or two images of the same scene.")
    if len(paths) > 2:
        raise InputError(f"{len(paths)} images given; the model takes 1 or 2.")
    labels = [f"Image {i + 1}" for i in range(len(paths))]
    sizes = [image_size(p, label, max_pixels) for p, label in zip(paths, labels)]
    if len(set(sizes)) > 1:
        (w1, h1), (w2, h2) = sizes
        raise InputError(f"Image 1 is {w1}x{h1} but image 2 is {w2}x{h2}: both images must have the same size "
                         "(crop or resize one, and adjust its camera).")
    if camera_source == "file":
        if camera_file is None:
            raise InputError("Cameras are set to come from a camera file, but none was uploaded: add a scene.json "
                             "or transforms.json, or switch the camera source to the fields.")
        return _scene_from_file(Path(camera_file), paths)
    if camera_source != "fields":
        raise InputError(f"camera source must be one of {', '.join(CAMERA_SOURCES)}, got {camera_source!r}")
    width, height = sizes[0]
    try:
        K, c2w = cameras_from_fields(len(paths), width, height, fields or CameraFields())
    except ValueError as err:
        raise InputError(f"Camera fields: {err}") from None
    return validate_scene(Scene(make_frames(paths, K, c2w, sizes)))


def _scene_from_file(camera_file: Path, images: list[Path]) -> Scene:
    """Cameras of ``camera_file`` for the uploaded images (picked by file name, else in order), sizes checked."""
    try:
        data = json.loads(camera_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"Camera file {camera_file.name} is not readable JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise InputError(f"Camera file {camera_file.name} has no 'frames' list: expected a scene.json or a "
                         "nerfstudio transforms.json.")
    if "version" in data:  # our scene.json; nerfstudio files carry no version
        loaded = load_scene(camera_file, check_images=False).frames
        indices = _match_frames([f.image.name for f in loaded], images, camera_file)
        frames = [loaded[i] for i in indices]
    else:
        names = [str(f.get("file_path", "")) if isinstance(f, dict) else "" for f in data["frames"]]
        indices = _match_frames(names, images, camera_file)
        frames = import_nerfstudio(camera_file, indices, check_images=False).frames
    frames = [_with_image(f, image) for f, image in zip(frames, images)]
    return validate_scene(Scene(frames, source=camera_file))


def _match_frames(frame_images: list[str], images: list[Path], camera_file: Path) -> list[int]:
    """Index of the camera-file frame for each uploaded image: same file name (extension optional), else order."""
    stems = [Path(name).stem for name in frame_images]
    indices = []
    for image in images:
        hits = [i for i, name in enumerate(frame_images) if Path(name).name == image.name]
        hits = hits or [i for i, stem in enumerate(stems) if stem == image.stem]
        indices.append(hits[0] if hits else None)
    if all(i is not None for i in indices) and len(set(indices)) == len(indices):
        return indices  # type: ignore[return-value]
    if len(frame_images) == len(images):
        return list(range(len(images)))
    uploaded = ", ".join(p.name for p in images)
    raise InputError(f"Camera file {camera_file.name} has {len(frame_images)} frames and none is named like the "
                     f"uploaded image(s) ({uploaded}): upload a camera file with exactly {len(images)} frame(s), "
                     "or images named as in the file.")


def _with_image(frame: Frame, image: Path) -> Frame:
    """``frame`` pointing at the uploaded image (the camera file's own image paths do not exist here); its lens, if
    any, goes with it (the upload is undistorted on load)."""
    return Frame(image, frame.width, frame.height, frame.fx, frame.fy, frame.cx, frame.cy, frame.c2w, lens=frame.lens)
