"""Validation during training: views sampled from held-out samples, scored by PSNR."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from cameo.image_metrics import psnr
from cameo.model import PixelCodec
from cameo.sampling import sample_views
from cameo.train.components import Components
from cameo.train.config import TrainConfig


def psnr_validation(cfg: TrainConfig, model: torch.nn.Module, parts: Components, scheduler: DDPMScheduler) -> dict:
    """Mean PSNR of target views sampled (DDIM, ``val_ddim_steps``, CFG ``val_cfg_scale``) from the first view of
    each held-out sample; the 1-to-(F-1) setting of the paper."""
    codec = parts.codec if parts.codec is not None else PixelCodec()
    scores = []
    for index in range(len(parts.val_set)):
        item = parts.val_set[index]
        images, K, c2w = item["images"], item["K"], item["c2w"]
        generated = sample_views(model, codec, images[:1], K[:1], c2w[:1], K[1:], c2w[1:],
                                 steps=cfg.val_ddim_steps, cfg=cfg.val_cfg_scale, seed=cfg.seed + index,
                                 schedule=scheduler)
        scores.append(psnr(generated, images[1:]).mean())
    return {"val_psnr": float(torch.stack(scores).mean())} if scores else {}
