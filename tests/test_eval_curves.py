"""Learning-curve arithmetic of the paper-claim benchmark and its line chart."""

from __future__ import annotations

import math

import numpy as np

from cameo.eval.curves import step_ratio, steps_to_reach
from cameo.eval.report import line_chart


def test_steps_to_reach_interpolates_between_evaluated_steps():
    curve = [(1000, 10.0), (500, 8.0), (1500, 12.0)]  # any order
    assert steps_to_reach(curve, 8.0) == 500
    assert steps_to_reach(curve, 11.0) == 1250
    assert steps_to_reach(curve, 7.0) == 500  # already reached at the first evaluation
    assert math.isnan(steps_to_reach(curve, 12.5))


def test_step_ratio_is_two_when_cameo_reaches_the_final_baseline_score_in_half_the_steps():
    baseline = [(500, 10.0), (1000, 11.0), (1500, 11.5), (2000, 12.0)]
    cameo = [(500, 11.0), (1000, 12.0), (1500, 12.5), (2000, 13.0)]
    needed, ratio = step_ratio(baseline, cameo)
    assert needed == 1000 and ratio == 2.0
    needed, ratio = step_ratio(cameo, baseline)  # the slower run never reaches the faster one's final score
    assert math.isnan(needed) and math.isnan(ratio)


def test_line_chart_draws_each_series_in_its_own_colour():
    image = line_chart({"a": [(0, 1.0), (10, 2.0)], "b": [(0, 2.0), (10, 1.0)]}, "t", "x", "y")
    pixels = np.asarray(image).reshape(-1, 3)
    colours = {tuple(p) for p in pixels}
    assert (70, 110, 200) in colours and (220, 90, 60) in colours
    blank = line_chart({"a": [(0, math.nan)]}, "t", "x", "y")  # nothing to draw: title only, no crash
    assert (70, 110, 200) not in {tuple(p) for p in np.asarray(blank).reshape(-1, 3)}
