"""Camera conditioning encoder: per-pixel Plücker rays + reference mask -> features added after ``conv_in``.

diffusers has no module for a dense additive condition at the UNet's first width, so this small conv stack is
written here (same idea as CAT3D/MVGenMaster: a few stride-2 GroupNorm+SiLU steps, then a zero-initialised conv,
so a freshly added encoder leaves a pretrained UNet's output unchanged).
"""

from __future__ import annotations

import torch
from torch import nn


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(32, channels // 4) or 1, num_channels=channels)


class CameraEncoder(nn.Module):
    """``[N, in_channels, H, W] -> [N, out_channels, H / 2**(len(channels)-1), W / ...]``.

    ``channels[0]`` is the width at image resolution; each further entry is one stride-2 step.
    """

    def __init__(self, channels: tuple[int, ...], out_channels: int, in_channels: int = 7) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 3, padding=1), _group_norm(channels[0]), nn.SiLU()]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), _group_norm(c_out), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.zero_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.zero_out.weight)
        nn.init.zeros_(self.zero_out.bias)
        self.downsample = 2 ** (len(channels) - 1)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.zero_out(self.body(cond))
