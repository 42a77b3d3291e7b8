"""The exported model folder and its one owner, :class:`CameoModel` (what ``cameo-train`` exports, ``cameo-recon``,
the app and ``cameo-eval`` load, and ``assets/model/`` ships), in the way a diffusers pipeline owns its parts.

Layout (docs/CONTRACTS.md, "Exported model folder"): ``unet/`` (``MultiViewUNet.save_pretrained``; the CAMEO head
is a submodule and is saved with it), ``scheduler/`` (the training ``DDPMScheduler``), ``vae/`` (the latent codec's
``AutoencoderKL``; absent only for pixel-space models), ``cameo_model.json`` (:class:`ModelConfig`: image size,
views per model call, codec, conditioning), and what training adds for people: ``train_config.yaml`` (the run's
config), ``model_card.md``, and in runs whose CAMEO objective owned its parameters ``cameo_head.safetensors``.
Folders exported before ``cameo_model.json`` existed (the bundled model among them) still load: image size and views
per call then come from ``train_config.yaml`` (``data.resolution``, ``data.num_views``), and a codec folder named
``autoencoder/`` is accepted. An optional ``depth/`` holds the one-photo depth network
(:class:`cameo.geometry.mono_depth.MonoDepthNet`, ``cameo-train depth``) that sampling uses for photos without
depth.

Only local files are read (``local_files_only``); a missing part raises :class:`ModelFolderError` naming it.

Default folder: ``$CAMEO_MODEL`` if set, else ``<repo>/assets/model`` found from this file's location
(``cameo/`` sits next to ``assets/`` in a source checkout and in an editable install, ``pip install -e .``).
A regular wheel install does not carry ``assets/``: set ``CAMEO_MODEL`` or pass the folder explicitly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from diffusers import DDPMScheduler, ModelMixin
from safetensors.torch import load_file, save_file

from cameo.atomic import atomic_dir
from cameo.geometry.mono_depth import MonoDepthNet
from cameo.model import AutoencoderCodec, LatentCodec, MultiViewUNet, PixelCodec
from cameo.model.codec import load_autoencoder_codec

CONFIG_NAME = "cameo_model.json"
DEPTH_FOLDER = "depth"
LEGACY_CONFIG = "train_config.yaml"  # older folders: data.resolution and data.num_views of the training config
CODEC_FOLDERS = ("vae", "autoencoder")  # what is written first; the second is what older cameo-train exports wrote
MAKE_ONE_HINT = ("pass --checkpoint PATH to an exported model folder (e.g. runs/demo-cpu/model), or train one with "
                 "`cameo-train --config demo-cpu` (it exports to runs/demo-cpu/model)")
Conditioning = Literal["camera", "camera+prior"]


class ModelFolderError(FileNotFoundError):
    """An exported model folder is missing or lacks a required part (the message names which)."""


@dataclass(frozen=True)
class ModelConfig:
    """What a caller must know to use the model: the views it generates and what it is conditioned on."""

    image_size: int
    """Side of the square images the model generates (and its references are resized to)."""
    frames_per_group: int
    """Views per model call (references + targets), as trained."""
    codec: str
    """``pixel`` (no learned codec) or ``autoencoder-kl`` (the folder's ``vae/``)."""
    conditioning: Conditioning
    """``camera``: posed references only (CAT3D); ``camera+prior``: also a warped-reference prior per view."""

    @classmethod
    def for_unet(cls, unet_config: Mapping[str, Any], image_size: int, frames_per_group: int) -> ModelConfig:
        """The config of a UNet (its codec and ``prior_injection`` decide codec and conditioning) at these sizes."""
        conditioning = "camera" if unet_config.get("prior_injection") is None else "camera+prior"
        return cls(int(image_size), int(frames_per_group), str(unet_config.get("codec", "pixel")), conditioning)


@dataclass
class CameoModel:
    """The multi-view model, its codec and training noise schedule, and its :class:`ModelConfig`.

    ``from_pretrained`` loads an exported folder (``unet`` in eval mode on ``device``), ``save_pretrained`` writes one.
    """

    unet: MultiViewUNet
    codec: LatentCodec
    schedule: DDPMScheduler
    config: ModelConfig
    path: Path | None = None
    device: torch.device = torch.device("cpu")
    model_card: str | None = None
    train_config: dict[str, Any] | None = None
    """The training config recorded beside the model (``train_config.yaml`` as a dict), for provenance."""
    depth_net: MonoDepthNet | None = None
    """The folder's one-photo depth network (``depth/``), or None."""

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def frames_per_group(self) -> int:
        return self.config.frames_per_group

    @property
    def conditioning(self) -> Conditioning:
        """``camera`` or ``camera+prior`` (the model expects warped-reference priors)."""
        return self.config.conditioning

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "auto") -> CameoModel:
        """Load an exported folder (default: :func:`default_model_dir`); ``device`` "auto" = CUDA when available."""
        folder = _model_folder(path)
        _require(folder / "unet" / "config.json", "the multi-view UNet (unet/ from MultiViewUNet.save_pretrained)")
        _require(folder / "scheduler" / "scheduler_config.json", "the training noise schedule (scheduler/)")
        image_size, frames_per_group, saved, train_config = _read_config(folder)
        dev = resolve_device(device)
        unet = MultiViewUNet.from_pretrained(str(folder / "unet"), local_files_only=True, torch_dtype=torch.float32)
        config = ModelConfig.for_unet(unet.config, image_size, frames_per_group)
        if saved is not None and (saved.get("codec"), saved.get("conditioning")) != (config.codec, config.conditioning):
            raise ModelFolderError(f"{folder / CONFIG_NAME}: codec/conditioning {saved.get('codec')!r}/"
                                   f"{saved.get('conditioning')!r} disagree with unet/config.json "
                                   f"({config.codec!r}/{config.conditioning!r})")
        card = folder / "model_card.md"
        return cls(
            unet=unet.to(dev).eval(),
            codec=_load_codec(folder, unet, dev),
            schedule=DDPMScheduler.from_pretrained(str(folder / "scheduler"), local_files_only=True),
            config=config,
            path=folder,
            device=dev,
            model_card=card.read_text(encoding="utf-8") if card.is_file() else None,
            train_config=train_config,
            depth_net=load_depth_net(folder, dev),
        )

    def save_pretrained(self, path: str | os.PathLike[str], extra_files: Mapping[str, str | Path] | None = None,
                        half: bool = False, overwrite: bool = False) -> Path:
        """Write the folder (atomically); see :func:`write_model_folder` for ``extra_files`` and ``half``."""
        return write_model_folder(path, self.unet, self.schedule, self.codec, self.config, extra_files, half, overwrite,
                                  self.depth_net)


def write_model_folder(
    path: str | os.PathLike[str],
    unet: ModelMixin | Path,
    schedule: DDPMScheduler | Path,
    codec: LatentCodec | None,
    config: ModelConfig,
    extra_files: Mapping[str, str | Path] | None = None,
    half: bool = False,
    overwrite: bool = False,
    depth_net: ModelMixin | Path | None = None,
) -> Path:
    """The one writer of the layout: ``unet`` and ``schedule`` as modules to save or saved folders to copy (a
    training checkpoint's), the codec's ``vae/`` (a latent ``config.codec`` without an autoencoder codec is an
    error: every folder must be self-contained), ``cameo_model.json``, ``extra_files`` (name -> text to write,
    or a file to copy) and the optional one-photo ``depth_net`` (module or saved folder) as ``depth/``. ``half``
    stores floating-point safetensors weights as float16 (loaders cast back)."""
    if config.codec != "pixel" and not isinstance(codec, AutoencoderCodec):
        raise ValueError(f"{path}: the model denoises {config.codec} latents but no autoencoder codec was given; "
                         "the folder would not be usable without its vae/")
    with atomic_dir(path, overwrite=overwrite) as tmp:
        _save_part(unet, tmp / "unet")
        _save_part(schedule, tmp / "scheduler")
        if isinstance(codec, AutoencoderCodec):
            codec.vae.save_pretrained(str(tmp / CODEC_FOLDERS[0]), safe_serialization=True)
        if depth_net is not None:
            _save_part(depth_net, tmp / DEPTH_FOLDER)
        (tmp / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n", encoding="utf-8")
        for name, content in (extra_files or {}).items():
            if isinstance(content, Path):
                shutil.copy2(content, tmp / name)
            else:
                (tmp / name).write_text(content, encoding="utf-8")
        if half:
            for weights in tmp.rglob("*.safetensors"):
                _to_float16(weights)
    return Path(path)


def _save_part(part: Any, folder: Path) -> None:
    """A diffusers module or scheduler (``save_pretrained``), or a folder one was saved to (copied)."""
    if isinstance(part, Path):
        shutil.copytree(part, folder)
    elif isinstance(part, ModelMixin):
        part.save_pretrained(str(folder), safe_serialization=True)
    else:
        part.save_pretrained(str(folder))


def _to_float16(path: Path) -> None:
    """Rewrite a safetensors file with its floating-point tensors in float16."""
    tensors = load_file(str(path))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, str(path))


def default_model_dir() -> Path:
    """``$CAMEO_MODEL`` or the bundled ``<repo>/assets/model`` (resolved next to the ``cameo`` package)."""
    env = os.environ.get("CAMEO_MODEL")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "assets" / "model"


def bundled_model_missing() -> bool:
    """True when no model is configured (``$CAMEO_MODEL`` unset) and ``assets/model`` holds none yet."""
    return "CAMEO_MODEL" not in os.environ and not (default_model_dir() / "unet" / "config.json").is_file()


def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an exported model folder (new or older layout), not e.g. a training checkpoint."""
    return (Path(path) / CONFIG_NAME).is_file() or (Path(path) / LEGACY_CONFIG).is_file()


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an unavailable CUDA request raises ``ValueError``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (torch {torch.__version__}); "
                         "use --device cpu")
    return resolved


def _model_folder(path: str | os.PathLike[str] | None) -> Path:
    folder = Path(path) if path is not None else default_model_dir()
    if not folder.is_dir():
        what = "the bundled model is not there yet" if path is None else "no such model folder"
        raise ModelFolderError(f"{folder}: {what}; {MAKE_ONE_HINT}")
    return folder


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ModelFolderError(f"{path} missing: {what}")
    return path


def _read_config(folder: Path) -> tuple[int, int, dict[str, Any] | None, dict[str, Any] | None]:
    """(image size, views per call, the saved ``cameo_model.json`` or None, the training config or None)."""
    train_config = _read_yaml(folder / LEGACY_CONFIG) if (folder / LEGACY_CONFIG).is_file() else None
    file = folder / CONFIG_NAME
    if file.is_file():
        try:
            saved = json.loads(file.read_text(encoding="utf-8"))
            return int(saved["image_size"]), int(saved["frames_per_group"]), saved, train_config
        except (ValueError, KeyError, TypeError) as err:
            raise ModelFolderError(f"{file}: unreadable model config ({type(err).__name__}: {err})") from None
    if train_config is None:
        raise ModelFolderError(f"{file} missing: the model config (image size, views per call; folders exported "
                               f"before it existed carry {LEGACY_CONFIG} instead)")
    try:
        return int(train_config["data"]["resolution"]), int(train_config["data"]["num_views"]), None, train_config
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFolderError(f"{folder / LEGACY_CONFIG}: data.resolution / data.num_views unreadable "
                               f"({type(err).__name__}: {err})") from None


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ModelFolderError(f"{file}: unreadable training config: {err}") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{file}: unreadable training config: not a mapping")
    return data


def _load_codec(folder: Path, unet: MultiViewUNet, device: torch.device) -> LatentCodec:
    """Pixel space (folded by the model's image / sample size ratio, standardised as saved) for ``pixel`` models,
    else the folder's frozen ``AutoencoderKL``."""
    kind = unet.config.codec
    if kind == "pixel":
        return PixelCodec(unet.config.image_size // unet.unet.config.sample_size, unet.config.codec_shift,
                          unet.config.codec_scale)
    for name in CODEC_FOLDERS:
        if (folder / name / "config.json").is_file():
            return load_autoencoder_codec(folder / name, device)
    raise ModelFolderError(f"{folder / CODEC_FOLDERS[0]} missing: the model denoises {kind} latents, so the folder "
                           f"needs the codec (vae/config.json + weights, AutoencoderKL.save_pretrained)")


def has_depth_net(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` (a model folder, or a run's output_dir) holds a ``depth/`` network."""
    return (Path(folder) / DEPTH_FOLDER / "config.json").is_file()


def load_depth_net(folder: Path, device: torch.device) -> MonoDepthNet | None:
    """The ``depth/`` network of ``folder`` (a model folder, or a run's output_dir) in eval mode on ``device``
    (float32), or None when it has none."""
    if not has_depth_net(folder):
        return None
    net = MonoDepthNet.from_pretrained(str(folder / DEPTH_FOLDER), local_files_only=True, torch_dtype=torch.float32)
    return net.to(device).eval()
