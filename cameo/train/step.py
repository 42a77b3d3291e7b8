"""The randomness of one training step, as pure functions (no I/O, no accelerate): the per-step generator and the
camera dropout of classifier-free guidance. The diffusion maths itself (camera conditioning, noising, the denoising
loss) is shared with sampling and evaluation in :mod:`cameo.diffusion`.
"""

from __future__ import annotations

import torch


def step_generator(seed: int, micro_step: int, rank: int) -> torch.Generator:
    """A generator for all per-step randomness, keyed by (seed, micro-step, rank).

    Keying the draws on the position makes a resumed run draw exactly what the uninterrupted one would have,
    whatever the global RNG state, and gives every process different draws.
    """
    mixed = (seed * 1_000_003 + micro_step) * 65_537 + rank
    return torch.Generator().manual_seed(mixed % (2**63 - 1))


def camera_dropout(batch: int, prob: float, mode: str, gen: torch.Generator) -> torch.Tensor:
    """``[B]`` bool, True where the camera embedding is zeroed (one draw for the whole batch, or one per sample)."""
    draws = torch.rand(1 if mode == "batch" else batch, generator=gen)
    return (draws < prob).expand(batch).clone()
