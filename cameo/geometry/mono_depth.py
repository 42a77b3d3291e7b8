"""Depth from one photo: a small convolutional network that stands in where stereo cannot give depth.

One posed photo gives no stereo, and a pair stereo cannot match gives none either; MVGenMaster then warps its
reference through metric monocular depth. No offline depth network ships on PyPI (``ANCHORS.md``), so the bundled
model folder carries a small one trained on the same procedural data as the diffusion model
(``cameo-train depth``), which knows that domain only; a scene's own depth maps (``scene.json``) always win.

Scale: one photo cannot tell a small near scene from a large far one, but the cameras can. The network predicts
each pixel's disparity relative to the cameras' look-at point: the look-at depth (the plane the proxy prior uses)
over the pixel's depth, so a scene of any size gets depth in its own units. Disparity rather than depth, as
MVGenMaster's depth is: sky and the floor at the horizon go to 0 instead of dominating the loss, and near surfaces,
whose parallax the warp needs right, get the largest values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from cameo.cameras import focus_depth, pixel_centers

MAX_DISPARITY = 4.0
"""Targets nearer than a quarter of the look-at depth are clamped here."""
MIN_DISPARITY = 0.05
"""Predictions farther than 20x the look-at depth (sky, the floor at the horizon) are left without depth, as sky is
in a rendered depth map."""


def _block(c_in: int, c_out: int, groups: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU())


class MonoDepthNet(ModelMixin, ConfigMixin):
    """A U-shaped encoder-decoder: RGB plus each pixel's normalised ray ``((u - cx) / fx, (v - cy) / fy)`` ->
    look-at depth / depth. Why hand-written: diffusers' UNets are denoisers with a timestep input; this is a
    plain regressor of a few hundred thousand parameters."""

    @register_to_config
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128, 128)):
        super().__init__()
        self.down = nn.ModuleList()
        c_in = 5
        for width in widths:
            self.down.append(_block(c_in, width))
            c_in = width
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, images: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """``images [N,3,H,W]`` in [0, 1], ``K [N,3,3]`` -> relative disparity ``[N,H,W]``."""
        x = torch.cat([images * 2.0 - 1.0, _rays(K, *images.shape[-2:]).to(images)], dim=1)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
        return self.head(x)[:, 0]

    @torch.no_grad()
    def estimate(self, images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
        """Z-depth ``[N,H,W]`` of views ``images [N,3,H,W]``, ``K``, ``c2w`` in the units of their cameras, NaN where
        the network sees sky; ``focus [3]``: the world point the cameras look at."""
        scale = _look_at_depths(K, c2w, focus)
        param = next(self.parameters())
        disparity = self(images.to(param), K.to(param)).float().cpu()
        depth = scale[:, None, None].cpu() / disparity.clamp_min(MIN_DISPARITY)
        return torch.where(disparity > MIN_DISPARITY, depth, torch.nan)


def relative_disparity(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """The network's target for z-depth ``depth [N,H,W]`` (NaN = sky): look-at depth / depth, in
    [0, :data:`MAX_DISPARITY`], sky 0."""
    scale = _look_at_depths(K, c2w, focus)
    return torch.nan_to_num(scale[:, None, None] / depth.float(), nan=0.0).clamp(0.0, MAX_DISPARITY)


def _look_at_depths(K: torch.Tensor, c2w: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """``[N]``: the z-depth of the world point ``focus [3]`` in each view (the proxy plane's depth)."""
    return torch.stack([focus_depth(focus.float(), k, c) for k, c in zip(K.float().cpu(), c2w.float().cpu())])


def _rays(K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[N,2,H,W]``: each pixel centre's ``((u - cx) / fx, (v - cy) / fy)``."""
    uv = pixel_centers(height, width)
    K = K.float().cpu()
    x = (uv[None, ..., 0] - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None]
    y = (uv[None, ..., 1] - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None]
    return torch.stack([x, y], dim=1)
