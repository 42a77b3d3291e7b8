"""What the training loop trains on: the model, the CAMEO objective, the codec and the data, behind one record.

``Components`` is the seam between the generic engine (``cameo.train.loop``) and the project's model and data
packages; tests pass tiny stand-ins through the same record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

# forward(model, sample [B,F,C,h,w], timesteps [B,F], plucker [B,F,6,H,W], ref_mask [B,F], drop_camera [B],
#         want_attention) -> (prediction [B,F,C,h,w], what the CAMEO loss needs from the supervised layer, or None)
ForwardFn = Callable[..., tuple[torch.Tensor, Any]]
# cameo(attention, pointmaps [B,F,3,H,W]) -> scalar CAMEO loss (fp32)
CameoFn = Callable[[Any, torch.Tensor], torch.Tensor]


@dataclass
class Components:
    """Everything model- and data-specific that one training run needs."""

    unet: nn.Module
    """Trainable multi-view UNet (``MultiViewUNet`` contract); saved with ``save_pretrained`` when it has one."""
    forward: ForwardFn
    """Calls the (possibly accelerate-wrapped) UNet and returns the prediction and, if asked, CAMEO-layer logits."""
    train_set: Dataset
    """Sample dicts as in docs/CONTRACTS.md, read by ``(epoch, index)`` keys (see ``cameo.train.data``)."""
    val_set: Dataset | None = None
    """Held-out sample dicts for validation PSNR."""
    cameo: CameoFn | None = None
    """CAMEO objective; if it is a module with parameters they are trained (and saved) with the UNet."""
    codec: Any = None
    """Frozen ``cameo.model.LatentCodec`` (encode [0, 1] images -> latents, decode back); None = pixels in [-1, 1].
    Exported with the model (a latent codec as ``vae/``)."""
    depth_net: nn.Module | None = None
    """Frozen one-photo depth network (``cameo.geometry.mono_depth``) for the priors of references without depth
    (``prior.stand_in: depth_net``)."""
