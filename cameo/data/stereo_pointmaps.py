"""Pointmaps of real captures without depth from the project's own two-view stereo, cached on disk per sequence.

Each frame is matched (``cameo.geometry.stereo.two_view_depth``) against its best posed neighbours in the same
sequence: cameras at about the sequence's typical spacing (the median distance to the nearest other camera) that
look the same way (optical axes within ``MAX_ANGLE_DEG``). The frame's depth is the first neighbour's where valid,
holes filled from the next ones; invalid pixels stay NaN, so the cycle check of the correspondences drops them.
Depth maps are stored as float16 ``.npy`` files, one per frame, written atomically under a folder named after the
sequence and a hash of everything they depend on (images, cameras, lenses, settings): an interrupted run resumes
where it stopped, a changed sequence is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cameo.atomic import atomic_path, write_json_atomic
from cameo.geometry.stereo import StereoOptions, two_view_depth

from .loaders.common import Sequence
from .pointmaps import SequenceDepth

CACHE_FORMAT = "cameo-stereo-depth-1"
MAX_ANGLE_DEG = 60.0  # neighbours looking further away share too little of the view
ANGLE_WEIGHT_DEG = 30.0  # a factor e off the typical spacing costs as much as this many degrees between the axes


def best_neighbours(c2w: torch.Tensor, index: int, count: int) -> list[int]:
    """Up to ``count`` frames to match frame ``index`` against, best first (see the module docstring)."""
    centres, axes = c2w[:, :3, 3].double(), c2w[:, :3, 2].double()
    dist = torch.cdist(centres, centres)
    nearest = (dist + torch.diag(torch.full((len(c2w),), math.inf, dtype=dist.dtype))).min(1).values
    spaced = nearest[torch.isfinite(nearest) & (nearest > 0)]
    if len(spaced) == 0:  # one frame, or every camera at one place: no baseline to triangulate with
        return []
    typical = float(spaced.median())
    angle = torch.rad2deg(torch.arccos((axes @ axes[index]).clamp(-1, 1)))
    score = (dist[index] / typical).clamp_min(1e-9).log().abs() + angle / ANGLE_WEIGHT_DEG
    usable = (dist[index] > 1e-3 * typical) & (angle <= MAX_ANGLE_DEG)
    usable[index] = False
    order = [int(j) for j in torch.argsort(score) if usable[j]]
    return order[:count]


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) with the longer side at most ``max_side`` (aspect kept)."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class StereoPointmaps(SequenceDepth):
    """Per-frame stereo depth of a sequence at a working size (longer side ``max_side``), cached under ``cache_dir``."""

    def __init__(self, cache_dir: str | Path, max_side: int = 256, neighbours: int = 1,
                 options: StereoOptions | None = None, pair_memory: int = 8) -> None:
        if neighbours < 1 or max_side < 16:
            raise ValueError(f"stereo pointmaps need neighbours >= 1 and max_side >= 16, got {neighbours}, {max_side}")
        self.cache_dir, self.max_side, self.neighbours = Path(cache_dir), max_side, neighbours
        self.options = options or StereoOptions()
        self._pairs: OrderedDict[tuple[str, int, int], torch.Tensor] = OrderedDict()
        self._pair_memory = pair_memory

    def folder(self, seq: Sequence) -> Path:
        """Cache folder of ``seq``: its name and a hash of its images, cameras, lenses and the stereo settings."""
        digest = hashlib.sha256(json.dumps({
            "format": CACHE_FORMAT, "images": [str(p) for p in seq.images], "lenses": repr(seq.lenses),
            "max_side": self.max_side, "neighbours": self.neighbours, "options": asdict(self.options),
        }).encode())
        digest.update(seq.K.double().numpy().tobytes())
        digest.update(seq.c2w.double().numpy().tobytes())
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in seq.name)[:80]
        return self.cache_dir / f"{safe}-{digest.hexdigest()[:16]}"

    def frame_depth(self, seq: Sequence, index: int) -> np.ndarray:
        """z-depth ``[h, w]`` float32 of frame ``index`` at the working size (NaN invalid); computed once, cached."""
        path = self.folder(seq) / f"frame_{index:05d}.npy"
        if path.is_file():
            return np.load(path).astype(np.float32)
        depth = self._compute(seq, index)
        with atomic_path(path) as tmp:
            np.save(tmp, depth.astype(np.float16))
        return depth

    def prepare(self, sequences: list[Sequence], progress: bool = True) -> dict[str, dict[str, float]]:
        """Compute every missing frame of ``sequences`` (progress bar per sequence); per sequence computed now:
        seconds, frames and the share of valid pixels, also written to its cache folder's ``summary.json``."""
        done = {}
        for seq in sequences:
            folder = self.folder(seq)
            missing = [i for i in range(len(seq.images)) if not (folder / f"frame_{i:05d}.npy").is_file()]
            if not missing:
                continue
            start = time.perf_counter()
            for i in tqdm(missing, desc=f"stereo pointmaps {seq.name}", disable=not progress, dynamic_ncols=True):
                self.frame_depth(seq, i)
            seconds = time.perf_counter() - start
            valid = float(np.mean([np.isfinite(self.frame_depth(seq, i)).mean() for i in range(len(seq.images))]))
            done[seq.name] = {"seconds": seconds, "frames": len(missing), "valid_share": valid}
            write_json_atomic(folder / "summary.json", done[seq.name])
            self._pairs.clear()
        return done

    def _compute(self, seq: Sequence, index: int) -> np.ndarray:
        """Depth of frame ``index`` from its neighbours: the first valid value per pixel, NaN where none."""
        depth = None
        for j in best_neighbours(seq.c2w, index, self.neighbours):
            found = self._pair(seq, index, j)
            depth = found if depth is None else torch.where(torch.isfinite(depth), depth, found)
        if depth is None:  # no posed neighbour looks the same way: nothing is known about this frame
            h, w = working_size(*seq.image(index).shape[-2:], self.max_side)
            return np.full((h, w), np.nan, dtype=np.float32)
        return depth.numpy().astype(np.float32)

    def _pair(self, seq: Sequence, i: int, j: int) -> torch.Tensor:
        """Frame ``i``'s depth from stereo with frame ``j``; the pair's other depth is kept for frame ``j``."""
        key = (str(self.folder(seq)), min(i, j), max(i, j))
        if key not in self._pairs:
            images = torch.stack([seq.image(key[1]), seq.image(key[2])])
            size = working_size(*images.shape[-2:], self.max_side)
            K = seq.K[[key[1], key[2]]].float().clone()
            K[:, 0] *= size[1] / images.shape[-1]
            K[:, 1] *= size[0] / images.shape[-2]
            small = F.interpolate(images, size=size, mode="area") if size != images.shape[-2:] else images
            self._pairs[key] = two_view_depth(small, K, seq.c2w[[key[1], key[2]]].float(), options=self.options).depth
            while len(self._pairs) > self._pair_memory:
                self._pairs.popitem(last=False)
        return self._pairs[key][0 if i == key[1] else 1]
