"""What the training loop trains on: the model, the CAMEO objective, the codec and the data, behind one record.

``Components`` is the seam between the generic engine (``cameo.train.loop``) and the project's model and data
packages; tests pass tiny stand-ins through the same record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

# forward(model, sample [B,F,C,h,w], timesteps [B,F], plucker [B,F,6,H,W], ref_mask [B,F], drop_camera [B],
#         want_logits) -> (prediction [B,F,C,h,w], attention logits [B,heads,F*L,F*L] at the CAMEO layer or None)
ForwardFn = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class Components:
    """Everything model- and data-specific that one training run needs."""

    unet: nn.Module
    """Trainable multi-view UNet (``MultiViewUNet`` contract); saved with ``save_pretrained`` when it has one."""
    forward: ForwardFn
    """Calls the (possibly accelerate-wrapped) UNet and returns the prediction and, if asked, CAMEO-layer logits."""
    train_set: Dataset
    """Sample dicts as in docs/CONTRACTS.md."""
    val_set: Dataset | None = None
    """Held-out sample dicts for validation PSNR."""
    cameo: nn.Module | None = None
    """CAMEO objective ``(logits, pointmaps) -> loss``; its parameters (the MLP head) are trained with the UNet."""
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Frozen codec: images ``[N,3,H,W]`` in [-1, 1] -> latents ``[N,C,h,w]``; None = pixel-space model."""
