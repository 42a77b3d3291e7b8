"""Any folder with a nerfstudio ``transforms.json`` (cameras via ``cameo.importers.read_nerfstudio``; photos with
lens distortion are undistorted on load)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cameo.importers import read_nerfstudio

from .common import Sequence, SequenceDataset


def read_sequence(path: Path | str) -> Sequence:
    path = Path(path)
    file = path / "transforms.json" if path.is_dir() else path
    frames = read_nerfstudio(file)
    return Sequence(
        file.parent.name, [f.image for f in frames],
        torch.tensor(np.stack([f.K for f in frames])), torch.tensor(np.stack([f.c2w for f in frames])),
        lenses=[f.lens for f in frames],
    )


def read_sequences(path: Path | str) -> list[Sequence]:
    """``path`` (a transforms.json or its folder) or every ``*/transforms.json`` below it."""
    path = Path(path)
    if path.is_file() or (path / "transforms.json").is_file():
        return [read_sequence(path)]
    files = sorted(path.glob("*/transforms.json"))
    if not files:
        raise FileNotFoundError(f"{path}: no transforms.json found")
    return [read_sequence(f) for f in files]


def open_dataset(path: Path, num_views: int = 4, ref_range: tuple[int, int] = (1, 3), resolution: int = 64,
                 seed: int = 0, pointmaps=None) -> SequenceDataset:
    return SequenceDataset(read_sequences(path), num_views, ref_range, resolution, seed, pointmaps)
