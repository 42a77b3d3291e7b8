"""Two-pass group planning: coverage, group sizes, causality, spread of anchors, nearest conditioning."""

from __future__ import annotations

import pytest
import torch

from trajectories.paths import two_view_path
from trajectories.plan import Group, Plan, plan_generation


def _check(plan: Plan, num_views: int, inputs: list[int], F: int) -> None:
    """The invariants, checked here independently of Plan.validate."""
    seen: list[int] = []
    available = set(inputs)
    for groups in plan.passes:
        new = set()
        for g in groups:
            assert 1 <= len(g.targets) and 1 <= len(g.cond) and len(g.cond) + len(g.targets) <= F
            assert set(g.cond) <= available, (g, available)
            new |= set(g.targets)
            seen += g.targets
        available |= new
    assert sorted(seen) == [i for i in range(num_views) if i not in inputs]


@pytest.mark.parametrize("F", range(3, 9))
def test_plan_covers_every_target_once(F: int) -> None:
    for n_targets in range(1, 201):
        for inputs, total in (([0, n_targets + 1], n_targets + 2), ([0], n_targets + 1)):
            plan = plan_generation(total, inputs, F)
            _check(plan, total, inputs, F)
            assert plan.passes[0] == tuple(g for p, g in plan.groups() if p == 0)
            assert set(plan.anchors) == {t for g in plan.passes[0] for t in g.targets}


def test_plan_is_deterministic_and_small_cases_take_one_call() -> None:
    assert plan_generation(100, [0, 99], 8) == plan_generation(100, [0, 99], 8)
    plan = plan_generation(8, [0, 7], 8)
    assert plan.passes == ((Group((0, 7), (1, 2, 3, 4, 5, 6)),),)
    assert plan_generation(2, [0, 1], 4).passes == ()


def test_default_plan_for_the_paper_protocol() -> None:
    """2 inputs + 98 targets with F = 8: anchors evenly spread, every pass-2 chunk between its two anchors."""
    plan = plan_generation(100, [0, 99], 8)
    gaps = torch.diff(torch.tensor((0, *plan.anchors, 99)))
    assert gaps.max() - gaps.min() <= 1  # evenly spread along the path
    assert all(len(g.targets) <= 6 for g in plan.passes[0])
    assert all(g.cond == (0, 99) for g in plan.passes[0])  # anchors are generated with the inputs
    for g in plan.passes[1]:
        assert len(g.cond) == 2 and g.cond[0] < min(g.targets) and max(g.targets) < g.cond[1]  # brackets
    assert plan.num_calls == len(plan.passes[0]) + len(plan.passes[1]) == 18
    one_view = plan_generation(99, [0], 8)
    assert one_view.anchors[-1] == 98  # open end: an anchor at the far end of the path
    assert max(len(g.targets) for g in one_view.passes[1]) <= 6


def test_many_inputs_condition_on_nearest_inputs() -> None:
    plan = plan_generation(30, [0, 10, 20, 29], 3)
    _check(plan, 30, [0, 10, 20, 29], 3)
    for g in plan.passes[0]:
        assert len(g.cond) == 2 and len(g.targets) == 1


def test_camera_distance_conditioning() -> None:
    """With poses, 'nearest' is by camera centre: input 11 is placed right next to view 3 in space."""
    c2w = torch.eye(4).repeat(12, 1, 1)
    c2w[:, 0, 3] = torch.arange(12.0)
    c2w[11, 0, 3] = 3.2
    by_index = plan_generation(12, [0, 11], 3, num_anchors=1, n_cond=1)
    by_camera = plan_generation(12, [0, 11], 3, c2w=c2w, num_anchors=1, n_cond=1)
    assert by_index.anchors == by_camera.anchors == (6,)
    group_index = next(g for p, g in by_index.groups() if p == 1 and 3 in g.targets)
    group_camera = next(g for p, g in by_camera.groups() if p == 1 and 3 in g.targets)
    assert group_index.targets == group_camera.targets == (3, 4)
    assert group_index.cond == (6,) and group_camera.cond == (11,)


def test_plan_on_a_real_path_and_errors() -> None:
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[1, 0, 3] = 1.0
    K = torch.eye(3).repeat(2, 1, 1)
    path = two_view_path(c2w, K, n_targets=20, mode="linear")
    plan = plan_generation(len(path), path.input_indices, 5, c2w=path.c2w)
    _check(plan, len(path), list(path.input_indices), 5)
    with pytest.raises(ValueError, match="frames_per_group"):
        plan_generation(10, [0], 1)
    with pytest.raises(ValueError, match="input_indices"):
        plan_generation(10, [0, 10], 4)
    bad = Plan(4, (0,), 3, (1,), ((Group((0,), (1, 2)),), (Group((3,), (3,)),)))
    with pytest.raises(ValueError, match="not yet available"):
        bad.validate()
