"""Fig. 3-style picture: where query points of the target view attend in the reference view at one layer.

Each query point (a lattice of points on the target's surface) and the reference token it attends to most
(argmax of the head-averaged cross-view attention) are drawn in the same colour, side by side.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from PIL import Image, ImageDraw

from cameo.eval.probe3d import ViewTokens


def attended_points(tokens: ViewTokens, query_uv: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Pixel positions ``[N, 2]`` (u, v) in the reference view attended most by query pixels ``[N, 2]``."""
    (th, tw), (h, w) = tokens.token_hw, image_hw
    col = (query_uv[:, 0] * tw / w).long().clamp(0, tw - 1)
    row = (query_uv[:, 1] * th / h).long().clamp(0, th - 1)
    target = tokens.cross_attention()[row * tw + col].argmax(-1)
    return torch.stack([(target % tw + 0.5) * w / tw, (target // tw + 0.5) * h / th], -1)


def query_lattice(valid: torch.Tensor, count: int = 6) -> torch.Tensor:
    """Up to ``count x count`` pixel centres (u, v) on a regular lattice, kept where ``valid [H, W]`` is True."""
    h, w = valid.shape
    rows = ((torch.arange(count) + 0.5) * h / count).long()
    cols = ((torch.arange(count) + 0.5) * w / count).long()
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    keep = valid[rr, cc]
    return torch.stack([cc[keep] + 0.5, rr[keep] + 0.5], -1).float()


def draw_attention(query_image: torch.Tensor, key_image: torch.Tensor, query_uv: torch.Tensor,
                   key_uv: torch.Tensor, scale: int = 4, title: str = "") -> Image.Image:
    """Target (left) and reference (right) enlarged ``scale`` times, matching points in matching colours."""

    def to_pil(x: torch.Tensor) -> Image.Image:
        return Image.fromarray((x.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8))

    left, right = to_pil(query_image), to_pil(key_image)
    w, h = left.size
    canvas = Image.new("RGB", (2 * w * scale + scale * 2, h * scale + 14), "white")
    canvas.paste(left.resize((w * scale, h * scale), Image.NEAREST), (0, 14))
    canvas.paste(right.resize((w * scale, h * scale), Image.NEAREST), (w * scale + scale * 2, 14))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 1), title, fill="black")
    radius = max(2, scale)
    for i, (qp, kp) in enumerate(zip(query_uv.tolist(), key_uv.tolist())):
        colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(len(query_uv), 1), 0.9, 1.0))
        for (u, v), x0 in ((qp, 0), (kp, w * scale + scale * 2)):
            cx, cy = x0 + u * scale, 14 + v * scale
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour, outline="black")
    return canvas
