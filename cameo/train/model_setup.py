"""The diffusion model a run trains: its architecture from the config (preset, CAMEO layer, prediction type) and an
optional warm start from an exported model folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from cameo.model import MultiViewUNet, get_spec, layer_name
from cameo.model.configs import ModelSpec
from cameo.train.config import TrainConfig


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


def _widen_inputs(source: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Source weights with input convolutions widened to ``own``'s input channels: the old channels keep their
    weights, the new ones (a prior added to the UNet input or the camera encoder) start at zero, so the
    warm-started model computes exactly what the source did until the new inputs are learned."""
    out = dict(source)
    for key, value in source.items():
        target = own.get(key)
        if (target is not None and value.ndim == 4 and target.ndim == 4 and value.shape[1] < target.shape[1]
                and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]):
            widened = torch.zeros_like(target)
            widened[:, :value.shape[1]] = value
            out[key] = widened
    return out


def warm_start(model: MultiViewUNet, folder: Path) -> None:
    """Copy the UNet weights (CAMEO head included) of an exported model folder into ``model``; input convolutions
    of a model with more conditioning inputs than the source are widened with zeros (:func:`_widen_inputs`)."""
    weights = folder / "unet"
    if not (weights / "config.json").is_file():
        raise FileNotFoundError(f"{weights}/config.json not found: --model.init-from must be an exported model folder")
    source = MultiViewUNet.from_pretrained(str(weights), local_files_only=True, torch_dtype=torch.float32)
    try:
        state = _widen_inputs(source.state_dict(), model.state_dict())
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{weights}: weights do not fit this model config: {err}") from None
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not fit this model config (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}); use the same preset and CAMEO head setting")
