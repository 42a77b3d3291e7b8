"""Shared pieces of the real-dataset loaders: a posed image sequence and the sample dataset over sequences."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..dataset import choose_views, make_sample, resize_sample
from ..pointmaps import PointmapSource


@dataclass
class Sequence:
    """Posed frames of one capture: image files, pixel intrinsics ``K [V,3,3]`` for each image's own size and OpenCV
    ``c2w [V,4,4]``; optional depth files read by ``read_depth(path, index) -> z-depth [H, W]`` (NaN invalid)."""

    name: str
    images: list[Path]
    K: torch.Tensor
    c2w: torch.Tensor
    depths: list[Path] | None = None
    read_depth: Callable[[Path, int], np.ndarray] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.K.shape != (n, 3, 3) or self.c2w.shape != (n, 4, 4):
            raise ValueError(f"sequence {self.name}: {n} images but K {tuple(self.K.shape)}, c2w {tuple(self.c2w.shape)}")


def read_rgb(path: Path) -> torch.Tensor:
    """RGB image ``[3, H, W]`` in [0, 1]."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header."""
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


class SequenceDataset(Dataset):
    """Samples of ``num_views`` frames of one sequence per item (views drawn from ``(seed, epoch, index)``).

    Images are centre-cropped to a square and resized to ``resolution``; pointmaps come from ``pointmaps`` (default:
    from depth when the dataset has depth, else none).
    """

    def __init__(
        self,
        sequences: list[Sequence],
        num_views: int = 4,
        ref_range: tuple[int, int] = (1, 3),
        resolution: int = 64,
        seed: int = 0,
        pointmaps: PointmapSource | None = None,
    ) -> None:
        self.sequences = [s for s in sequences if len(s.images) >= num_views]
        if not self.sequences:
            raise ValueError(f"no sequence has at least {num_views} frames")
        self.num_views, self.ref_range, self.resolution = num_views, ref_range, resolution
        self.seed, self.epoch, self.pointmaps = seed, 0, pointmaps

    def __len__(self) -> int:
        return len(self.sequences)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _view(self, seq: Sequence, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        image = read_rgb(seq.images[i])
        depth = None
        if seq.depths is not None and seq.read_depth is not None:
            depth = torch.from_numpy(seq.read_depth(seq.depths[i], i)).float()
            if depth.shape != image.shape[-2:]:  # depth stored at another size: nearest-resample onto the image
                depth = F.interpolate(depth[None, None], size=image.shape[-2:], mode="nearest-exact")[0, 0]
            depth = depth[None]
        image, K, depth = resize_sample(image[None], seq.K[i : i + 1].float(), depth, self.resolution)
        return image[0], K[0], None if depth is None else depth[0]

    def __getitem__(self, index: int) -> dict:
        seq = self.sequences[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        views, num_refs = choose_views(rng, len(seq.images), self.num_views, self.ref_range)
        loaded = [self._view(seq, int(i)) for i in views]
        images = torch.stack([v[0] for v in loaded])
        K = torch.stack([v[1] for v in loaded])
        c2w = seq.c2w[torch.as_tensor(views)].float()
        depth = torch.stack([v[2] for v in loaded]) if all(v[2] is not None for v in loaded) else None
        pointmaps = self.pointmaps(images, K, c2w, depth) if self.pointmaps is not None else None
        return make_sample(images, K, c2w, depth, pointmaps, num_refs, seq.name)
