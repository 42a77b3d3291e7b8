"""Torch datasets yielding multi-view training samples (the sample dict of docs/CONTRACTS.md).

Each item holds ``F`` views of one scene, the first 1-3 of them references (``ref_mask``), with images in [0, 1],
pixel intrinsics, OpenCV ``c2w``, z-depth and world pointmaps (NaN where invalid).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cameo.cameras import center_crop_with_intrinsics, resize_with_intrinsics, unproject_depth

from .shards import FORMAT


def choose_views(
    rng: np.random.Generator, available: int, num_views: int, ref_range: tuple[int, int]
) -> tuple[np.ndarray, int]:
    """Pick ``num_views`` distinct view ids and how many of them (the first ones) are references."""
    if available < num_views:
        raise ValueError(f"scene has {available} views, fewer than the {num_views} requested")
    views = rng.choice(available, size=num_views, replace=False)
    lo, hi = ref_range
    num_refs = int(rng.integers(max(1, lo), min(hi, num_views - 1) + 1))
    return views, num_refs


def resize_sample(
    images: torch.Tensor, K: torch.Tensor, depth: torch.Tensor | None, resolution: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Centre-crop to a square and resize to ``resolution``; depth uses nearest sampling (no mixed surfaces)."""
    h, w = images.shape[-2:]
    side = min(h, w)
    if (h, w) != (side, side):
        images, K_c = center_crop_with_intrinsics(images, K, (side, side))
        if depth is not None:
            depth = center_crop_with_intrinsics(depth[:, None], K, (side, side))[0][:, 0]
        K = K_c
    if side != resolution:
        images, K = resize_with_intrinsics(images, K, (resolution, resolution))
        if depth is not None:
            depth = F.interpolate(depth[:, None], size=(resolution, resolution), mode="nearest-exact")[:, 0]
    return images.clamp(0, 1), K, depth


def make_sample(
    images: torch.Tensor,
    K: torch.Tensor,
    c2w: torch.Tensor,
    depth: torch.Tensor | None,
    pointmaps: torch.Tensor | None,
    num_refs: int,
    scene_id: str,
) -> dict:
    """Assemble the contract's sample dict (references first)."""
    f = images.shape[0]
    sample = {
        "images": images.float(),
        "K": K.float(),
        "c2w": c2w.float(),
        "ref_mask": torch.arange(f) < num_refs,
        "scene_id": scene_id,
    }
    if depth is not None:
        sample["depth"] = depth.float()
        if pointmaps is None:
            pointmaps = unproject_depth(depth.float(), K.float(), c2w.float()).permute(0, 3, 1, 2)
    if pointmaps is not None:
        sample["pointmaps"] = pointmaps.float()
    return sample


class ProceduralDataset(Dataset):
    """Samples from a dataset written by :func:`cameo.data.shards.generate_dataset` (one item per scene).

    The views of item ``i`` are drawn from ``(seed, epoch, i)``; call :meth:`set_epoch` to see new view subsets.
    """

    def __init__(
        self,
        root: Path | str,
        num_views: int = 4,
        ref_range: tuple[int, int] = (1, 3),
        resolution: int | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path} not found; generate the dataset with `cameo-data generate`")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{manifest_path}: field 'format' is {manifest.get('format')!r}, expected {FORMAT!r}")
        if not manifest.get("complete"):
            raise ValueError(f"{manifest_path}: dataset is incomplete; rerun the same `cameo-data generate` to finish")
        self.config = manifest["config"]
        self.shards = manifest["shards"]
        self.num_views, self.ref_range, self.seed, self.epoch = num_views, ref_range, seed, 0
        self.resolution = resolution or self.config["resolution"]
        self._starts = np.array([s["first"] for s in self.shards])
        self._arrays: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self.config["num_scenes"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard(self, k: int) -> dict[str, np.ndarray]:
        if k not in self._arrays:  # memory-mapped: opened once per worker process, pages read on demand
            folder = self.root / self.shards[k]["path"]
            self._arrays[k] = {f: np.load(folder / f"{f}.npy", mmap_mode="r") for f in ("rgb", "depth", "K", "c2w")}
            self._arrays[k]["ids"] = json.loads((folder / "scene_ids.json").read_text())
        return self._arrays[k]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = int(np.searchsorted(self._starts, index, side="right") - 1)
        arrays, local = self._shard(k), index - self.shards[k]["first"]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        views, num_refs = choose_views(rng, arrays["rgb"].shape[1], self.num_views, self.ref_range)
        images = torch.from_numpy(np.ascontiguousarray(arrays["rgb"][local][views])).permute(0, 3, 1, 2) / 255.0
        K = torch.from_numpy(np.array(arrays["K"][local][views]))
        c2w = torch.from_numpy(np.array(arrays["c2w"][local][views]))
        depth = torch.from_numpy(np.array(arrays["depth"][local][views]))
        images, K, depth = resize_sample(images, K, depth, self.resolution)
        return make_sample(images, K, c2w, depth, None, num_refs, arrays["ids"][local])
