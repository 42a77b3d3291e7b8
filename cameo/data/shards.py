"""Sharded on-disk procedural dataset: reproducible, resumable, parallel generation with a JSON manifest.

Layout: ``root/manifest.json`` and ``root/shard_00000/{rgb.npy, depth.npy, K.npy, c2w.npy, scene_ids.json}``
(rgb uint8 [S,V,H,W,3], depth float32 z-depth [S,V,H,W] with NaN = no surface, OpenCV K / c2w float32). Each shard
is written into a temporary folder and renamed into place, so an existing shard folder is always complete and a
rerun skips it. Plain ``.npy`` files load with memory mapping for cheap random access.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cameo.atomic import atomic_dir, write_json_atomic

from .procedural import KINDS, generate_scene

FORMAT = "cameo-procedural-v1"


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that determines the dataset's content (a rerun must use the same values to resume)."""

    kind: str = "object"
    num_scenes: int = 1000
    seed: int = 0
    views: int = 8
    resolution: int = 64
    supersample: int = 2
    shard_size: int = 50
    meshes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("num_scenes", "views", "resolution", "supersample", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def shard_name(k: int) -> str:
    return f"shard_{k:05d}"


def _render_shard(root: str, shard: int, config: DatasetConfig) -> int:
    """Render one shard into a temp folder and rename it into place; returns the number of scenes."""
    torch.set_num_threads(1)
    first = shard * config.shard_size
    indices = range(first, min(first + config.shard_size, config.num_scenes))
    scenes = [
        generate_scene(config.kind, config.seed, i, config.views, config.resolution, config.supersample,
                       meshes=config.meshes)
        for i in indices
    ]
    with atomic_dir(Path(root) / shard_name(shard), overwrite=True) as tmp:
        for field in ("rgb", "depth", "K", "c2w"):
            np.save(tmp / f"{field}.npy", np.stack([getattr(s, field) for s in scenes]))
        (tmp / "scene_ids.json").write_text(json.dumps([s.scene_id for s in scenes]))
    return len(scenes)


def generate_dataset(root: Path | str, config: DatasetConfig, workers: int = 1, progress: bool = True) -> Path:
    """Generate (or resume) a sharded dataset under ``root``; returns the manifest path.

    Scene ``k`` depends only on ``(seed, k)``, so the result does not depend on ``workers`` or on interruptions.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    wanted = {"format": FORMAT, "config": asdict(config)}
    wanted["config"]["meshes"] = list(config.meshes)
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("config") != wanted["config"]:
            raise ValueError(
                f"{manifest_path}: existing dataset was made with config {old.get('config')}, not "
                f"{wanted['config']}; use another output folder or the same options to resume"
            )
    write_json_atomic(manifest_path, {**wanted, "complete": False, "shards": []})

    num_shards = -(-config.num_scenes // config.shard_size)
    todo = [k for k in range(num_shards) if not (root / shard_name(k)).is_dir()]
    done_scenes = config.num_scenes - sum(
        min(config.shard_size, config.num_scenes - k * config.shard_size) for k in todo
    )
    bar = tqdm(total=config.num_scenes, initial=done_scenes, unit="scene", desc=f"{config.kind} scenes",
               disable=not progress)
    if workers <= 1:
        for k in todo:
            bar.update(_render_shard(str(root), k, config))
    else:  # spawn: forked workers can deadlock on OpenMP state inherited from the parent's torch
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(_render_shard, str(root), k, config) for k in todo]):
                bar.update(fut.result())
    bar.close()

    shards = [
        {"path": shard_name(k), "first": k * config.shard_size,
         "count": min(config.shard_size, config.num_scenes - k * config.shard_size)}
        for k in range(num_shards)
    ]
    write_json_atomic(manifest_path, {**wanted, "complete": True, "shards": shards})
    return manifest_path
