"""DTU in the IDR / NeuS layout (``<scan>/cameras.npz`` or ``cameras_sphere.npz``, ``<scan>/image/*.png``) or the
MonoSDF one (``<scan>/cameras.npz``, ``<scan>/*_rgb.png``).

Cameras come from ``cameo.importers.read_cameras_npz`` (``world_mat_i @ scale_mat_i`` decomposed into K and an
OpenCV c2w in the normalised unit-sphere frame). ``world_mat_i`` project into DTU's 1600x1200 photos; images of
another size (MonoSDF's 384x384) were centre-cropped to their aspect ratio and resized, which the intrinsics follow
(for MonoSDF: ``[[0.32, 0, -64], [0, 0.32, 0], [0, 0, 1]] @ world_mat_i``). No depth: pass a pointmap source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cameo.importers import read_cameras_npz

from .common import Sequence, SequenceDataset, image_size

CAMERA_FILES = ("cameras.npz", "cameras_sphere.npz")
IMAGE_DIRS = ("image", "images")
DTU_SIZE = (1600, 1200)  # (width, height) of the photos world_mat_i project into


def pixel_transform(npz: Path, size: tuple[int, int]) -> np.ndarray | None:
    """The crop-and-resize from DTU's 1600x1200 photos to images of ``size = (w, h)``, or None when the images are
    those photos or the cameras already belong to the images (principal point not near DTU's centre)."""
    if tuple(size) == DTU_SIZE:
        return None
    K, _ = read_cameras_npz(npz, [0], use_scale_mat=False)
    centre = np.array(DTU_SIZE) / 2
    if (np.abs(K[0, :2, 2].numpy() - centre) > 0.1 * centre).any():
        return None
    (W, H), (w, h) = DTU_SIZE, size
    crop_w, crop_h = min(W, H * w / h), min(H, W * h / w)
    s = w / crop_w
    return np.array([[s, 0.0, -s * (W - crop_w) / 2], [0.0, s, -s * (H - crop_h) / 2], [0.0, 0.0, 1.0]])


def read_sequence(folder: Path | str) -> Sequence:
    folder = Path(folder)
    npz = next((folder / n for n in CAMERA_FILES if (folder / n).is_file()), None)
    if npz is None:
        raise FileNotFoundError(f"{folder}: no {' or '.join(CAMERA_FILES)}")
    image_dir = next((folder / d for d in IMAGE_DIRS if (folder / d).is_dir()), None)
    if image_dir is not None:
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    else:
        images = sorted(folder.glob("*_rgb.png"))
    if not images:
        raise FileNotFoundError(f"{folder}: no images (image/ or images/ folder, or *_rgb.png files)")
    K, c2w = read_cameras_npz(npz, list(range(len(images))), pixel_transform(npz, image_size(images[0])))
    return Sequence(folder.name, images, K, c2w)


def read_sequences(path: Path | str) -> list[Sequence]:
    """The scan ``path`` itself or every scan folder directly under it."""
    path = Path(path)
    if any((path / n).is_file() for n in CAMERA_FILES):
        return [read_sequence(path)]
    scans = sorted(p for p in path.iterdir() if p.is_dir() and any((p / n).is_file() for n in CAMERA_FILES))
    if not scans:
        raise FileNotFoundError(f"{path}: no DTU scan folders with {' or '.join(CAMERA_FILES)}")
    return [read_sequence(s) for s in scans]


def open_dataset(path: Path, num_views: int = 4, ref_range: tuple[int, int] = (1, 3), resolution: int = 64,
                 seed: int = 0, pointmaps=None) -> SequenceDataset:
    return SequenceDataset(read_sequences(path), num_views, ref_range, resolution, seed, pointmaps)
