"""Self-attention processor for the multi-view UNet: 3D (cross-view) attention, capture and perturbation.

diffusers' stock processors attend within one image; CAT3D-style models need the tokens of the F views of one sample
to attend jointly, and CAMEO needs the query/key tensors of one layer with their autograd graph. Both live here as
one diffusers attention processor, installed on every self-attention (``attn1``) of the UNet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


@dataclass
class CapturedAttention:
    """Per-head query/key/value of one self-attention call, exactly the tensors the attention consumed.

    For a 3D layer the token axis holds the F views of one sample back to back: ``q, k, v`` are
    ``[B, heads, F*L, d]``; for a 2D layer they are ``[B*F, heads, L, d]``. ``scale`` is the layer's softmax scale.
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scale: float
    num_views: int
    is_3d: bool

    def logits(self) -> torch.Tensor:
        """Pre-softmax attention logits ``q k^T * scale``, ``[batch, heads, tokens, tokens]``, with gradients."""
        return torch.matmul(self.q, self.k.transpose(-1, -2)) * self.scale

    def attention_output(self) -> torch.Tensor:
        """Explicit softmax(logits) @ v (before the output projection); for analysis and checks."""
        return torch.matmul(self.logits().softmax(dim=-1), self.v)


@dataclass
class AttentionControl:
    """What the processors should do beyond plain attention during one forward pass.

    ``capture``: full names of layers whose q/k/v go into ``store`` (keyed by name).
    ``perturb``: full names of layers replaced by identity attention (each query attends only to itself, as in
    perturbed-attention guidance), so their output is the projected values.
    """

    capture: frozenset[str] = frozenset()
    perturb: frozenset[str] = frozenset()
    store: dict[str, CapturedAttention] = field(default_factory=dict)


class MultiViewAttnProcessor:
    """Self-attention that is 3D (joint over views) or 2D, with optional capture / identity perturbation.

    Inputs arrive as ``(B*F, L, C)`` with the views of a sample contiguous; a 3D layer reshapes them to
    ``(B, F*L, C)`` before the projections. Attention itself is PyTorch's fused ``scaled_dot_product_attention``.
    """

    def __init__(self, name: str, is_3d: bool) -> None:
        self.name = name
        self.is_3d = is_3d

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        num_views: int = 1,
        control: AttentionControl | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError(f"{self.name}: MultiViewAttnProcessor is self-attention only (no context, no mask)")
        residual = hidden_states
        batch_views, tokens, channels = hidden_states.shape
        if self.is_3d:
            if batch_views % num_views:
                raise ValueError(f"{self.name}: batch {batch_views} is not a multiple of num_views={num_views}")
            hidden_states = hidden_states.reshape(batch_views // num_views, num_views * tokens, channels)

        q, k, v = (self._split_heads(attn, proj(hidden_states)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)

        if control is not None and self.name in control.capture:
            control.store[self.name] = CapturedAttention(q, k, v, attn.scale, num_views, self.is_3d)
        if control is not None and self.name in control.perturb:
            out = v  # identity attention map: every query attends only to its own token
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)

        out = out.transpose(1, 2).reshape(out.shape[0], -1, attn.heads * out.shape[-1])
        out = attn.to_out[1](attn.to_out[0](out))
        out = out.reshape(batch_views, tokens, -1)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    @staticmethod
    def _split_heads(attn: Attention, x: torch.Tensor) -> torch.Tensor:
        """``[b, n, heads*d] -> [b, heads, n, d]``."""
        return x.reshape(x.shape[0], x.shape[1], attn.heads, -1).transpose(1, 2)
