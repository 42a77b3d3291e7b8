"""Atomic, resumable checkpoints on top of ``accelerate.Accelerator.save_state``.

Layout of one checkpoint folder ``<run>/checkpoints/step-0000100/``:
  unet/                       diffusers ``save_pretrained`` folder of the multi-view UNet (what samplers load)
  unet_ema/, ema_state.json   moving average of the UNet weights and its counters (runs with ``optim.ema_decay``)
  cameo_head.safetensors      CAMEO projection head weights (CAMEO runs with a learned head only)
  scheduler/                  diffusers DDPMScheduler config (the noise schedule the sampler must reproduce)
  optimizer.bin, random_states_<rank>.pkl, ...   accelerate state (optimiser, RNG of python/numpy/torch/cuda)
  trainer_state.json          step, data position, NaN-skip count, last metrics
The folder is written under a temporary name and renamed when complete; ``checkpoints/latest`` (replaced
atomically) names the newest complete one, so a kill at any moment leaves the previous checkpoint valid.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from cameo.atomic import replace_dir, write_text_atomic

TRAINER_STATE = "trainer_state.json"
LATEST = "latest"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def register_model_io(accelerator: Accelerator, names: list[str]) -> None:
    """Make ``save_state``/``load_state`` store prepared models by name: diffusers models as ``save_pretrained``
    folders (loadable on their own by the sampler), other modules as ``<name>.safetensors``.

    ``names`` follows the order in which models were passed to ``accelerator.prepare``.
    """

    def save_hook(models: list[torch.nn.Module], weights: list[dict], output_dir: str) -> None:
        for name, model in zip(names, models):
            if accelerator.is_main_process:
                save_module(accelerator.unwrap_model(model), Path(output_dir), name)
        weights.clear()  # accelerate must not write its own copy of the weights

    def load_hook(models: list[torch.nn.Module], input_dir: str) -> None:
        for name, model in zip(names, list(models)):
            accelerator.unwrap_model(model).load_state_dict(load_model_weights(Path(input_dir), name))
        models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_module(module: torch.nn.Module, folder: Path, name: str) -> None:
    """Save ``module`` as ``folder/name/`` (diffusers ``save_pretrained``) or ``folder/name.safetensors``."""
    if hasattr(module, "save_pretrained"):
        module.save_pretrained(folder / name, safe_serialization=True)
    else:
        state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
        save_file(state, str(folder / f"{name}.safetensors"))


def load_model_weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """State dict of model ``name`` saved by ``register_model_io`` in a checkpoint or exported model folder."""
    single = folder / f"{name}.safetensors"
    if single.is_file():
        return load_file(str(single))
    shards = sorted((folder / name).glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"{folder}: no weights for {name!r} ({single.name} or {name}/*.safetensors)")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_file(str(shard)))
    return state


def save_checkpoint(
    accelerator: Accelerator, run_dir: Path, step: int, trainer_state: dict[str, Any], keep: int, extra: Any = None
) -> Path:
    """Write checkpoint ``step`` atomically; ``extra(folder)`` (main process) adds files such as the scheduler.

    Every process must call this (accelerate saves each rank's RNG state). Returns the final folder.
    """
    root = checkpoint_dir(run_dir)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)  # leftover of a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if extra is not None:
            extra(tmp)
        write_text_atomic(tmp / TRAINER_STATE, json.dumps(trainer_state, indent=2))
        replace_dir(tmp, final)
        write_text_atomic(root / LATEST, final.name)
        prune_checkpoints(root, keep)
    accelerator.wait_for_everyone()
    return final


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints (the newest is never deleted)."""
    complete = sorted(p for p in root.glob("step-*") if (p / TRAINER_STATE).is_file())
    for old in complete[: max(len(complete) - max(keep, 1), 0)]:
        shutil.rmtree(old)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = checkpoint_dir(run_dir)
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / TRAINER_STATE).is_file():
            return candidate
    complete = sorted(p for p in root.glob("step-*") if (p / TRAINER_STATE).is_file())
    return complete[-1] if complete else None


def load_checkpoint(accelerator: Accelerator, folder: Path) -> dict[str, Any]:
    """Restore models, optimiser and RNG states from ``folder``; returns its trainer state."""
    accelerator.load_state(str(folder))
    return json.loads((Path(folder) / TRAINER_STATE).read_text())
