"""Training data of a run: (re)generate the procedural set if missing, open it, hold out validation items, resize
to the model's resolution and cache codec latents.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from cameo.cameras import resize_with_intrinsics
from cameo.train.config import DataConfig, TrainConfig


def ensure_data(cfg: DataConfig, accelerator: Accelerator) -> Path:
    """The dataset folder; generated with ``cameo-data <generate...>`` (main process) when it is missing."""
    path = Path(cfg.path)
    if not path.exists():
        if not cfg.generate:
            raise FileNotFoundError(f"data.path {path} does not exist and data.generate is empty (nothing to run)")
        if accelerator.is_main_process:
            # generate into a temporary folder and rename: a killed generation never looks like a dataset
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            if tmp.exists():
                shutil.rmtree(tmp)
            args = [a.replace("{path}", str(tmp)) for a in cfg.generate]
            cmd = [sys.executable, "-m", "cameo.data", *args]
            print(f"generating training data: cameo-data {shlex.join(args)}", file=sys.stderr)
            subprocess.run(cmd, check=True)
            os.replace(tmp, path)
        accelerator.wait_for_everyone()
    return path


def open_dataset(cfg: DataConfig, path: Path) -> Dataset:
    """The ``cameo.data`` dataset named by ``cfg.source`` (sample dicts of docs/CONTRACTS.md)."""
    from cameo.data import open_dataset as open_named

    return open_named(cfg.source, path, num_views=cfg.num_views)


class Resized(Dataset):
    """Resizes images (area) and intrinsics of each item to ``size`` x ``size``; pointmaps stay as they are
    (correspondences resample them to the token grid)."""

    def __init__(self, base: Dataset, size: int):
        self.base, self.size = base, size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.base[index])
        if tuple(item["images"].shape[-2:]) != (self.size, self.size):
            item["images"], item["K"] = resize_with_intrinsics(item["images"], item["K"], (self.size, self.size))
        return item


class WithLatents(Dataset):
    """Adds precomputed codec latents (``latents [F,C,h,w]``) to every item of a deterministic dataset."""

    def __init__(self, base: Dataset, latents: torch.Tensor):
        self.base, self.latents = base, latents

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.base[index], "latents": self.latents[index]}


def encode_all(dataset: Dataset, codec: Any, device: torch.device, batch: int = 8) -> torch.Tensor:
    """Latents ``[N,F,C,h,w]`` of every item (codec posterior mode: deterministic)."""
    chunks = []
    with torch.no_grad():
        for start in tqdm(range(0, len(dataset), batch), desc="caching latents", unit="batch"):
            images = torch.stack([dataset[i]["images"] for i in range(start, min(start + batch, len(dataset)))])
            chunks.append(codec.encode(images.to(device)).float().cpu())
    return torch.cat(chunks)


def cached_latents(dataset: Dataset, codec: Any, cache: Path, key: str, accelerator: Accelerator) -> torch.Tensor:
    """Latents of ``dataset`` from ``cache`` when its key matches, else encoded (main process) and saved atomically."""
    if accelerator.is_main_process:
        stored = torch.load(cache, weights_only=True) if cache.is_file() else None
        if stored is None or stored.get("key") != key:
            latents = encode_all(dataset, codec, accelerator.device)
            tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"key": key, "latents": latents}, tmp)
            os.replace(tmp, cache)
    accelerator.wait_for_everyone()
    return torch.load(cache, weights_only=True)["latents"]


def codec_fingerprint(codec: Any) -> str:
    """Hash of the codec weights (a retrained autoencoder invalidates the latent cache)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(codec.vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def split_train_val(dataset: Dataset, val_items: int) -> tuple[Dataset, Dataset | None]:
    """The last ``val_items`` items are held out for validation."""
    n = len(dataset)
    if val_items <= 0:
        return dataset, None
    if val_items >= n:
        raise ValueError(f"data.val_scenes={val_items} leaves no training items (dataset has {n})")
    return Subset(dataset, range(n - val_items)), Subset(dataset, range(n - val_items, n))


def open_datasets(cfg: TrainConfig, codec: Any, accelerator: Accelerator) -> tuple[Dataset, Dataset | None]:
    """Training and validation sets of a run, resized, with cached latents when the codec is frozen."""
    path = ensure_data(cfg.data, accelerator)
    full = Resized(open_dataset(cfg.data, path), cfg.data.resolution)
    train_set, val_set = split_train_val(full, cfg.data.val_scenes)
    if codec is not None and cfg.model.cache_latents:
        key = f"{path.resolve()}|{len(train_set)}|{cfg.data.resolution}|{cfg.data.num_views}|{codec_fingerprint(codec)}"
        latents = cached_latents(train_set, codec, Path(cfg.output_dir) / "latents.pt", key, accelerator)
        train_set = WithLatents(train_set, latents)
    return train_set, val_set
