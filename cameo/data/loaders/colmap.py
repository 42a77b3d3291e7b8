"""A COLMAP sparse model (``<capture>/sparse/0`` or ``<capture>/sparse`` with ``<capture>/images``) as one sequence
(cameras via ``cameo.importers.read_colmap``; photos with lens distortion are undistorted on load)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cameo.importers import read_colmap

from .common import Sequence, SequenceDataset

SPARSE_DIRS = ("sparse/0", "sparse", ".")


def read_sequences(path: Path | str) -> list[Sequence]:
    """The capture ``path`` (its folder, or the sparse model folder itself)."""
    path = Path(path)
    found = [path / d for d in SPARSE_DIRS if any((path / d / f"cameras{e}").is_file() for e in (".bin", ".txt"))]
    sparse = found[0] if found else None
    if sparse is None:
        raise FileNotFoundError(f"{path}: no COLMAP model (cameras.bin/.txt in sparse/0, sparse or the folder)")
    frames = read_colmap(sparse)
    name = path.name if sparse != path else path.parent.name
    return [Sequence(name, [f.image for f in frames], torch.tensor(np.stack([f.K for f in frames])),
                     torch.tensor(np.stack([f.c2w for f in frames])), lenses=[f.lens for f in frames])]


def open_dataset(path: Path, num_views: int = 4, ref_range: tuple[int, int] = (1, 3), resolution: int = 64,
                 seed: int = 0, pointmaps=None) -> SequenceDataset:
    return SequenceDataset(read_sequences(path), num_views, ref_range, resolution, seed, pointmaps)
