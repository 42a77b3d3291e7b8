"""Geometric correspondence precision of attention layers (the paper's Sec. 3.2 / C.2, Probe3D protocol).

For an image pair (view 1 = query/target, view 2 = reference) the model runs once, noise-free (timestep 0 for
both views) and without camera conditioning; each probed layer's query descriptors of view 1 are matched to the key
descriptors of view 2 (heads concatenated, cosine distance, nearest neighbour = argmax). Lowe's ratio
r = 1 - D(p, q0) / D(p, q1) ranks the matches; the top ``top_k`` (1000, or all if fewer) are kept and a match is
correct when the two ground-truth 3D points (pointmaps) are closer than a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

ROTATION_BINS_DEG = (0.0, 30.0, 60.0, 90.0, 120.0, 180.0)


@dataclass
class PairPrecision:
    """Result for one layer on one pair: fraction of correct matches among ``num_matches`` kept ones."""

    precision: float
    num_matches: int


def relative_rotation_deg(c2w_a: torch.Tensor, c2w_b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees of the relative rotation between cameras ``[..., 4, 4]``."""
    rel = c2w_a[..., :3, :3].transpose(-1, -2) @ c2w_b[..., :3, :3]
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def rotation_bin(angle_deg: float) -> str:
    """Label of the rotation bin containing ``angle_deg``, e.g. '0-30'."""
    for lo, hi in zip(ROTATION_BINS_DEG[:-1], ROTATION_BINS_DEG[1:]):
        if lo <= angle_deg < hi or (hi == ROTATION_BINS_DEG[-1] and angle_deg <= hi):
            return f"{lo:.0f}-{hi:.0f}"
    raise ValueError(f"angle {angle_deg} outside [0, 180]")


def head_descriptors(x: torch.Tensor, token_hw: tuple[int, int]) -> torch.Tensor:
    """Per-head tokens ``[heads, L, d]`` of one view -> descriptor grid ``[heads*d, h, w]``."""
    heads, length, dim = x.shape
    h, w = token_hw
    if h * w != length:
        raise ValueError(f"{length} tokens do not form a {h}x{w} grid")
    return x.permute(0, 2, 1).reshape(heads * dim, h, w)


def match_descriptors(query: torch.Tensor, key: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest neighbour of every query ``[N, D]`` among keys ``[M, D]`` by cosine distance (M >= 2).

    Returns (index ``[N]`` of the nearest key, Lowe ratio ``[N]`` = 1 - D(p, q0) / D(p, q1)). Processed in chunks
    of queries so the similarity matrix never exceeds ``chunk x M``.
    """
    q, k = F.normalize(query.float(), dim=-1), F.normalize(key.float(), dim=-1)
    index, ratio = [], []
    for part in q.split(chunk):
        top = (part @ k.T).topk(2, dim=-1)
        dist = 1 - top.values  # cosine distance of the 1st and 2nd nearest key
        index.append(top.indices[:, 0])
        ratio.append(1 - dist[:, 0] / dist[:, 1].clamp_min(1e-12))
    return torch.cat(index), torch.cat(ratio)


def _grid_points(points: torch.Tensor, grid: int) -> torch.Tensor:
    """World points ``[3, H, W]`` sampled (nearest pixel) at the centres of a ``grid x grid`` lattice -> ``[G*G, 3]``."""
    h, w = points.shape[-2:]
    rows = ((torch.arange(grid) + 0.5) * h / grid).long().clamp_max(h - 1)
    cols = ((torch.arange(grid) + 0.5) * w / grid).long().clamp_max(w - 1)
    return points[:, rows][:, :, cols].reshape(3, -1).T


def correspondence_precision(
    desc_query: torch.Tensor,
    desc_key: torch.Tensor,
    points_query: torch.Tensor,
    points_key: torch.Tensor,
    threshold: float,
    grid: int = 128,
    top_k: int = 1000,
) -> PairPrecision:
    """Precision of descriptor matching between two views under ground-truth geometry.

    ``desc_*``: descriptor grids ``[D, h, w]`` (resized bilinearly to ``grid x grid``); ``points_*``: world
    pointmaps ``[3, H, W]`` (NaN = no surface). Queries without a surface are not matched; matches landing on no
    surface count as wrong. ``threshold`` is in world units.
    """
    size = (grid, grid)
    dq = F.interpolate(desc_query[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    dk = F.interpolate(desc_key[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    pq, pk = _grid_points(points_query, grid), _grid_points(points_key, grid)
    valid = torch.isfinite(pq).all(-1)
    if not valid.any():
        return PairPrecision(float("nan"), 0)
    index, ratio = match_descriptors(dq.flatten(1).T[valid], dk.flatten(1).T)
    keep = ratio.topk(min(top_k, ratio.numel())).indices
    dist = (pq[valid][keep] - pk[index[keep]]).norm(dim=-1)
    correct = torch.nan_to_num(dist, nan=float("inf")) < threshold
    return PairPrecision(correct.float().mean().item(), int(keep.numel()))


def attention_precision(logits: torch.Tensor, points_query: torch.Tensor, points_key: torch.Tensor,
                        threshold: float) -> PairPrecision:
    """Precision of the attention map itself: every query token with a surface is matched to its argmax key token.

    ``logits [L, L]`` over square token grids (query rows, key columns), ``points_* [3, H, W]`` world pointmaps
    sampled at the token centres. Unlike :func:`correspondence_precision` there is no descriptor distance to rank
    matches by, so all valid queries count: this reads what the layer attends to (or, for the CAMEO head's
    logits, what the loss supervises) rather than how well its descriptors match.
    """
    side = round(logits.shape[-1] ** 0.5)
    if side * side != logits.shape[-1] or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits {tuple(logits.shape)} are not [L, L] over a square token grid")
    pq, pk = _grid_points(points_query, side), _grid_points(points_key, side)
    valid = torch.isfinite(pq).all(-1)
    if not valid.any():
        return PairPrecision(float("nan"), 0)
    dist = (pq[valid] - pk[logits[valid].argmax(-1)]).norm(dim=-1)
    correct = torch.nan_to_num(dist, nan=float("inf")) < threshold
    return PairPrecision(correct.float().mean().item(), int(valid.sum()))


def scale_relative_threshold(points: torch.Tensor, c2w: torch.Tensor, fraction: float) -> float:
    """``fraction`` x the median camera distance of the valid points of ``[3, H, W]`` (for unit-free scenes)."""
    flat = points.reshape(3, -1).T
    flat = flat[torch.isfinite(flat).all(-1)]
    if flat.numel() == 0:
        raise ValueError("pointmap has no valid points")
    return fraction * (flat - c2w[:3, 3]).norm(dim=-1).median().item()


@dataclass
class ViewTokens:
    """Per-head query and key tokens of one layer for the two probed views, with their token grid."""

    q_query: torch.Tensor  # [heads, L, d] of the query (target) view
    k_key: torch.Tensor  # [heads, L, d] of the key (reference) view
    token_hw: tuple[int, int]
    scale: float

    def descriptors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Descriptor grids ``[heads*d, h, w]`` of the query view (q) and the key view (k)."""
        return head_descriptors(self.q_query, self.token_hw), head_descriptors(self.k_key, self.token_hw)

    def logits(self) -> torch.Tensor:
        """Per-head pre-softmax logits ``[heads, L, L]`` of query tokens over the key view's tokens."""
        return self.q_query.float() @ self.k_key.float().transpose(-1, -2) * self.scale

    def cross_attention(self) -> torch.Tensor:
        """Cross-view attention ``[L, L]`` of query tokens over the key view's tokens (softmax per head, mean)."""
        return self.logits().softmax(dim=-1).mean(0)


def probe_pair(model, codec, query_image: torch.Tensor, key_image: torch.Tensor,
               layers: list[str], plucker: torch.Tensor | None = None) -> dict[str, ViewTokens]:
    """Capture q (query view) and k (key view) of ``layers`` in one noise-free forward.

    Images ``[3, H, W]`` in [0, 1]; the key view is the reference (view 0, clean), the query view the target (view 1).
    Both are seen at timestep 0, so no noise is injected. Without ``plucker`` the camera conditioning is dropped
    (the paper's protocol); ``plucker [2, 6, H, W]`` (key view first, normalised rays) keeps it, as in generation.
    ``model`` follows the MultiViewUNet contract and offers ``attention_control(capture=...)``.
    """
    device = next(model.parameters()).device
    h_img, w_img = query_image.shape[-2:]
    rays = torch.zeros(1, 2, 6, h_img, w_img) if plucker is None else plucker[None]
    drop = torch.tensor([True], device=device) if plucker is None else None
    with torch.no_grad():
        latents = codec.encode(torch.stack([key_image, query_image]).to(device))[None]
        h, w = latents.shape[-2:]
        with model.attention_control(capture=layers) as control:
            model(latents, torch.zeros(1, 2, dtype=torch.long, device=device), rays.to(device),
                  torch.tensor([[True, False]], device=device), drop)
    out = {}
    for name in layers:
        cap = control.store[name]
        if cap.is_3d:
            length = cap.q.shape[2] // cap.num_views
            q, k = cap.q[0, :, length:2 * length], cap.k[0, :, :length]
        else:
            length = cap.q.shape[2]
            q, k = cap.q[1], cap.k[0]
        stride = round((h * w / length) ** 0.5)
        out[name] = ViewTokens(q, k, (h // stride, w // stride), cap.scale)
    return out
