"""Builds the real training components from a config: the ``MultiViewUNet``, its codec, the CAMEO objective,
the datasets, and the validation that samples held-out views with ``cameo.sampling.sample_views``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import extract_model_from_parallel
from diffusers import AutoencoderKL, DDPMScheduler

from cameo.cameo_loss import cameo_loss
from cameo.model import AutoencoderCodec, MultiViewUNet, PixelCodec, build_codec, build_model, get_spec, layer_name
from cameo.model.attention import CapturedAttention
from cameo.model.configs import ModelSpec
from cameo.train.components import Components
from cameo.train.config import TrainConfig
from cameo.train.data import open_datasets


def cameo_layer_name(layer: str) -> str:
    """A CAMEO layer given as the paper's SD2.1 layer number ("10") or a full module name -> the module name."""
    return layer_name(int(layer)) if layer.strip().isdigit() else layer


def model_spec(cfg: TrainConfig) -> ModelSpec:
    """The preset's architecture with this run's CAMEO layer (None when CAMEO is off) and prediction type."""
    spec = get_spec(cfg.model.preset)
    if spec.name == "sd21" and cfg.model.pretrained is None:
        raise ValueError("preset sd21 needs --model.pretrained PATH, a local diffusers Stable Diffusion 2.1 folder "
                         "(unet/ and vae/); nothing is downloaded")
    layer = cameo_layer_name(cfg.cameo.layer) if cfg.cameo.enabled else None
    if cfg.data.resolution % spec.latent_downsample:
        raise ValueError(f"data.resolution {cfg.data.resolution} is not a multiple of the {spec.name} codec's "
                         f"downsampling {spec.latent_downsample}")
    return dataclasses.replace(spec, cameo_layer=layer, prediction_type=cfg.diffusion.prediction_type)


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
        codec = AutoencoderCodec(AutoencoderKL.from_pretrained(str(folder), local_files_only=True))
    codec.vae.requires_grad_(False).eval().to(device)
    return codec


class CameoObjective:
    """CAMEO loss of the captured layer against token correspondences of the sample's pointmaps (fp32).

    The projection head is ``model.cameo_head`` (a submodule of the UNet, so it is optimised and saved with it).
    """

    def __init__(self, model: MultiViewUNet, tau: float, loss: str):
        if model.cameo_head is None:
            raise ValueError("the model was built without a CAMEO layer")
        self.model, self.tau, self.loss = model, tau, loss

    def __call__(self, captured: CapturedAttention, pointmaps: torch.Tensor) -> torch.Tensor:
        from cameo.correspondence import token_correspondences

        height, width = pointmaps.shape[-2:]
        tokens = captured.q.shape[2] // captured.num_views
        rows = round(math.sqrt(tokens * height / width))
        corr = token_correspondences(pointmaps, (rows, tokens // rows), tau=self.tau)
        device = captured.q.device
        return cameo_loss(captured, corr.index.to(device), corr.valid.to(device), self.model.cameo_head, self.loss)


def multiview_forward(layer: str | None):
    """The loop's forward: plain model call, or one that captures q/k of ``layer`` for the CAMEO loss."""

    def forward(model, sample, timesteps, plucker, ref_mask, drop_camera, want_attention):
        if not want_attention:
            return model(sample, timesteps, plucker, ref_mask, drop_camera), None
        core = extract_model_from_parallel(model)
        with core.attention_control(capture=[layer]) as control:
            prediction = model(sample, timesteps, plucker, ref_mask, drop_camera)
        return prediction, control.store[layer]

    return forward


def warm_start(model: MultiViewUNet, folder: Path) -> None:
    """Copy the UNet weights (CAMEO head included) of an exported model folder into ``model``."""
    weights = folder / "unet"
    if not (weights / "config.json").is_file():
        raise FileNotFoundError(f"{weights}/config.json not found: --model.init-from must be an exported model folder")
    source = MultiViewUNet.from_pretrained(str(weights), local_files_only=True, torch_dtype=torch.float32)
    try:
        missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{weights}: weights do not fit this model config: {err}") from None
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not fit this model config (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}); use the same preset and CAMEO head setting")


def build_components(cfg: TrainConfig, accelerator: Accelerator) -> Components:
    """Model, codec, CAMEO objective and datasets of ``cfg`` (used by ``cameo-train``)."""
    spec = model_spec(cfg)
    model = build_model(spec, cfg.model.pretrained, cameo_head=cfg.cameo.head)
    if cfg.model.init_from:
        warm_start(model, Path(cfg.model.init_from))
    codec = load_frozen_codec(cfg, accelerator.device)
    train_set, val_set = open_datasets(cfg.data, cfg.seed, accelerator)
    folder = autoencoder_dir(cfg)
    return Components(
        unet=model,
        forward=multiview_forward(spec.cameo_layer),
        train_set=train_set,
        val_set=val_set,
        cameo=CameoObjective(model, cfg.cameo.tau, cfg.cameo.loss) if cfg.cameo.enabled else None,
        codec=codec,
        export_folders={"vae": folder} if folder is not None else {},
    )


def psnr_validation(cfg: TrainConfig, model: torch.nn.Module, parts: Components, scheduler: DDPMScheduler) -> dict:
    """Mean PSNR of target views sampled (DDIM, ``val_ddim_steps``, CFG ``val_cfg_scale``) from the first view of
    each held-out sample; the 1-to-(F-1) setting of the paper."""
    from cameo.eval.metrics import psnr
    from cameo.sampling import sample_views

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
