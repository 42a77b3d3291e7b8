"""DTU in the IDR / NeuS layout: ``<scan>/cameras.npz`` (or ``cameras_sphere.npz``) and ``<scan>/image/*.png``.

Cameras come from ``cameo.importers.read_cameras_npz`` (``world_mat_i @ scale_mat_i`` decomposed into K and an
OpenCV c2w in the normalised unit-sphere frame). No depth: pass a pointmap source for supervision.
"""

from __future__ import annotations

from pathlib import Path

from cameo.importers import read_cameras_npz

from .common import Sequence, SequenceDataset

CAMERA_FILES = ("cameras.npz", "cameras_sphere.npz")
IMAGE_DIRS = ("image", "images")


def read_sequence(folder: Path | str) -> Sequence:
    folder = Path(folder)
    npz = next((folder / n for n in CAMERA_FILES if (folder / n).is_file()), None)
    if npz is None:
        raise FileNotFoundError(f"{folder}: no {' or '.join(CAMERA_FILES)}")
    image_dir = next((folder / d for d in IMAGE_DIRS if (folder / d).is_dir()), None)
    if image_dir is None:
        raise FileNotFoundError(f"{folder}: no image/ folder")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    K, c2w = read_cameras_npz(npz, indices=list(range(len(images))))
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
