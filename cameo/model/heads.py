"""Heads on a multi-view layer's attention: modules of the model (saved with its weights), used by the losses.

``AttentionLogitHead`` projects the per-head attention logits of CAMEO's supervised layer to one score per token
pair (the paper's MLP over the head axis, or the mean over heads); ``cameo.cameo_loss`` supervises its output.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

HeadKind = Literal["mlp", "mean"]


class AttentionLogitHead(nn.Module):
    """Projection over the head axis (dim 1) of attention logits: ``[B, heads, ...] -> [B, ...]``.

    ``"mlp"``: Linear(h -> 4h), GELU, Linear(4h -> 1) (the paper's head); ``"mean"``: mean over heads (ablation).
    The linear layers are applied as batched matmuls along dim 1 rather than through ``nn.Linear.forward`` on a
    heads-last tensor: the logits keep their natural heads-first layout (no transposed copies of a tensor that is
    the largest of the step) and the GEMMs stream over the long token axis instead of a 4-wide inner dimension.
    """

    def __init__(self, num_heads: int, kind: HeadKind = "mlp") -> None:
        super().__init__()
        if kind not in ("mlp", "mean"):
            raise ValueError(f"head kind must be 'mlp' or 'mean', got {kind!r}")
        self.kind = kind
        self.num_heads = num_heads
        self.expand = nn.Linear(num_heads, 4 * num_heads) if kind == "mlp" else None
        self.reduce = nn.Linear(4 * num_heads, 1) if kind == "mlp" else None

    @property
    def width(self) -> int:
        """Channels of the widest intermediate per logit (sizes the query chunks)."""
        return 4 * self.num_heads if self.expand is not None else self.num_heads

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if self.expand is None or self.reduce is None:
            return logits.mean(dim=1)
        x = logits.flatten(2)  # [B, h, P]
        hidden = torch.baddbmm(self.expand.bias[None, :, None], self.expand.weight.expand(len(x), -1, -1), x)
        hidden = torch.nn.functional.gelu(hidden)
        out = torch.baddbmm(self.reduce.bias[None, :, None], self.reduce.weight.expand(len(x), -1, -1), hidden)
        return out.reshape(logits.shape[:1] + logits.shape[2:])
