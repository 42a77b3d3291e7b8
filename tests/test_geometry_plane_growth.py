"""Growing a plane from its matched pixels: connectivity and the floor palette (pure tensor checks)."""

from __future__ import annotations

import torch

from cameo.geometry.plane_growth import connected_to, floor_palette, near_palette


def test_only_regions_holding_a_seed_are_kept() -> None:
    candidates = torch.zeros(6, 6, dtype=torch.bool)
    candidates[0, :3] = True  # touches the seed
    candidates[4:, 4:] = True  # an island without a seed
    candidates[2, 2] = True  # diagonal to the seed's region only: 4-connectivity keeps it apart
    seeds = torch.zeros(6, 6, dtype=torch.bool)
    seeds[1, 0] = True
    kept = connected_to(candidates, seeds)
    assert kept[0, :3].all() and kept[1, 0] and not kept[4:, 4:].any() and not kept[2, 2]
    assert not connected_to(candidates, torch.zeros_like(seeds)).any()


def test_palette_holds_the_seed_colours_only() -> None:
    colours = torch.zeros(2, 3, 4, 4)
    colours[:, 0, :2] = 1.0  # red top half, black bottom half
    seeds = torch.zeros(2, 4, 4, dtype=torch.bool)
    seeds[:, 0, 0] = True
    palette = floor_palette(colours, seeds)
    assert palette.shape == (2, 3) and torch.equal(palette[0], torch.tensor([1.0, 0.0, 0.0]))
    like = near_palette(colours[0], palette)
    assert like[:2].all() and not like[2:].any()
    assert not near_palette(colours[0], palette[:0]).any()
