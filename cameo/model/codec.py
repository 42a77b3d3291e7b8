"""Latent codecs: images in [0, 1] <-> the space the UNet denoises.

``AutoencoderCodec`` wraps a diffusers ``AutoencoderKL`` (the SD2.1 VAE, or the small x2 one of ``demo-cpu``) with
its scaling factor; ``IdentityCodec`` is pixel space ([-1, 1]) for the ``tiny`` config.
"""

from __future__ import annotations

from typing import Protocol

import torch
from diffusers import AutoencoderKL

from cameo.model.configs import ModelSpec


class LatentCodec(Protocol):
    def encode(self, images: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


class IdentityCodec:
    """Pixel-space "codec": [0, 1] images <-> [-1, 1] tensors of the same shape."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images * 2.0 - 1.0

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((latents + 1.0) / 2.0).clamp(0.0, 1.0)


class AutoencoderCodec:
    """``AutoencoderKL`` with its ``scaling_factor``; encode uses the posterior mean (deterministic)."""

    def __init__(self, vae: AutoencoderKL) -> None:
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[..., 3, H, W]`` in [0, 1] -> scaled latents ``[..., C, H/s, W/s]``."""
        flat = images.flatten(0, -4).to(self.vae.dtype) * 2.0 - 1.0
        latents = self.vae.encode(flat).latent_dist.mode() * self.scaling_factor
        return latents.unflatten(0, images.shape[:-3])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[..., C, h, w]`` -> images ``[..., 3, h*s, w*s]`` in [0, 1]."""
        flat = latents.flatten(0, -4).to(self.vae.dtype) / self.scaling_factor
        images = self.vae.decode(flat).sample
        return ((images.unflatten(0, latents.shape[:-3]) + 1.0) / 2.0).clamp(0.0, 1.0)


def small_autoencoder(spec: ModelSpec) -> AutoencoderKL:
    """Untrained small ``AutoencoderKL`` matching ``spec`` (x``latent_downsample``); trained by the training module.

    Its ``scaling_factor`` is 1.0 until training sets it (e.g. to 1 / std of the latents).
    """
    levels = spec.latent_downsample.bit_length()  # x2**(levels-1) downsampling
    widths = [32 * 2**i for i in range(levels)]
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        block_out_channels=widths,
        layers_per_block=1,
        latent_channels=spec.latent_channels,
        norm_num_groups=32,
        sample_size=spec.image_size,
        scaling_factor=1.0,
    )
