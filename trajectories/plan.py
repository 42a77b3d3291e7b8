"""Group planning: which views a model that sees ``F`` views at a time generates together, conditioned on which.

Two passes, as in Stable Virtual Camera (docs: /work/shared/ANCHORS.md): pass 1 generates "anchor" targets spread
evenly along the path together with the inputs (``F - n_inputs`` anchors per group); pass 2 fills in every other
target in contiguous chunks, each conditioned on its nearest available views (inputs and anchors) by path index or
camera distance. Groups of one pass depend only on earlier passes, so a pass can run its groups in any order or
batched. Indices are path indices (``CameraPath`` order). Deterministic: ties go to the lower index.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Group:
    """One model call: ``cond`` views (already available) + ``targets`` (generated), all path indices."""

    cond: tuple[int, ...]
    targets: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """Passes of groups; ``anchors`` are the targets of pass 1."""

    num_views: int
    input_indices: tuple[int, ...]
    frames_per_group: int
    anchors: tuple[int, ...]
    passes: tuple[tuple[Group, ...], ...]

    def groups(self) -> Iterator[tuple[int, Group]]:
        """(pass number, group) in execution order."""
        for p, groups in enumerate(self.passes):
            for g in groups:
                yield p, g

    @property
    def num_calls(self) -> int:
        """Number of model calls (groups) in the plan."""
        return sum(len(g) for g in self.passes)

    def validate(self) -> None:
        """Raise ``ValueError`` unless every target is generated exactly once, each group fits in F views, and every
        conditioning view is an input or a target of an earlier pass."""
        available = set(self.input_indices)
        generated: list[int] = []
        for p, groups in enumerate(self.passes):
            new: set[int] = set()
            for g in groups:
                if not g.cond or not g.targets or len(g.cond) + len(g.targets) > self.frames_per_group:
                    raise ValueError(f"pass {p} group {g}: sizes must be >= 1 and total <= {self.frames_per_group}")
                if not set(g.cond) <= available:
                    raise ValueError(f"pass {p} group {g}: conditions on views not yet available")
                new.update(g.targets)
                generated.extend(g.targets)
            available |= new
        expected = sorted(set(range(self.num_views)) - set(self.input_indices))
        if sorted(generated) != expected:
            raise ValueError("targets are not covered exactly once")


def _nearest(
    chunk: Sequence[int], available: Sequence[int], k: int, centres: torch.Tensor | None
) -> tuple[int, ...]:
    """The ``k`` available views nearest to any view of ``chunk`` (camera-centre distance if ``centres`` is given,
    else path-index distance); ties go to the lower index; returned sorted."""
    avail = np.asarray(sorted(available))
    if centres is None:
        dist = np.abs(np.asarray(chunk)[:, None] - avail[None, :]).min(axis=0).astype(np.float64)
    else:
        dist = torch.cdist(centres[list(chunk)], centres[avail.tolist()]).amin(dim=0).numpy()
    order = np.lexsort((avail, dist))[:k]
    return tuple(sorted(int(i) for i in avail[order]))


def _balanced_chunks(run: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """Split ``run`` into the fewest contiguous chunks of at most ``size``, with near-equal lengths."""
    if not run:
        return []
    n_chunks = math.ceil(len(run) / size)
    return [tuple(int(i) for i in c) for c in np.array_split(np.asarray(run), n_chunks)]


def _runs(indices: Sequence[int]) -> list[list[int]]:
    """Split sorted path indices into maximal runs of consecutive indices."""
    arr = np.asarray(indices)
    return [r.tolist() for r in np.split(arr, np.flatnonzero(np.diff(arr) > 1) + 1)]


def _spread_anchors(targets: Sequence[int], inputs: Sequence[int], count: int) -> list[int]:
    """``count`` targets spread evenly along the path, treating inputs as already-placed anchors.

    Anchors go to each run of targets in proportion to its length (largest remainder). In a run between two inputs
    they split it into equal gaps; in a run open at one end (before the first / after the last input) the outermost
    anchor sits at the path's end, where no input constrains the views.
    """
    runs = _runs(targets)
    lengths = np.array([len(r) for r in runs])
    share = count * lengths / lengths.sum()
    alloc = np.floor(share).astype(int)
    alloc[np.argsort(-(share - alloc), kind="stable")[: count - alloc.sum()]] += 1
    anchors: list[int] = []
    for run, a in zip(runs, alloc):
        if a == 0:
            continue
        length, k = len(run), np.arange(1, a + 1)
        left, right = run[0] - 1 in inputs, run[-1] + 1 in inputs
        if left and right:
            ranks = np.floor(k * (length + 1) / (a + 1) + 0.5).astype(int) - 1
        else:
            ranks = np.floor(k * length / a + 0.5).astype(int) - 1
            ranks = ranks if left else length - 1 - ranks[::-1]
        anchors += [run[r] for r in ranks]
    return anchors


def plan_generation(
    num_views: int,
    input_indices: Sequence[int],
    frames_per_group: int,
    c2w: torch.Tensor | None = None,
    num_anchors: int | None = None,
    n_cond: int = 2,
) -> Plan:
    """Two-pass plan for a path of ``num_views`` poses whose ``input_indices`` are given views.

    ``frames_per_group`` (F) is how many views the model sees at once. Pass 1: ``num_anchors`` targets spread
    evenly along the path (default: one per ``F - n_cond + 1`` targets, so each gap fits one pass-2 call),
    generated in groups of ``F - n_inputs`` with the inputs (the nearest ``F - 1`` inputs when there are more).
    Pass 2: the remaining targets in contiguous chunks of at most ``F - n_cond``, each conditioned on its ``n_cond``
    nearest inputs/anchors. ``c2w [num_views, 4, 4]`` switches "nearest" from path index to camera distance.
    """
    inputs = tuple(sorted(set(int(i) for i in input_indices)))
    if frames_per_group < 2:
        raise ValueError(f"frames_per_group must be >= 2, got {frames_per_group}")
    if not inputs or len(inputs) != len(input_indices) or inputs[0] < 0 or inputs[-1] >= num_views:
        raise ValueError(f"input_indices must be distinct indices in [0, {num_views}), got {list(input_indices)}")
    if c2w is not None and c2w.shape[0] != num_views:
        raise ValueError(f"c2w has {c2w.shape[0]} poses for {num_views} views")
    centres = None if c2w is None else c2w[:, :3, 3].detach().double().cpu()
    targets = [i for i in range(num_views) if i not in set(inputs)]
    n_targets, F = len(targets), frames_per_group
    c1 = min(len(inputs), F - 1)
    cap1 = F - c1
    if n_targets <= cap1:
        anchors = targets
    else:
        cap2 = F - max(1, min(n_cond, F - 1))
        if num_anchors is None:  # segments between anchors then hold at most F - n_cond targets: one call each
            num_anchors = math.ceil(n_targets / (cap2 + 1))
        anchors = _spread_anchors(targets, inputs, max(1, min(num_anchors, n_targets)))
    pass1 = tuple(Group(_nearest(chunk, inputs, c1, centres), chunk) for chunk in _balanced_chunks(anchors, cap1))
    passes = [pass1] if pass1 else []
    rest = [i for i in targets if i not in set(anchors)]
    if rest:
        c2 = max(1, min(n_cond, F - 1))
        available = sorted(set(inputs) | set(anchors))
        chunks = [c for run in _runs(rest) for c in _balanced_chunks(run, F - c2)]
        passes.append(tuple(Group(_nearest(c, available, c2, centres), c) for c in chunks))
    plan = Plan(num_views, inputs, F, tuple(anchors), tuple(passes))
    plan.validate()
    return plan
