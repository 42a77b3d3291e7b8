"""The Gaussian-splat model: a plain container, rendering, and the standard 3DGS PLY (export and load).

Parameters are stored as the 3DGS PLY stores them (and as gsplat's trainer optimises them): log-scales, logit
opacities, wxyz quaternions, SH coefficients split into the DC term ``sh0 [N,1,3]`` and the rest ``shN [N,K-1,3]``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from gsplat import export_splats

from cameo.atomic import write_bytes_atomic
from cameo.cameras import invert_pose
from recon.rasterize import rasterization

SH_C0 = 0.28209479177387814  # degree-0 SH basis; DC colour = sh0 * SH_C0 + 0.5


@dataclass
class Splats:
    """3D Gaussians in the scene's world frame (OpenCV cameras, the input's units)."""

    means: torch.Tensor  # [N, 3]
    quats: torch.Tensor  # [N, 4] wxyz, not necessarily unit
    scales: torch.Tensor  # [N, 3] log of the standard deviations
    opacities: torch.Tensor  # [N] logits
    sh0: torch.Tensor  # [N, 1, 3]
    shN: torch.Tensor  # [N, (degree+1)^2 - 1, 3]

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        """Spherical-harmonics degree stored in ``sh0`` and ``shN``."""
        return math.isqrt(self.shN.shape[1] + 1) - 1

    def detach(self) -> "Splats":
        """A copy without autograd history."""
        return Splats(**{f.name: getattr(self, f.name).detach().clone() for f in fields(self)})

    def rgb(self) -> torch.Tensor:
        """View-independent (DC) colours ``[N, 3]`` in [0, 1]."""
        return (self.sh0[:, 0] * SH_C0 + 0.5).clamp(0.0, 1.0)


@torch.no_grad()
def render(
    splats: Splats, K: torch.Tensor, c2w: torch.Tensor, width: int, height: int,
    background: tuple[float, float, float] | torch.Tensor = (0.0, 0.0, 0.0), views_per_batch: int = 4,
) -> torch.Tensor:
    """Render cameras ``K [V,3,3]``, ``c2w [V,4,4]`` (OpenCV) to images ``[V,3,H,W]`` in [0, 1]."""
    if K.ndim == 2:
        K, c2w = K[None], c2w[None]
    bg = torch.as_tensor(background, dtype=splats.means.dtype, device=splats.means.device).reshape(1, 3)
    colors = torch.cat([splats.sh0, splats.shN], 1)
    out = []
    for i in range(0, K.shape[0], views_per_batch):
        viewmats = invert_pose(c2w[i : i + views_per_batch].to(splats.means))
        n = viewmats.shape[0]
        img, _, _ = rasterization(
            splats.means, splats.quats, torch.exp(splats.scales), torch.sigmoid(splats.opacities), colors,
            viewmats, K[i : i + views_per_batch].to(splats.means), width, height,
            sh_degree=splats.sh_degree, backgrounds=bg.expand(n, 3),
        )
        out.append(img.clamp(0.0, 1.0).permute(0, 3, 1, 2))
    return torch.cat(out)


def export_ply(splats: Splats, path: str | os.PathLike) -> Path:
    """Write the standard 3DGS PLY (gsplat's exporter) atomically: a temp file next to ``path``, then rename."""
    path = Path(path)
    s = splats.detach()
    data = export_splats(s.means.cpu(), s.scales.cpu(), s.quats.cpu(), s.opacities.cpu(), s.sh0.cpu(), s.shN.cpu(),
                         format="ply")
    write_bytes_atomic(path, data)
    return path


def load_ply(path: str | os.PathLike) -> Splats:
    """Read a standard 3DGS PLY (x,y,z, f_dc_*, f_rest_*, opacity, scale_*, rot_*) into :class:`Splats`."""
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such PLY file")
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
    except Exception as exc:  # plyfile raises several types for malformed files
        raise ValueError(f"{path}: not a readable PLY with a 'vertex' element ({exc})") from exc
    names = set(vertex.data.dtype.names)

    def columns(prefix: str, count: int | None = None) -> np.ndarray:
        keys = sorted((k for k in names if k.startswith(prefix)), key=lambda k: int(k[len(prefix):]))
        if count is not None and len(keys) != count:
            raise ValueError(f"{path}: expected {count} '{prefix}*' properties, found {len(keys)}")
        return np.stack([np.asarray(vertex[k], dtype=np.float32) for k in keys], -1) if keys else \
            np.zeros((vertex.count, 0), np.float32)

    for key in ("x", "y", "z", "opacity"):
        if key not in names:
            raise ValueError(f"{path}: vertex property '{key}' is missing (not a 3DGS splat PLY)")
    rest = columns("f_rest_")
    if rest.shape[1] % 3 or math.isqrt(rest.shape[1] // 3 + 1) ** 2 != rest.shape[1] // 3 + 1:
        raise ValueError(f"{path}: {rest.shape[1]} 'f_rest_*' properties is not 3 * ((d+1)^2 - 1)")
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    n = vertex.count
    return Splats(
        means=t(np.stack([vertex["x"], vertex["y"], vertex["z"]], -1).astype(np.float32)),
        quats=t(columns("rot_", 4)),
        scales=t(columns("scale_", 3)),
        opacities=t(np.asarray(vertex["opacity"], dtype=np.float32)),
        sh0=t(columns("f_dc_", 3)).reshape(n, 1, 3),
        # the PLY stores f_rest channel-major (all R coefficients, then G, then B)
        shN=t(rest).reshape(n, 3, -1).transpose(1, 2).contiguous(),
    )
