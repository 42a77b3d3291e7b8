"""Training data of a run: generate the procedural set if missing (``cameo.data.shards.generate_dataset``, the
API behind ``cameo-data generate``), open it, hold out validation scenes, and index items by epoch so that every
pass draws new view subsets while a resumed run draws exactly the same ones.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset

from cameo.train.config import DataConfig


def procedural_root(cfg: DataConfig, kind: str) -> Path:
    return Path(cfg.path) / kind


def ensure_data(cfg: DataConfig, state: Any) -> None:
    """Generate the missing procedural scene sets (main process; the generator resumes an interrupted run and
    marks a set complete only at the end). ``state``: an ``Accelerator`` or ``PartialState``."""
    if cfg.source != "procedural":
        return
    from cameo.data.shards import DatasetConfig, generate_dataset

    missing = [k for k in cfg.kinds if not _complete(procedural_root(cfg, k))]
    if missing and not cfg.generate:
        raise FileNotFoundError(f"{procedural_root(cfg, missing[0])}: no complete dataset and data.generate is off")
    if missing and state.is_main_process:
        for kind in missing:
            generate_dataset(procedural_root(cfg, kind), DatasetConfig(
                kind=kind, num_scenes=cfg.scenes, seed=cfg.scene_seed, views=cfg.scene_views,
                resolution=cfg.resolution), workers=cfg.generate_workers)
    if missing:
        state.wait_for_everyone()


def _complete(root: Path) -> bool:
    import json

    manifest = root / "manifest.json"
    return manifest.is_file() and bool(json.loads(manifest.read_text()).get("complete"))


def open_parts(cfg: DataConfig, seed: int) -> list[Dataset]:
    """One dataset per procedural kind, or the real-dataset loader ``cameo.data.loaders.<source>``."""
    ref_range = (cfg.min_refs, cfg.max_refs)
    if cfg.source == "procedural":
        from cameo.data.dataset import ProceduralDataset

        return [ProceduralDataset(procedural_root(cfg, kind), num_views=cfg.num_views, ref_range=ref_range,
                                  resolution=cfg.resolution, seed=seed) for kind in cfg.kinds]
    try:
        loader = importlib.import_module(f"cameo.data.loaders.{cfg.source}")
    except ModuleNotFoundError as error:
        raise ValueError(f"data.source {cfg.source!r}: no loader module cameo.data.loaders.{cfg.source}") from error
    return [loader.open_dataset(Path(cfg.path), num_views=cfg.num_views, ref_range=ref_range,
                                resolution=cfg.resolution, seed=seed)]


class EpochIndexed(Dataset):
    """Items addressed as ``(epoch, index)``: sets the epoch of every part (new view subsets per pass) before
    reading, so the draw depends on the position in the stream only, also inside DataLoader workers."""

    def __init__(self, parts: list[Dataset], held_out: int):
        per_part = -(-held_out // len(parts)) if held_out > 0 else 0
        if any(len(p) <= per_part for p in parts):
            raise ValueError(f"data.val_scenes={held_out} leaves no training scenes in {[len(p) for p in parts]}")
        self.parts = parts
        # the last scenes of every part are held out for validation
        self.train = ConcatDataset([Subset(p, range(len(p) - per_part)) for p in parts])
        self.val = HeldOut(self, ConcatDataset([Subset(p, range(len(p) - per_part, len(p))) for p in parts])) \
            if per_part else None

    def __len__(self) -> int:
        return len(self.train)

    def read(self, dataset: Dataset, epoch: int, index: int) -> dict:
        for part in self.parts:
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)
        return dataset[index]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        return self.read(self.train, *key)


class HeldOut(Dataset):
    """Validation scenes, always read at epoch 0 (the same views at every validation)."""

    def __init__(self, owner: EpochIndexed, scenes: Dataset):
        self.owner, self.scenes = owner, scenes

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        return self.owner.read(self.scenes, 0, index)


def open_datasets(cfg: DataConfig, seed: int, state: Any) -> tuple[EpochIndexed, Dataset | None]:
    """Training set (indexed by ``(epoch, index)``) and held-out validation set of a run."""
    ensure_data(cfg, state)
    data = EpochIndexed(open_parts(cfg, seed), cfg.val_scenes)
    return data, data.val
