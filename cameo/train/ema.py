"""Exponential moving average of the UNet weights (diffusers ``EMAModel``), kept in every checkpoint.

A from-scratch model trained with a constant learning rate samples noticeably cleaner from the average of its
recent weights than from the last iterate; the average is what validation, snapshots and exports use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel

from cameo.atomic import write_text_atomic
from cameo.train.checkpoint import load_model_weights, save_module
from cameo.train.config import TrainConfig

EMA_WEIGHTS = "unet_ema"
EMA_STATE = "ema_state.json"


def make_ema(cfg: TrainConfig, model: torch.nn.Module, checkpoint: Path | None, step: int) -> EMAModel | None:
    """The moving average of ``model`` for ``cfg`` (None when ``optim.ema_decay`` is 0).

    Restored from ``checkpoint`` when it holds one; otherwise it starts from the current weights at optimiser
    step ``step``, so switching it on when resuming a run equals a run that had it from the start with
    ``ema_after_step`` at that step.
    """
    decay = cfg.optim.ema_decay
    if decay == 0:
        return None
    if not 0 < decay < 1:
        raise ValueError(f"optim.ema_decay must be in [0, 1), got {decay}")
    ema = EMAModel(model.parameters(), decay=decay, update_after_step=cfg.optim.ema_after_step, foreach=True)
    ema.optimization_step = step
    if checkpoint is not None and (checkpoint / EMA_STATE).is_file():
        # decay and start step come from the config; the checkpoint holds the averaged weights and the counter
        weights = load_model_weights(checkpoint, EMA_WEIGHTS)
        ema.shadow_params = [weights[name].to(p.device, p.dtype) for name, p in model.named_parameters()]
        ema.optimization_step = json.loads((checkpoint / EMA_STATE).read_text())["optimization_step"]
    return ema


def save_ema(ema: EMAModel, model: torch.nn.Module, folder: Path) -> None:
    """Write the averaged weights as ``folder/unet_ema`` (same layout as ``unet``) and the counters."""
    with averaged_weights(ema, model):
        save_module(model, folder, EMA_WEIGHTS)
    counters = {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}
    write_text_atomic(folder / EMA_STATE, json.dumps(counters, indent=2))


@contextmanager
def averaged_weights(ema: EMAModel | None, model: torch.nn.Module) -> Iterator[None]:
    """Temporarily load the averaged weights into ``model`` (no-op without an average)."""
    if ema is None:
        yield
        return
    params = list(model.parameters())
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)
