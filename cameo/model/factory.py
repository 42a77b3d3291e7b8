"""Build models and codecs by configuration name, optionally initialised from a local Stable Diffusion folder.

Nothing is fetched from a model hub: ``pretrained`` is a local diffusers folder (``unet/`` and ``vae/``).
"""

from __future__ import annotations

import re
from pathlib import Path

from safetensors.torch import load_file

from cameo.model.heads import HeadKind
from cameo.model.codec import AutoencoderCodec, LatentCodec, PixelCodec, load_autoencoder_codec, small_autoencoder
from cameo.model.configs import ModelSpec, get_spec
from cameo.model.unet import MultiViewUNet

_DROPPED_SD_KEYS = re.compile(r"transformer_blocks\.\d+\.(attn2|norm2)\.")
_NEW_KEYS = re.compile(r"\.(norm_q|norm_k)\.")


def build_model(config: str | ModelSpec, pretrained: str | Path | None = None, cameo_head: HeadKind = "mlp",
                prior_proxy: bool = False) -> MultiViewUNet:
    """A ``MultiViewUNet`` for a named configuration; with ``pretrained``, UNet weights come from that SD folder;
    ``prior_proxy``: it will be trained with proxy priors (recorded in its config for sampling)."""
    spec = get_spec(config) if isinstance(config, str) else config
    model = MultiViewUNet(
        unet_config=spec.unet_config(),
        camera_channels=spec.camera_channels,
        qk_norm=spec.qk_norm,
        cameo_layer=spec.cameo_layer,
        cameo_head_kind=cameo_head,
        prediction_type=spec.prediction_type,
        image_size=spec.image_size,
        codec=spec.codec,
        codec_shift=spec.pixel_shift,
        codec_scale=spec.pixel_scale,
        prior_injection=spec.prior_injection,
        prior_proxy=prior_proxy,
    )
    if pretrained is not None:
        load_stable_diffusion_unet(model, pretrained)
    return model


def build_codec(config: str | ModelSpec, pretrained: str | Path | None = None) -> LatentCodec:
    """The latent codec of a configuration: pixel space, the folder's VAE (``pretrained``), or an untrained small one."""
    spec = get_spec(config) if isinstance(config, str) else config
    if spec.codec == "pixel":
        return PixelCodec(spec.latent_downsample, spec.pixel_shift, spec.pixel_scale)
    if pretrained is not None:
        vae_dir = _check_sd_folder(pretrained) / "vae"
        if not (vae_dir / "config.json").is_file():
            raise FileNotFoundError(f"{vae_dir}/config.json missing: the Stable Diffusion folder has no VAE")
        return load_autoencoder_codec(vae_dir)
    return AutoencoderCodec(small_autoencoder(spec))


def _check_sd_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"pretrained folder {folder} does not exist (pass a local diffusers SD2.1 folder)")
    if not (folder / "unet" / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a diffusers Stable Diffusion folder: {folder / 'unet' / 'config.json'} is missing "
            "(expected unet/{config.json,diffusion_pytorch_model.safetensors} and vae/)"
        )
    return folder


def load_stable_diffusion_unet(model: MultiViewUNet, folder: str | Path) -> None:
    """Copy a diffusers SD UNet's weights into ``model.unet``.

    Strict about shapes and names: only text cross-attention (``attn2``/``norm2``) may be unused, only the layers
    that SD lacks (q/k norms; the camera encoder and CAMEO head live outside ``model.unet``) may stay initialised.
    """
    unet_dir = _check_sd_folder(folder) / "unet"
    weights = unet_dir / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} missing (safetensors UNet weights are required; .bin is not loaded)")
    state = {k: v for k, v in load_file(str(weights)).items() if not _DROPPED_SD_KEYS.search(k)}
    own = model.unet.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(k for k in set(own) - set(state) if not _NEW_KEYS.search(k))
    mismatched = [f"{k}: {tuple(v.shape)} vs ours {tuple(own[k].shape)}" for k, v in state.items() if k in own and v.shape != own[k].shape]
    if unexpected or missing or mismatched:
        raise ValueError(
            f"{weights} does not fit config {model.config.unet_config['block_out_channels']}: "
            f"unexpected {unexpected[:5]}, missing {missing[:5]}, shape mismatches {mismatched[:5]}"
        )
    model.unet.load_state_dict(state, strict=False)
