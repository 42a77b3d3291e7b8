"""Load an exported model folder (what ``cameo-train`` exports and ``assets/model/`` ships) for sampling.

Layout (docs/CONTRACTS.md, "Exported model folder"): ``unet/`` (``MultiViewUNet.save_pretrained``; the CAMEO head is
a submodule and is saved with it), ``scheduler/`` (the training ``DDPMScheduler``), optional ``vae/`` (the latent
codec's ``AutoencoderKL``; ``cameo-train``'s export currently names it ``autoencoder/``, accepted too; absent =
pixel space), optional ``cameo_head.safetensors`` (not needed for sampling), ``train_config.yaml`` (the run's
``TrainConfig``: image size ``data.resolution`` and views per model call ``data.num_views``), ``model_card.md``.

Only local files are read (``local_files_only``); a missing part raises :class:`ModelFolderError` naming it.

Default folder: ``$CAMEO_MODEL`` if set, else ``<repo>/assets/model`` found from this file's location
(``cameo/`` sits next to ``assets/`` in a source checkout and in an editable install, ``pip install -e .``).
A regular wheel install does not carry ``assets/``: set ``CAMEO_MODEL`` or pass the folder explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler

from cameo.atomic import atomic_dir
from cameo.model import AutoencoderCodec, PixelCodec, LatentCodec, MultiViewUNet
from cameo.train.config import ConfigError, TrainConfig, dump_config, load_config

CODEC_FOLDERS = ("vae", "autoencoder")  # contract name first; the second is what cameo-train's export writes
MAKE_ONE_HINT = ("pass --checkpoint PATH to an exported model folder (e.g. runs/demo-cpu/model), or train one with "
                 "`cameo-train --config demo-cpu` (it exports to runs/demo-cpu/model)")


class ModelFolderError(FileNotFoundError):
    """An exported model folder is missing or lacks a required part (the message names which)."""


@dataclass
class Pretrained:
    """Everything sampling needs from an exported folder; ``model`` is in eval mode on ``device``."""

    model: MultiViewUNet
    codec: LatentCodec
    schedule: DDPMScheduler
    image_size: int
    frames_per_group: int
    path: Path
    device: torch.device
    config: TrainConfig
    model_card: str | None = None


def default_model_dir() -> Path:
    """``$CAMEO_MODEL`` or the bundled ``<repo>/assets/model`` (resolved next to the ``cameo`` package)."""
    env = os.environ.get("CAMEO_MODEL")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "assets" / "model"


def bundled_model_missing() -> bool:
    """True when no model is configured (``$CAMEO_MODEL`` unset) and ``assets/model`` holds none yet."""
    return "CAMEO_MODEL" not in os.environ and not (default_model_dir() / "unet" / "config.json").is_file()


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an unavailable CUDA request raises ``ValueError``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (torch {torch.__version__}); "
                         "use --device cpu")
    return resolved


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ModelFolderError(f"{path} missing: {what}")
    return path


def load_pretrained(path: str | os.PathLike[str] | None = None, device: str | torch.device = "auto") -> Pretrained:
    """Load model, codec, training schedule and sampling sizes from an exported folder (default: bundled)."""
    bundled = path is None
    folder = Path(path) if path is not None else default_model_dir()
    if not folder.is_dir():
        what = "the bundled model is not there yet" if bundled else "no such model folder"
        raise ModelFolderError(f"{folder}: {what}; {MAKE_ONE_HINT}")
    _require(folder / "unet" / "config.json", "the multi-view UNet (unet/ from MultiViewUNet.save_pretrained)")
    _require(folder / "scheduler" / "scheduler_config.json", "the training noise schedule (scheduler/)")
    config_file = _require(folder / "train_config.yaml", "the training config (image size, views per group)")
    try:
        config = load_config(str(config_file))
    except ConfigError as err:
        raise ModelFolderError(f"{config_file}: unreadable training config: {err}") from None
    dev = resolve_device(device)
    model = MultiViewUNet.from_pretrained(str(folder / "unet"), local_files_only=True, torch_dtype=torch.float32).to(dev).eval()
    schedule = DDPMScheduler.from_pretrained(str(folder / "scheduler"), local_files_only=True)
    card = folder / "model_card.md"
    return Pretrained(
        model=model,
        codec=_load_codec(folder, model, dev),
        schedule=schedule,
        image_size=int(config.data.resolution),
        frames_per_group=int(config.data.num_views),
        path=folder,
        device=dev,
        config=config,
        model_card=card.read_text(encoding="utf-8") if card.is_file() else None,
    )


def _load_codec(folder: Path, model: MultiViewUNet, device: torch.device) -> LatentCodec:
    """Pixel space (folded by the model's image / sample size ratio, standardised as saved) for ``pixel`` models,
    else the folder's frozen ``AutoencoderKL``."""
    kind = model.config.codec
    if kind == "pixel":
        return PixelCodec(model.config.image_size // model.unet.config.sample_size, model.config.codec_shift,
                          model.config.codec_scale)
    for name in CODEC_FOLDERS:
        if (folder / name / "config.json").is_file():
            vae = AutoencoderKL.from_pretrained(str(folder / name), local_files_only=True, torch_dtype=torch.float32)
            return AutoencoderCodec(vae.to(device).eval().requires_grad_(False))
    raise ModelFolderError(f"{folder / CODEC_FOLDERS[0]} missing: the model denoises {kind} latents, so the folder "
                           f"needs the codec (vae/config.json + weights, AutoencoderKL.save_pretrained)")


def save_model_folder(
    folder: str | os.PathLike[str], model: MultiViewUNet, schedule: DDPMScheduler, config: TrainConfig,
    vae: AutoencoderKL | None = None,
) -> Path:
    """Write in-memory parts in the exported layout (tests and benchmarks with untrained weights; trained
    models come from ``cameo-train``'s export). ``config`` supplies ``data.resolution`` and ``data.num_views``."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.save_pretrained(str(tmp / "unet"), safe_serialization=True)
        schedule.save_pretrained(str(tmp / "scheduler"))
        if vae is not None:
            vae.save_pretrained(str(tmp / CODEC_FOLDERS[0]), safe_serialization=True)
        (tmp / "train_config.yaml").write_text(dump_config(config), encoding="utf-8")
    return folder
