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

from cameo.cameras import unproject_depth

from cameo.undistort import Lens, undistort_image

from ..dataset import choose_views, make_sample, resize_sample
from ..pointmaps import PointmapSource, SequenceDepth


@dataclass
class Sequence:
    """Posed frames of one capture: image files, pixel intrinsics ``K [V,3,3]`` for each image's own size and OpenCV
    ``c2w [V,4,4]``; optional depth files read by ``read_depth(path, index) -> z-depth [H, W]`` (NaN invalid);
    optional per-frame ``lenses`` (the photos are undistorted on load and ``K`` is the undistorted images')."""

    name: str
    images: list[Path]
    K: torch.Tensor
    c2w: torch.Tensor
    depths: list[Path] | None = None
    read_depth: Callable[[Path, int], np.ndarray] | None = None
    lenses: list[Lens | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.K.shape != (n, 3, 3) or self.c2w.shape != (n, 4, 4):
            raise ValueError(f"sequence {self.name}: {n} images but K {tuple(self.K.shape)}, c2w {tuple(self.c2w.shape)}")
        if self.lenses is not None and len(self.lenses) != n:
            raise ValueError(f"sequence {self.name}: {n} images but {len(self.lenses)} lenses")

    def image(self, index: int) -> torch.Tensor:
        """Frame ``index`` as RGB ``[3, H, W]`` in [0, 1], undistorted when it has a lens."""
        lens = self.lenses[index] if self.lenses is not None else None
        return read_rgb(self.images[index], lens)


def read_rgb(path: Path, lens: Lens | None = None) -> torch.Tensor:
    """RGB image ``[3, H, W]`` in [0, 1], undistorted (on its 8-bit pixels, as ``Scene.load_images``) for a lens."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    if lens is not None:
        arr = undistort_image(arr, lens)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header."""
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


MIN_VALID_SHARE = 0.25  # of a pixel's footprint in a pointmap source's depth, for the pixel to get a depth


def _fit(depth: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """z-depth ``[H', W']`` as ``[1, H, W]`` at the image's size (nearest: no depths mixed across edges)."""
    out = torch.from_numpy(depth).float()
    if tuple(out.shape) != size:
        out = F.interpolate(out[None, None], size=size, mode="nearest-exact")[0, 0]
    return out[None]


class SequenceDataset(Dataset):
    """Samples of ``num_views`` frames of one sequence per item (views drawn from ``(seed, epoch, index)``).

    Images are centre-cropped to a square and resized to ``resolution``; pointmaps come from ``pointmaps``: a
    per-sample :class:`PointmapSource` (VGGT), a per-frame :class:`SequenceDepth` (cached stereo) whose depth is
    cropped and resized with the image, or None (from depth when the dataset has depth, else none).
    """

    def __init__(
        self,
        sequences: list[Sequence],
        num_views: int = 4,
        ref_range: tuple[int, int] = (1, 3),
        resolution: int = 64,
        seed: int = 0,
        pointmaps: PointmapSource | SequenceDepth | None = None,
    ) -> None:
        self.sequences = [s for s in sequences if len(s.images) >= num_views]
        if not self.sequences:
            raise ValueError(f"no sequence has at least {num_views} frames")
        self.num_views, self.ref_range, self.resolution = num_views, ref_range, resolution
        self.seed, self.epoch, self.pointmaps = seed, 0, pointmaps

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def has_depth(self) -> bool:
        """Whether every sequence has depth maps of its own."""
        return all(s.depths is not None and s.read_depth is not None for s in self.sequences)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _view(self, seq: Sequence, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None,
                                                     torch.Tensor | None]:
        """Frame ``i`` cropped and resized: image, K, dataset depth and pointmap-source depth (each None if absent)."""
        image = seq.image(i)
        size = tuple(image.shape[-2:])
        depth = source = None
        if seq.depths is not None and seq.read_depth is not None:
            depth = _fit(seq.read_depth(seq.depths[i], i), size)
        K = seq.K[i : i + 1].float()
        if isinstance(self.pointmaps, SequenceDepth):
            source = self._source_depth(self.pointmaps.frame_depth(seq, i), image, K)
        out_image, out_K, depth = resize_sample(image[None], K, depth, self.resolution)
        return out_image[0], out_K[0], None if depth is None else depth[0], source

    def _source_depth(self, depth: np.ndarray, image: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """A pointmap source's depth ``[h, w]`` cropped and resized like ``image`` to ``[R, R]``: each output pixel the
        median of the valid depths in its footprint when at least ``MIN_VALID_SHARE`` of it is valid, else NaN (a
        nearest pick would lose every pixel that lands on one of stereo's fine holes)."""
        k = max(1, round(min(depth.shape) / self.resolution))
        fine = resize_sample(image[None], K, _fit(depth, tuple(image.shape[-2:])), self.resolution * k)[2]
        blocks = F.unfold(fine[:, None], k, stride=k)[0]  # [k*k, R*R]
        enough = torch.isfinite(blocks).float().mean(0) >= MIN_VALID_SHARE
        median = torch.where(enough, blocks.nanmedian(0).values, torch.full_like(blocks[0], float("nan")))
        return median.view(self.resolution, self.resolution)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        views, num_refs = choose_views(rng, len(self.sequences[index].images), self.num_views, self.ref_range)
        return self.sample(index, [int(v) for v in views], num_refs)

    def sample(self, index: int, views: list[int], num_refs: int) -> dict:
        """The sample of frames ``views`` of sequence ``index`` (the first ``num_refs`` are references)."""
        seq = self.sequences[index]
        loaded = [self._view(seq, i) for i in views]
        images = torch.stack([v[0] for v in loaded])
        K = torch.stack([v[1] for v in loaded])
        c2w = seq.c2w[torch.as_tensor(views)].float()
        depth = torch.stack([v[2] for v in loaded]) if all(v[2] is not None for v in loaded) else None
        if isinstance(self.pointmaps, SequenceDepth):
            pointmaps = unproject_depth(torch.stack([v[3] for v in loaded]), K, c2w).permute(0, 3, 1, 2)
        else:
            pointmaps = self.pointmaps(images, K, c2w, depth) if self.pointmaps is not None else None
        return make_sample(images, K, c2w, depth, pointmaps, num_refs, seq.name)
