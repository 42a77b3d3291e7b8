"""RealEstate10K camera files.

Per sequence a text file: line 1 is the video URL; every further line is one frame:
``timestamp fx fy cx cy 0 0 r00 r01 r02 t0 r10 r11 r12 t1 r20 r21 r22 t2`` with intrinsics normalised by the image
width (fx, cx) and height (fy, cy), and a 3x4 OpenCV world-to-camera matrix (row-major). Frames are images named
``<timestamp>.png`` or ``.jpg`` in a folder named after the sequence (next to the txt, or under ``frames/``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cameo.cameras import invert_pose

from .common import Sequence, SequenceDataset, image_size


def _frames_dir(txt: Path) -> Path:
    for cand in (txt.with_suffix(""), txt.parent / "frames" / txt.stem, txt.parent.parent / "frames" / txt.stem):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"{txt}: no frames folder {txt.with_suffix('')} (or frames/{txt.stem}) next to it")


def read_sequence(txt: Path | str, frames_dir: Path | str | None = None) -> Sequence:
    """One sequence; frames whose image file is missing are skipped (downloads are often partial)."""
    txt = Path(txt)
    folder = Path(frames_dir) if frames_dir is not None else _frames_dir(txt)
    lines = txt.read_text().splitlines()[1:]
    images, K, w2cs = [], [], []
    for n, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 19:
            raise ValueError(f"{txt}: line {n}: expected 19 numbers (timestamp, 4 intrinsics, 2 zeros, 12 pose), "
                             f"got {len(parts)}")
        image = next((folder / f"{parts[0]}{ext}" for ext in (".png", ".jpg", ".jpeg")
                      if (folder / f"{parts[0]}{ext}").is_file()), None)
        if image is None:
            continue
        w, h = image_size(image)
        fx, fy, cx, cy = (float(x) for x in parts[1:5])
        K.append([[fx * w, 0, cx * w], [0, fy * h, cy * h], [0, 0, 1]])
        w2c = np.eye(4)
        w2c[:3] = np.array(parts[7:19], dtype=np.float64).reshape(3, 4)
        w2cs.append(w2c)
        images.append(image)
    if not images:
        raise FileNotFoundError(f"{txt}: none of its {len(lines)} frames has an image in {folder}")
    return Sequence(txt.stem, images, torch.tensor(K, dtype=torch.float64),
                    invert_pose(torch.tensor(np.stack(w2cs), dtype=torch.float64)))


def read_sequences(path: Path | str) -> list[Sequence]:
    """Every ``*.txt`` camera file under ``path`` (a folder) or the single file ``path``."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{path}: no RealEstate10K camera .txt files found")
    return [read_sequence(f) for f in files]


def open_dataset(path: Path, num_views: int = 4, ref_range: tuple[int, int] = (1, 3), resolution: int = 64,
                 seed: int = 0, pointmaps=None) -> SequenceDataset:
    """RealEstate10K has no depth: pass ``pointmaps`` (e.g. VGGTPointmaps) for CAMEO supervision."""
    return SequenceDataset(read_sequences(path), num_views, ref_range, resolution, seed, pointmaps)
