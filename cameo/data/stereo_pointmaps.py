"""Pointmaps of real captures without depth from the project's own two-view stereo, cached on disk per sequence.

Each frame is matched (``cameo.geometry.stereo.two_view_depth``) against its best posed neighbours in the same
sequence (``cameo.data.frame_depth.best_neighbours``); its depth is the first neighbour's where valid, holes filled
from the next ones, NaN where none. Caching, resuming and the progress bar: ``cameo.data.frame_depth.CachedDepth``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cameo.geometry.stereo import StereoOptions, two_view_depth

from .frame_depth import CachedDepth, best_neighbours, working_views
from .loaders.common import Sequence


class StereoPointmaps(CachedDepth):
    """Per-frame stereo depth of a sequence at a working size (longer side ``max_side``), cached under ``cache_dir``;
    the last ``pair_memory`` pairs stay in memory, so a pair of mutual neighbours is matched once."""

    kind = "stereo"

    def __init__(self, cache_dir: str | Path, max_side: int = 256, neighbours: int = 1,
                 options: StereoOptions | None = None, pair_memory: int = 8) -> None:
        super().__init__(cache_dir, max_side, neighbours)
        self.options = options or StereoOptions()
        self._pairs: OrderedDict[tuple[str, int, int], torch.Tensor] = OrderedDict()
        self._pair_memory = pair_memory

    def settings(self) -> dict[str, Any]:
        return asdict(self.options)

    def compute(self, seq: Sequence, index: int) -> np.ndarray:
        """Depth of frame ``index`` from its neighbours: the first valid value per pixel, NaN where none."""
        depth = None
        for j in best_neighbours(seq.c2w, index, self.neighbours):
            found = self._pair(seq, index, j)
            depth = found if depth is None else torch.where(torch.isfinite(depth), depth, found)
        return self.unknown(seq, index) if depth is None else depth.numpy()

    def _pair(self, seq: Sequence, i: int, j: int) -> torch.Tensor:
        """Frame ``i``'s depth from stereo with frame ``j``; the pair's other depth is kept for frame ``j``."""
        key = (str(self.folder(seq)), min(i, j), max(i, j))
        if key not in self._pairs:
            images, K, c2w = working_views(seq, [key[1], key[2]], self.max_side)
            self._pairs[key] = two_view_depth(images, K, c2w, options=self.options).depth
            while len(self._pairs) > self._pair_memory:
                self._pairs.popitem(last=False)
        return self._pairs[key][0 if i == key[1] else 1]
