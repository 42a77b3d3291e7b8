"""Learning-curve arithmetic of the paper-claim benchmark: when does a run first reach a target score, and how
many times fewer steps does CAMEO need than the baseline to reach the baseline's final score (paper: 2x)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def steps_to_reach(curve: Sequence[tuple[int, float]], target: float) -> float:
    """First step at which ``curve`` (``(step, score)``, higher is better) reaches ``target``, interpolating
    linearly between evaluated steps; ``nan`` if it never does."""
    points = sorted(curve)
    for i, (step, score) in enumerate(points):
        if score >= target:
            if i == 0:
                return float(step)
            prev_step, prev_score = points[i - 1]
            return prev_step + (target - prev_score) / (score - prev_score) * (step - prev_step)
    return math.nan


def step_ratio(baseline: Sequence[tuple[int, float]], cameo: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """``(steps CAMEO needs to reach the baseline's final score, baseline steps / those steps)``.

    Both are ``nan`` when CAMEO never reaches it within its evaluated steps.
    """
    final_step, final_score = max(baseline)
    needed = steps_to_reach(cameo, final_score)
    return needed, (final_step / needed if needed > 0 else math.nan)
