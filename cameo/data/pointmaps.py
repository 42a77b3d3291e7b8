"""Pluggable pointmap sources for correspondence supervision: ground-truth depth + cameras, or VGGT predictions.

A per-sample source is called as ``source(images [F,3,H,W], K [F,3,3], c2w [F,4,4], depth [F,H,W] | None)`` and
returns world pointmaps ``[F, 3, H, W]`` (NaN invalid) in the frame and units of ``c2w``. A per-frame source
(:class:`SequenceDepth`, e.g. the cached stereo of ``cameo.data.stereo_pointmaps``) gives each frame of a sequence
a z-depth map once; the dataset crops and resizes it with the image and unprojects it with the sample's cameras.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from cameo.cameras import pixel_centers, unproject_depth

if TYPE_CHECKING:
    from .loaders.common import Sequence

VGGT_INSTALL = "pip install git+https://github.com/facebookresearch/vggt (it is not on PyPI)"


class PointmapSource(Protocol):
    def __call__(
        self, images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, depth: torch.Tensor | None
    ) -> torch.Tensor: ...


class SequenceDepth(ABC):
    """A per-frame pointmap source: z-depth of frame ``index`` of a sequence (any size, NaN invalid)."""

    @abstractmethod
    def frame_depth(self, seq: "Sequence", index: int) -> np.ndarray: ...


class DepthPointmaps:
    """Exact pointmaps from z-depth and cameras (procedural data, CO3D depth maps)."""

    def __call__(
        self, images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, depth: torch.Tensor | None
    ) -> torch.Tensor:
        if depth is None:
            raise ValueError("DepthPointmaps needs depth maps; this dataset has none (use VGGTPointmaps instead)")
        return unproject_depth(depth.float(), K.float(), c2w.float()).permute(0, 3, 1, 2)


class VGGTPointmaps:
    """Pointmaps predicted by VGGT (paper Sec. 4.1), mapped into the frame and scale of the given cameras.

    VGGT returns ``world_points [1, F, h, w, 3]`` in the first camera's OpenCV frame at an arbitrary scale. The
    points are moved to the world with ``c2w[0]`` after a least-squares scale that makes every view's points
    reproject onto their own pixels under the given cameras (scale 1 if the cameras share one centre).
    """

    def __init__(self, model: Callable[[torch.Tensor], dict], width: int = 518, device: str = "cpu") -> None:
        self.model, self.width, self.device = model, width, device

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "cpu") -> "VGGTPointmaps":
        """Load VGGT-1B weights from a local file (never from a hub)."""
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"VGGT checkpoint {path} not found: download model.pt of VGGT-1B yourself and "
                                    "pass its local path")
        try:
            from vggt.models.vggt import VGGT
        except ImportError as err:
            raise ImportError(f"VGGTPointmaps needs the vggt package: {VGGT_INSTALL}") from err
        model = VGGT()
        model.load_state_dict(torch.load(path, map_location="cpu"))
        return cls(model.eval().to(device), device=device)

    @torch.no_grad()
    def __call__(
        self, images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, depth: torch.Tensor | None = None
    ) -> torch.Tensor:
        f, _, h, w = images.shape
        vh = max(14, round(h * self.width / w / 14) * 14)  # VGGT: 518 px wide, height a multiple of 14
        x = F.interpolate(images.float(), size=(vh, self.width), mode="bilinear", align_corners=False, antialias=True)
        pred = self.model(x.to(self.device))
        pts = pred["world_points"].reshape(f, vh, self.width, 3).float().cpu().permute(0, 3, 1, 2)
        pts = F.interpolate(pts, size=(h, w), mode="bilinear", align_corners=False)  # [F, 3, H, W], camera-0 frame
        c2w = c2w.float()
        rel = torch.linalg.inv(c2w) @ c2w[0]  # camera-0 frame -> camera j frame
        scale = _reprojection_scale(pts, K.float(), rel)
        p = pts.flatten(2) * scale  # [F, 3, HW]
        world = c2w[0, :3, :3] @ p + c2w[0, :3, 3:]
        return world.view(f, 3, h, w)


def _reprojection_scale(pts: torch.Tensor, K: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    """Scale s minimising the reprojection residual of ``s * pts`` under the known relative poses (linear in s)."""
    f, _, h, w = pts.shape
    uv = pixel_centers(h, w).reshape(-1, 2)
    a = (uv[None] - K[:, None, :2, 2]) / torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)[:, None]  # [F, HW, 2] normalised
    rp = (rel[:, :3, :3] @ pts.flatten(2)).transpose(1, 2)  # [F, HW, 3] rotated (unscaled) points
    t = rel[:, None, :3, 3]  # [F, 1, 3]
    coef = rp[..., :2] - a * rp[..., 2:3]  # s * coef + rhs = 0
    rhs = (t[..., :2] - a * t[..., 2:3]).expand_as(coef)
    ok = torch.isfinite(coef).all(-1, keepdim=True).expand_as(coef)
    coef, rhs = coef[ok], rhs[ok]
    denom = (coef * coef).sum()
    if denom < 1e-12 or rhs.abs().max() < 1e-9:
        return torch.tensor(1.0)
    return -(coef * rhs).sum() / denom
