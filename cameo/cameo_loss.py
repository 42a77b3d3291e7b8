"""CAMEO correspondence-attention alignment loss (paper Sec. 3.3, Eq. 1).

At one 3D self-attention layer, the per-head pre-softmax logits between the tokens of query view i and key view j
go through a projection head over the head axis, a softmax over view j's tokens, and a cross-entropy against the
one-hot geometric correspondence, masked by cycle-consistency visibility; averaged over all valid queries of all
ordered view pairs i != j. Ablations of Table 2: ``head="mean"`` (no MLP) and ``loss="l1"``.

Memory: the full logits tensor with the head's hidden layer would be [B, F*L, F*L, 4h] (>10 GB at 4 views x 32x32
tokens). A cross-entropy against a one-hot only needs, per query, the log-sum-exp over each key view and the target
column, so the loss is evaluated per (query view, key view) block in chunks of query tokens; several chunks are
recomputed in the backward pass (activation checkpointing) so peak memory stays at one chunk. Gradients are exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch.utils.checkpoint import checkpoint

from cameo.model.heads import AttentionLogitHead

if TYPE_CHECKING:
    from cameo.model.attention import CapturedAttention

LossKind = Literal["ce", "l1"]

DEFAULT_MAX_CHUNK_ELEMENTS = 2**26
"""Elements of the head's widest activation per chunk (256 MB in fp32; a few such tensors are kept for backward)."""


def _block_loss(
    q: torch.Tensor,
    k_other: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    scale: float,
    head: AttentionLogitHead,
    loss: LossKind,
) -> torch.Tensor:
    """Summed masked loss for a chunk of query tokens of every view against every other view.

    ``q [B,h,F,c,d]``, ``k_other [B,h,F,F-1,L,d]``, ``target``/``valid`` ``[B,F,F-1,c]`` -> scalar.
    """
    logits = torch.matmul(q.unsqueeze(3), k_other.transpose(-1, -2)) * scale  # [B,h,F,F-1,c,L]
    scores = head(logits)  # [B,F,F-1,c,L]
    log_p = scores.gather(-1, target.unsqueeze(-1)).squeeze(-1) - scores.logsumexp(dim=-1)
    # L1 between a softmax and a one-hot is |1 - p_t| + sum_{others} p = 2 (1 - p_t): no need to build the one-hot.
    per_query = -log_p if loss == "ce" else 2.0 * (1.0 - log_p.exp())
    return (per_query * valid).sum()


def cameo_loss(
    captured: CapturedAttention,
    index: torch.Tensor,
    valid: torch.Tensor,
    head: AttentionLogitHead,
    loss: LossKind = "ce",
    max_chunk_elements: int = DEFAULT_MAX_CHUNK_ELEMENTS,
    query_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """CAMEO loss of a captured 3D attention layer against token correspondences (fp32, scalar).

    ``captured``: q/k of the layer (``MultiViewUNet.attention_control(capture=[layer])``), ``[B, h, F*L, d]``.
    ``index [B,F,F,L]`` long / ``valid [B,F,F,L]`` bool: ``cameo.correspondence.token_correspondences`` at the
    layer's token grid. The diagonal i == j is never used. ``query_samples``: optionally use only that many random
    query tokens per view (same tokens for all views), a cheaper unbiased estimate.
    Returns the mean loss over valid (query, pair) entries; 0 (with a graph) when none is valid.
    """
    if not captured.is_3d:
        raise ValueError("cameo_loss needs a 3D (multi-view) attention layer; the captured layer is 2D")
    b, h, n, d = captured.q.shape
    f = captured.num_views
    length = n // f
    if index.shape != (b, f, f, length) or valid.shape != index.shape:
        raise ValueError(
            f"correspondences must be [B,F,F,L] = {(b, f, f, length)} for this layer, "
            f"got index {tuple(index.shape)}, valid {tuple(valid.shape)}"
        )
    if head.num_heads != h:
        raise ValueError(f"head expects {head.num_heads} attention heads, the captured layer has {h}")

    device = captured.q.device
    others = torch.tensor([[j for j in range(f) if j != i] for i in range(f)], device=device)  # [F, F-1]
    rows = torch.arange(f, device=device)[:, None]
    target, mask = index[:, rows, others], valid[:, rows, others].float()  # [B,F,F-1,L]

    with torch.autocast(device_type=device.type, enabled=False):
        q = captured.q.float().reshape(b, h, f, length, d)
        k_other = captured.k.float().reshape(b, h, f, length, d)[:, :, others]  # [B,h,F,F-1,L,d]
        if query_samples is not None and query_samples < length:
            chosen = torch.randperm(length, generator=generator)[:query_samples].to(device)
            q, target, mask = q[:, :, :, chosen], target[..., chosen], mask[..., chosen]
        queries = q.shape[3]
        chunk = max(1, max_chunk_elements // (b * f * (f - 1) * length * head.width))
        recompute = torch.is_grad_enabled() and chunk < queries
        total = q.new_zeros(())
        for start in range(0, queries, chunk):
            part = slice(start, start + chunk)
            args = (q[:, :, :, part], k_other, target[..., part], mask[..., part], captured.scale, head, loss)
            total = total + (checkpoint(_block_loss, *args, use_reentrant=False) if recompute else _block_loss(*args))
        return total / mask.sum().clamp_min(1.0)
