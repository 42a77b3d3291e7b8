"""Pixel metrics every layer may use (training validation, the autoencoder's calibration, evaluation, benchmarks).

PSNR on images clipped to [0, 1]; identical images give ``max_db`` (100 dB) instead of inf so averages stay finite.
The perceptual metrics (SSIM, LPIPS) live in ``cameo.eval.metrics``.
"""

from __future__ import annotations

import torch


def as_image_batch(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes, flatten leading dims to one batch axis and clip to [0, 1]."""
    if pred.shape != target.shape or pred.ndim < 3 or pred.shape[-3] != 3:
        raise ValueError(f"metrics expect equal [..., 3, H, W] images, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    return tuple(x.reshape(-1, *x.shape[-3:]).float().clamp(0, 1) for x in (pred, target))


def psnr(pred: torch.Tensor, target: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """PSNR in dB of [..., 3, H, W] images in [0, 1] -> [N] (N = product of leading dims), capped at max_db."""
    p, t = as_image_batch(pred, target)
    mse = (p - t).pow(2).mean(dim=(1, 2, 3))
    return (-10 * torch.log10(mse.clamp_min(10 ** (-max_db / 10)))).clamp_max(max_db)
