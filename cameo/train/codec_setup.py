"""The frozen latent codec a run trains on: pixel space, the VAE of a ``--model.pretrained`` Stable Diffusion folder,
or the run's own small autoencoder (trained first by ``cameo-train autoencoder``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cameo.model import build_codec, get_spec
from cameo.model.codec import load_autoencoder_codec
from cameo.train.config import TrainConfig


def autoencoder_dir(cfg: TrainConfig) -> Path | None:
    """Folder of the small autoencoder a latent preset trains itself (None: pixel space or the SD VAE)."""
    if get_spec(cfg.model.preset).codec == "pixel" or cfg.model.pretrained is not None:
        return None
    if cfg.model.codec_path:
        return Path(cfg.model.codec_path)
    if cfg.model.init_from:
        return Path(cfg.model.init_from) / "vae"
    return Path(cfg.output_dir) / "autoencoder"


def load_frozen_codec(cfg: TrainConfig, device: torch.device) -> Any:
    """The frozen latent codec of a run: pixel space, the SD VAE of ``pretrained``, or the trained small
    autoencoder (which must exist: ``cameo-train autoencoder`` makes it)."""
    spec = get_spec(cfg.model.preset)
    if spec.codec == "pixel":
        return build_codec(spec)
    folder = autoencoder_dir(cfg)
    if folder is None:
        codec = build_codec(spec, cfg.model.pretrained)
    else:
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder}/config.json missing: preset {spec.name!r} denoises latents of a small autoencoder; train "
                f"it first with `cameo-train autoencoder --config <this config>` or pass --model.codec-path")
        codec = load_autoencoder_codec(folder)
    codec.vae.requires_grad_(False).eval().to(device)
    return codec
