"""Procedural solid textures: colour as a function of the 3D surface point.

Solid (3D) textures are view-independent by construction, so every view of a surface point sees the same colour,
which is what exact multi-view training data and pointmap correspondences need. Hand-written because no library
in the stack evaluates solid textures on arbitrary points.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

PATTERNS = ("stripes", "checker", "noise", "field", "dots")


_TABLE_BITS = 7  # 128^3 lattice of random values, periodic; seeds pick different offsets into it


@functools.lru_cache(maxsize=1)
def _lattice() -> torch.Tensor:
    """Fixed random lattice values (flat ``[128^3]``); a table lookup is ~5x faster than integer hashing."""
    n = 1 << _TABLE_BITS
    return torch.from_numpy(np.random.default_rng(0x5EED).random(n**3, dtype=np.float32))


def value_noise(points: torch.Tensor, seed: int) -> torch.Tensor:
    """Smooth value noise in [0, 1] at ``points [N, 3]`` (trilinear, smoothstep-weighted lattice values)."""
    base = torch.floor(points)
    frac = points - base
    w1 = frac * frac * (3.0 - 2.0 * frac)
    w0 = 1.0 - w1
    bits, mask = _TABLE_BITS, (1 << _TABLE_BITS) - 1
    offset = torch.tensor([(seed * k * 2654435761 >> 7) & mask for k in (1, 3, 5)], dtype=torch.int32)
    i = base.to(torch.int32) + offset
    table = _lattice()
    out = torch.zeros(points.shape[0], dtype=points.dtype, device=points.device)
    for corner in range(8):  # 8 flat gathers beat one [N, 8, 3] gather (int32, cache-friendly temporaries)
        o = [(corner >> k) & 1 for k in range(3)]
        weight = (w1 if o[0] else w0)[:, 0] * (w1 if o[1] else w0)[:, 1] * (w1 if o[2] else w0)[:, 2]
        idx = (((i[:, 0] + o[0]) & mask) << (2 * bits)) | (((i[:, 1] + o[1]) & mask) << bits) | ((i[:, 2] + o[2]) & mask)
        out = out + weight * table[idx].to(points.dtype)
    return out


def fbm(points: torch.Tensor, seed: int, octaves: int = 3) -> torch.Tensor:
    """Fractal sum of value noise in [0, 1] (octaves double the frequency and halve the amplitude)."""
    total = torch.zeros(points.shape[0], dtype=points.dtype, device=points.device)
    norm = 0.0
    for o in range(octaves):
        amp = 0.5**o
        total = total + amp * value_noise(points * (2.0**o), seed + 101 * o)
        norm += amp
    return total / norm


@dataclass(frozen=True)
class SolidTexture:
    """One procedural material: a pattern mixing palette colours plus fine noise detail for matchability."""

    pattern: str
    palette: tuple[tuple[float, float, float], ...]  # 3 RGB colours in [0, 1]
    frequency: float  # pattern cycles per world unit
    direction: tuple[float, float, float]  # stripe normal (unit)
    seed: int

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """RGB ``[N, 3]`` in [0, 1] at world points ``[N, 3]``."""
        p = points * self.frequency
        pal = torch.tensor(self.palette, dtype=points.dtype, device=points.device)
        warp = fbm(p * 0.5, self.seed + 7, octaves=2)
        if self.pattern == "stripes":
            d = torch.tensor(self.direction, dtype=points.dtype, device=points.device)
            s = (torch.sin(2 * np.pi * (p @ d + 0.8 * warp)) > 0).to(points.dtype)
        elif self.pattern == "checker":
            s = (torch.floor(p + 0.3 * warp[:, None]).to(torch.int64).sum(-1) % 2).to(points.dtype)
        elif self.pattern == "dots":
            cell = p - torch.floor(p) - 0.5
            s = (cell.norm(dim=-1) < 0.35).to(points.dtype)
        elif self.pattern == "noise":
            s = (fbm(p, self.seed) > 0.5).to(points.dtype)
        elif self.pattern == "field":
            s = fbm(p * 0.7, self.seed)
        else:
            raise ValueError(f"unknown texture pattern {self.pattern!r}; choose from {PATTERNS}")
        # Two-colour pattern over a smoothly varying third colour, times fine detail so flat areas still match.
        base = pal[0] + (pal[1] - pal[0]) * s[:, None]
        base = base + (pal[2] - base) * (0.35 * warp[:, None])
        detail = 0.8 + 0.4 * value_noise(p * 4.0, self.seed + 13)
        return (base * detail[:, None]).clamp(0.0, 1.0)


def random_texture(rng: np.random.Generator, frequency_range: tuple[float, float] = (1.5, 5.0)) -> SolidTexture:
    """Draw a random material: pattern, a saturated palette, frequency and stripe direction."""
    hsv = np.stack([rng.uniform(0, 1, 3), rng.uniform(0.35, 1.0, 3), rng.uniform(0.3, 1.0, 3)], axis=1)
    palette = tuple(tuple(float(c) for c in _hsv_to_rgb(*row)) for row in hsv)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    return SolidTexture(
        pattern=str(rng.choice(PATTERNS)),
        palette=palette,  # type: ignore[arg-type]
        frequency=float(rng.uniform(*frequency_range)),
        direction=tuple(float(x) for x in direction),  # type: ignore[arg-type]
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
