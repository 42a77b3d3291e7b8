"""Latent codecs: images in [0, 1] <-> the space the UNet denoises.

``AutoencoderCodec`` wraps a diffusers ``AutoencoderKL`` (the SD2.1 VAE, or the small x2 one of the benchmark's
``demo-cpu`` preset) with its scaling factor; ``PixelCodec`` is lossless pixel space ([-1, 1]), folded into channels
by a space-to-depth factor (x2 for ``demo-cpu-pixel``, the bundled model; x1 for the ``tiny`` test config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from cameo.model.configs import ModelSpec


class LatentCodec(Protocol):
    def encode(self, images: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


class PixelCodec:
    """Pixel space without learned parts: [0, 1] images <-> [-1, 1] pixels, standardised (``(x - shift) * scale``)
    and folded ``factor x factor`` into channels (``[..., 3, H, W]`` <-> ``[..., 3 * factor**2, H / factor,
    W / factor]``), exactly invertible.

    Why: a small autoencoder trained on CPU caps reconstructions (the 800-step one of ``demo-cpu`` at 19.6 dB) and
    its decoder turns latent errors into colour speckle; space-to-depth keeps the UNet's token grid as small as a x2
    latent while losing nothing. The standardisation plays the role of an autoencoder's scaling factor: data at unit
    variance keeps the noise schedule's signal-to-noise ratios what they were designed for (dark procedural images
    have std 0.39 in [-1, 1], which would make every noise level about 2.5x noisier).
    """

    def __init__(self, factor: int = 1, shift: float = 0.0, scale: float = 1.0) -> None:
        if factor < 1 or scale <= 0:
            raise ValueError(f"factor must be >= 1 and scale > 0, got factor {factor}, scale {scale}")
        self.factor, self.shift, self.scale = factor, shift, scale

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[..., 3, H, W]`` in [0, 1] (any leading dims, or none) -> ``[..., 3 f^2, H/f, W/f]``."""
        pixels = (images.reshape(-1, *images.shape[-3:]) * 2.0 - 1.0 - self.shift) * self.scale
        folded = F.pixel_unshuffle(pixels, self.factor)
        return folded.reshape(*images.shape[:-3], *folded.shape[-3:])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`, clamped to [0, 1]."""
        pixels = F.pixel_shuffle(latents.reshape(-1, *latents.shape[-3:]), self.factor) / self.scale + self.shift
        return ((pixels.reshape(*latents.shape[:-3], *pixels.shape[-3:]) + 1.0) / 2.0).clamp(0.0, 1.0)


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


def load_autoencoder_codec(folder: str | Path, device: str | torch.device = "cpu") -> AutoencoderCodec:
    """The frozen codec of a saved ``AutoencoderKL`` folder (local files only; float32, eval mode, no gradients)."""
    vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, torch_dtype=torch.float32)
    return AutoencoderCodec(vae.to(device).eval().requires_grad_(False))


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
