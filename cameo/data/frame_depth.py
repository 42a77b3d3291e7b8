"""Per-frame depth of real captures computed once and cached on disk: the machinery every expensive pointmap source
shares (the project's stereo, ``cameo.data.stereo_pointmaps``; VGGT, :class:`VGGTDepth` here).

Each frame is computed with its best posed neighbours in the same sequence: cameras at about the sequence's typical
spacing (the median distance to the nearest other camera) that look the same way (optical axes within
``MAX_ANGLE_DEG``). Depth maps are stored as float16 ``.npy`` files, one per frame, written atomically under a
folder named after the sequence and a hash of everything they depend on (images, cameras, lenses, settings): an
interrupted run resumes where it stopped, a changed sequence is recomputed. Invalid pixels are NaN, so the cycle check
of the correspondences drops them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cameo.atomic import atomic_path, write_json_atomic

from .pointmaps import SequenceDepth, VGGTPointmaps

if TYPE_CHECKING:
    from .loaders.common import Sequence

MAX_ANGLE_DEG = 60.0  # neighbours looking further away share too little of the view
ANGLE_WEIGHT_DEG = 30.0  # a factor e off the typical spacing costs as much as this many degrees between the axes


def best_neighbours(c2w: torch.Tensor, index: int, count: int) -> list[int]:
    """Up to ``count`` frames to compute frame ``index`` with, best first (see the module docstring)."""
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


def working_views(seq: "Sequence", views: list[int], max_side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frames ``views`` of ``seq`` at the working size: images ``[V,3,h,w]``, K ``[V,3,3]``, c2w ``[V,4,4]``."""
    images = torch.stack([seq.image(v) for v in views])
    size = working_size(*images.shape[-2:], max_side)
    K = seq.K[views].float().clone()
    K[:, 0] *= size[1] / images.shape[-1]
    K[:, 1] *= size[0] / images.shape[-2]
    small = F.interpolate(images, size=size, mode="area") if size != images.shape[-2:] else images
    return small, K, seq.c2w[views].float()


class CachedDepth(SequenceDepth):
    """Per-frame depth at a working size (longer side ``max_side``) from ``neighbours`` posed neighbours, cached
    under ``cache_dir``; subclasses compute one frame (:meth:`compute`) and name what it depends on
    (:meth:`settings`)."""

    kind = "depth"

    def __init__(self, cache_dir: str | Path, max_side: int = 256, neighbours: int = 1) -> None:
        if neighbours < 1 or max_side < 16:
            raise ValueError(f"{self.kind} pointmaps need neighbours >= 1 and max_side >= 16, got {neighbours}, "
                             f"{max_side}")
        self.cache_dir, self.max_side, self.neighbours = Path(cache_dir), max_side, neighbours

    @abstractmethod
    def compute(self, seq: "Sequence", index: int) -> np.ndarray:
        """z-depth ``[h, w]`` of frame ``index`` at the working size, NaN where unknown."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-able settings the depth depends on (part of the cache key)."""

    def folder(self, seq: "Sequence") -> Path:
        """Cache folder of ``seq``: its name and a hash of its images, cameras, lenses and the settings."""
        digest = hashlib.sha256(json.dumps({
            "kind": self.kind, "images": [str(p) for p in seq.images], "lenses": repr(seq.lenses),
            "max_side": self.max_side, "neighbours": self.neighbours, "settings": self.settings(),
        }).encode())
        digest.update(seq.K.double().numpy().tobytes())
        digest.update(seq.c2w.double().numpy().tobytes())
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in seq.name)[:80]
        return self.cache_dir / f"{safe}-{digest.hexdigest()[:16]}"

    def frame_depth(self, seq: "Sequence", index: int) -> np.ndarray:
        """z-depth ``[h, w]`` float32 of frame ``index`` at the working size (NaN invalid); computed once, cached."""
        path = self.folder(seq) / f"frame_{index:05d}.npy"
        if path.is_file():
            return np.load(path).astype(np.float32)
        depth = self.compute(seq, index).astype(np.float32)
        with atomic_path(path) as tmp:
            np.save(tmp, depth.astype(np.float16))
        return depth

    def prepare(self, sequences: list["Sequence"], progress: bool = True) -> dict[str, dict[str, float]]:
        """Compute every missing frame of ``sequences`` (progress bar per sequence); per sequence computed now:
        seconds, frames and the share of valid pixels, also written to its cache folder's ``summary.json``."""
        done = {}
        for seq in sequences:
            folder = self.folder(seq)
            missing = [i for i in range(len(seq.images)) if not (folder / f"frame_{i:05d}.npy").is_file()]
            if not missing:
                continue
            start = time.perf_counter()
            for i in tqdm(missing, desc=f"{self.kind} pointmaps {seq.name}", disable=not progress,
                          dynamic_ncols=True):
                self.frame_depth(seq, i)
            seconds = time.perf_counter() - start
            valid = float(np.mean([np.isfinite(self.frame_depth(seq, i)).mean() for i in range(len(seq.images))]))
            done[seq.name] = {"seconds": seconds, "frames": len(missing), "valid_share": valid}
            write_json_atomic(folder / "summary.json", done[seq.name])
        return done

    def unknown(self, seq: "Sequence", index: int) -> np.ndarray:
        """An all-NaN depth of frame ``index`` (no posed neighbour looks the same way: nothing is known)."""
        return np.full(working_size(*seq.image(index).shape[-2:], self.max_side), np.nan, dtype=np.float32)


class VGGTDepth(CachedDepth):
    """Per-frame depth from VGGT run on the frame and its neighbours (the frame first, so VGGT's world is its
    camera), put into the given cameras' scale by :class:`~cameo.data.pointmaps.VGGTPointmaps`."""

    kind = "vggt"

    def __init__(self, vggt: VGGTPointmaps, cache_dir: str | Path, max_side: int = 256, neighbours: int = 1,
                 checkpoint: str = "") -> None:
        super().__init__(cache_dir, max_side, neighbours)
        self.vggt, self.checkpoint = vggt, checkpoint

    def settings(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "width": self.vggt.width}

    def compute(self, seq: "Sequence", index: int) -> np.ndarray:
        views = [index] + best_neighbours(seq.c2w, index, self.neighbours)
        if len(views) == 1:  # VGGT's scale comes from the baseline to the neighbours
            return self.unknown(seq, index)
        images, K, c2w = working_views(seq, views, self.max_side)
        points = self.vggt(images, K, c2w)[0]  # [3, h, w] world
        w2c = torch.linalg.inv(c2w[0])
        z = (w2c[2:3, :3] @ points.flatten(1))[0] + w2c[2, 3]
        z = torch.where(torch.isfinite(z) & (z > 0), z, torch.full_like(z, float("nan")))
        return z.view(points.shape[-2:]).numpy()
