"""The diffusion maths shared by sampling, training and evaluation, in one module below all three.

- Camera conditioning: Plücker rays of each sample's cameras made relative to view 0 and normalised (farthest
  camera at distance 1), the same at training and at sampling time.
- Noising: references stay clean (timestep 0), the target views of a sample share one noise level; the regression
  target is the noise (epsilon) or the velocity (v_prediction).
- The denoising loss: mean squared error over the target views only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from cameo.cameras import normalize_cameras, plucker_rays


@dataclass
class NoisedBatch:
    """Model inputs and regression target of one step."""

    noisy: torch.Tensor  # [B, F, C, h, w]: references clean, targets noised
    timesteps: torch.Tensor  # [B, F] long: 0 on references
    target: torch.Tensor  # [B, F, C, h, w]: noise (epsilon) or velocity (v_prediction)


def camera_conditioning(c2w: torch.Tensor, K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Plücker rays ``[B, F, 6, H, W]`` of each sample's cameras relative to view 0, farthest at distance 1."""
    c2w_n, _ = normalize_cameras(c2w.float(), ref=0)
    return plucker_rays(c2w_n, K.float(), height, width)


def noise_targets(
    clean: torch.Tensor, ref_mask: torch.Tensor, scheduler: DDPMScheduler, gen: torch.Generator,
    t: torch.Tensor | None = None,
) -> NoisedBatch:
    """Noise the target views of ``clean [B, F, C, h, w]`` at one timestep per sample: ``t [B]``, or drawn
    uniformly from ``gen`` when None (training)."""
    b, f = clean.shape[:2]
    if t is None:
        t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=gen)
    noise = torch.randn(clean.shape, generator=gen, dtype=torch.float32).to(clean.device, clean.dtype)
    timesteps = torch.where(ref_mask, 0, t[:, None]).to(clean.device)
    flat_t = timesteps.reshape(-1)
    flat_x, flat_n = clean.flatten(0, 1), noise.flatten(0, 1)
    noisy = scheduler.add_noise(flat_x, flat_n, flat_t).view_as(clean)
    keep = ref_mask.to(clean.device)[:, :, None, None, None]
    noisy = torch.where(keep, clean, noisy)
    if scheduler.config.prediction_type == "epsilon":
        target = noise
    elif scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(flat_x, flat_n, flat_t).view_as(clean)
    else:
        raise ValueError(f"unsupported prediction_type {scheduler.config.prediction_type!r}")
    return NoisedBatch(noisy=noisy, timesteps=timesteps, target=target)


def denoising_loss(prediction: torch.Tensor, target: torch.Tensor, ref_mask: torch.Tensor,
                   pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the target views only (fp32); ``pixel_weights [B,F,1,h,w]`` (the model space's
    size) weight each view's positions, the view's error being their weighted mean."""
    error = F.mse_loss(prediction.float(), target.float(), reduction="none")
    if pixel_weights is None:
        per_view = error.flatten(2).mean(-1)  # [B, F]
    else:
        weights = pixel_weights.float().expand_as(error)
        per_view = (error * weights).flatten(2).sum(-1) / weights.flatten(2).sum(-1).clamp_min(1e-8)
    weights = (~ref_mask).to(per_view.dtype)
    return (per_view * weights).sum() / weights.sum().clamp_min(1.0)
