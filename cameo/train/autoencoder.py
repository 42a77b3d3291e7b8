"""The ``autoencoder`` stage: trains the small ``AutoencoderKL`` of latent CPU presets on the run's own images,
then sets its ``scaling_factor`` to 1 / std of the latents (unit-variance latents, as SD's 0.18215 does for its
VAE) and saves it with ``save_pretrained`` (atomically) for the diffusion stage to load frozen.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from cameo.atomic import atomic_dir
from cameo.image_metrics import psnr
from cameo.model import get_spec, small_autoencoder
from cameo.train.codec_setup import autoencoder_dir
from cameo.train.config import TrainConfig
from cameo.train.data import open_datasets


def _images(dataset, keys: list[tuple[int, int]], views: torch.Tensor) -> torch.Tensor:
    """One view (``views[n]`` of the sample's F) of each ``(epoch, index)`` item."""
    return torch.stack([dataset[key]["images"][int(v)] for key, v in zip(keys, views)])


def train_autoencoder(cfg: TrainConfig, accelerator) -> Path:
    """Train, calibrate and save the small autoencoder of ``cfg``; returns its folder.

    ``accelerator``: an ``Accelerator`` or ``PartialState`` (device, main process); one process trains it.
    """
    folder = autoencoder_dir(cfg)
    if folder is None:
        raise ValueError(f"preset {cfg.model.preset!r} has no small autoencoder to train (pixel space or SD VAE)")
    ae_cfg = cfg.autoencoder
    set_seed(cfg.seed)
    vae = small_autoencoder(get_spec(cfg.model.preset)).to(accelerator.device).train()
    train_set, val_set = open_datasets(cfg.data, cfg.seed, accelerator)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=ae_cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    log = Path(cfg.output_dir) / "autoencoder_metrics.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    bar = tqdm(range(ae_cfg.steps), desc="autoencoder", dynamic_ncols=True)
    for step in bar:
        indices = torch.randint(len(train_set), (ae_cfg.batch_size,), generator=gen)
        views = torch.randint(cfg.data.num_views, (ae_cfg.batch_size,), generator=gen)
        keys = [(step, int(i)) for i in indices]  # epoch = step: every step sees new view subsets
        x = _images(train_set, keys, views).to(accelerator.device) * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=None)).sample
        rec_loss = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        loss = rec_loss + ae_cfg.kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(rec=f"{rec_loss.item():.4f}")
        if (step + 1) % 50 == 0 or step + 1 == ae_cfg.steps:
            with open(log, "a") as f:
                f.write(json.dumps({"step": step + 1, "loss": loss.item(), "recon": rec_loss.item()}) + "\n")
    vae.eval()
    metrics = _calibrate_and_measure(vae, train_set, val_set, cfg, accelerator.device)
    with open(log, "a") as f:
        f.write(json.dumps({"step": ae_cfg.steps, **metrics}) + "\n")
    with atomic_dir(folder, overwrite=True) as tmp:
        vae.to("cpu").save_pretrained(str(tmp), safe_serialization=True)
    return folder


@torch.no_grad()
def _calibrate_and_measure(vae: AutoencoderKL, train_set, val_set, cfg: TrainConfig, device) -> dict[str, float]:
    """Set ``scaling_factor`` = 1 / std of training latents; return it and the held-out reconstruction PSNR."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    count = min(64, len(train_set))
    indices = torch.randperm(len(train_set), generator=gen)[:count]
    images = _images(train_set, [(0, int(i)) for i in indices], torch.zeros(count, dtype=torch.long)).to(device)
    std = vae.encode(images * 2 - 1).latent_dist.mode().std()
    vae.register_to_config(scaling_factor=float(1.0 / std))
    result = {"scaling_factor": float(1.0 / std)}
    if val_set is not None:
        held = torch.cat([val_set[i]["images"] for i in range(len(val_set))]).to(device)
        recon = (vae.decode(vae.encode(held * 2 - 1).latent_dist.mode()).sample + 1) / 2
        result["val_recon_psnr"] = float(psnr(recon, held).mean())
    return result
