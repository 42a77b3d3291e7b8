"""Training data of a run: generate the procedural set if missing (``cameo.data.shards.generate_dataset``, the
API behind ``cameo-data generate``), open it with the pointmap source CAMEO needs (``data.pointmaps``; stereo
pointmaps computed once before training), hold out validation scenes, and index items by epoch so that every pass
draws new view subsets while a resumed run draws exactly the same ones.
"""

from __future__ import annotations

import importlib
import sys
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


POINTMAP_OPTIONS = ("data.pointmaps stereo (the project's two-view stereo, cached; needs no weights), "
                    "data.pointmaps vggt with data.vggt_checkpoint PATH (a local VGGT-1B model.pt), data.pointmaps "
                    "dataset (datasets with depth: procedural, co3d), or CAMEO off (--cameo.no-enabled)")


def open_parts(cfg: DataConfig, seed: int, cameo: bool = False, run_dir: Path | None = None,
               state: Any = None) -> list[Dataset]:
    """One dataset per procedural kind, or the real-dataset loader ``cameo.data.loaders.<source>`` with the pointmap
    source of ``data.pointmaps`` when ``cameo`` needs one (stereo pointmaps are computed here, by the main process
    of ``state``)."""
    ref_range = (cfg.min_refs, cfg.max_refs)
    if cfg.source == "procedural":
        from cameo.data.dataset import ProceduralDataset

        if cameo and cfg.pointmaps not in ("auto", "dataset"):
            raise ValueError(f"data.pointmaps {cfg.pointmaps!r}: procedural data has exact depth; use dataset (or "
                             "auto) with data.source procedural")
        return [ProceduralDataset(procedural_root(cfg, kind), num_views=cfg.num_views, ref_range=ref_range,
                                  resolution=cfg.resolution, seed=seed) for kind in cfg.kinds]
    try:
        loader = importlib.import_module(f"cameo.data.loaders.{cfg.source}")
    except ModuleNotFoundError as error:
        raise ValueError(f"data.source {cfg.source!r}: no loader module cameo.data.loaders.{cfg.source}") from error
    part = loader.open_dataset(Path(cfg.path), num_views=cfg.num_views, ref_range=ref_range,
                               resolution=cfg.resolution, seed=seed)
    if cameo:
        part.pointmaps = pointmap_source(cfg, part.has_depth, run_dir or Path("."))
        _prepare(part, state)
    return [part]


def pointmap_source(cfg: DataConfig, has_depth: bool, run_dir: Path) -> Any:
    """The source ``data.pointmaps`` names for a real dataset (None: the dataset's own depth); a clear error, naming
    the options, when it cannot give CAMEO pointmaps."""
    choice = cfg.pointmaps if cfg.pointmaps != "auto" else ("dataset" if has_depth else "stereo")
    where = f"data.source {cfg.source!r} at {cfg.path}"
    if choice == "none" or (choice == "dataset" and not has_depth):
        reason = "has no depth maps" if choice == "dataset" else "is given no pointmap source (data.pointmaps none)"
        raise ValueError(f"CAMEO (cameo.enabled) needs pointmaps, but {where} {reason}; choose {POINTMAP_OPTIONS}")
    if choice == "dataset":
        return None
    cache = Path(cfg.pointmap_cache) if cfg.pointmap_cache else run_dir / "pointmaps"
    if choice == "vggt":
        if not cfg.vggt_checkpoint:
            raise ValueError(f"data.pointmaps vggt needs data.vggt_checkpoint (a local VGGT-1B model.pt); or choose "
                             f"{POINTMAP_OPTIONS}")
        from cameo.data.frame_depth import VGGTDepth
        from cameo.data.pointmaps import VGGTPointmaps

        try:
            vggt = VGGTPointmaps.from_checkpoint(cfg.vggt_checkpoint)
        except ImportError as error:  # the vggt package is not on PyPI: say how to get it, no traceback
            raise ValueError(f"data.pointmaps vggt: {error}") from error
        return VGGTDepth(vggt, cache, cfg.pointmap_max_side, cfg.pointmap_neighbours, cfg.vggt_checkpoint)
    from cameo.data.stereo_pointmaps import StereoPointmaps

    return StereoPointmaps(cache, cfg.pointmap_max_side, cfg.pointmap_neighbours)


def _prepare(part: Any, state: Any) -> None:
    """Compute the missing cached pointmaps (stereo, VGGT) of every sequence once (main process; the others wait),
    before training."""
    from cameo.data.frame_depth import CachedDepth

    if not isinstance(part.pointmaps, CachedDepth):
        return
    if state is None or state.is_main_process:
        for name, done in part.pointmaps.prepare(part.sequences).items():
            print(f"{part.pointmaps.kind} pointmaps of {name}: {done['frames']} frames in {done['seconds']:.1f} s, "
                  f"{100 * done['valid_share']:.1f} % of pixels valid", file=sys.stderr)
    if state is not None:
        state.wait_for_everyone()


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


def open_datasets(cfg: DataConfig, seed: int, state: Any, cameo: bool = False,
                  run_dir: Path | None = None) -> tuple[EpochIndexed, Dataset | None]:
    """Training set (indexed by ``(epoch, index)``) and held-out validation set of a run; ``cameo``: samples carry
    pointmaps (``data.pointmaps``; cached stereo under ``run_dir/pointmaps`` unless ``data.pointmap_cache``)."""
    ensure_data(cfg, state)
    data = EpochIndexed(open_parts(cfg, seed, cameo, run_dir, state), cfg.val_scenes)
    return data, data.val
