"""The posed views a Gaussian fit sees: images of any size, which were observed, loss weights and step batches.

Input photos are fitted at their own resolution and aspect ratio, generated views at the model's: one
:class:`FitViews` holds both. Each optimisation step renders one batch at a common size (the rasteriser takes one
width and height per call): either observed views or generated views, never mixed, every view cropped to a random
patch of at most ``patch`` pixels a side, so a step costs the same whatever the photos' resolution. Generated views
are trusted less the farther they are from an observed camera (CAT3D: ``exp(-b s^2)``, ``b`` annealed from 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class FitViews:
    """Posed images for fitting; every view has its own size, ``K`` is for that size (OpenCV ``c2w``)."""

    images: list[torch.Tensor]  # [3, H_i, W_i] in [0, 1]
    K: torch.Tensor  # [V, 3, 3]
    c2w: torch.Tensor  # [V, 4, 4]
    observed: torch.Tensor  # [V] bool: captured inputs (True) or generated views (False)
    weights: torch.Tensor  # [V] float >= 0: base loss weight of each view

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def build(
        cls, images: torch.Tensor | Sequence[torch.Tensor], K: torch.Tensor, c2w: torch.Tensor,
        observed: torch.Tensor | Sequence[bool] | None = None, weights: torch.Tensor | None = None,
    ) -> "FitViews":
        """Validate and pack views; ``images`` is ``[V,3,H,W]`` or a list of ``[3,H_i,W_i]``. Defaults: every view
        observed, every weight 1."""
        imgs = [im.float() for im in images]
        V = len(imgs)
        if V == 0 or any(im.ndim != 3 or im.shape[0] != 3 for im in imgs):
            raise ValueError(f"images must be [V,3,H,W] or a list of [3,H,W], got {[tuple(im.shape) for im in imgs]}")
        if K.shape != (V, 3, 3) or c2w.shape != (V, 4, 4):
            raise ValueError(f"K must be [{V},3,3] and c2w [{V},4,4], got {tuple(K.shape)} and {tuple(c2w.shape)}")
        if any(not torch.isfinite(im).all() or im.min() < 0 or im.max() > 1 for im in imgs):
            raise ValueError("images must be finite and in [0, 1]")
        obs = torch.ones(V, dtype=torch.bool) if observed is None else torch.as_tensor(observed, dtype=torch.bool)
        if obs.shape != (V,):
            raise ValueError(f"observed must be [{V}] bool, got {tuple(obs.shape)}")
        return cls(imgs, K.float(), c2w.float(), obs.cpu(), _check_weights(weights, V))

    @property
    def weighted_observed(self) -> torch.Tensor:
        """``[V]`` bool: the captured views with a say in the fit (weight > 0)."""
        return self.observed & (self.weights > 0)

    def sizes(self) -> list[tuple[int, int]]:
        """(height, width) of every view."""
        return [(int(im.shape[1]), int(im.shape[2])) for im in self.images]


def _check_weights(view_weights: torch.Tensor | None, V: int) -> torch.Tensor:
    """``view_weights`` as a float ``[V]`` CPU tensor (all 1 when None)."""
    if view_weights is None:
        return torch.ones(V)
    w = torch.as_tensor(view_weights, dtype=torch.float32).cpu()
    if w.shape != (V,) or not torch.isfinite(w).all() or (w < 0).any() or not (w > 0).any():
        raise ValueError(f"view_weights must be [{V}] finite, >= 0 and not all 0, got {tuple(w.shape)}")
    return w


def nearest_observed_distance(c2w: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Distance ``[V]`` from every camera centre to the nearest observed camera centre (0 for observed views)."""
    centres = c2w[:, :3, 3]
    return torch.cdist(centres, centres[observed.to(centres.device)]).min(1).values.cpu()


def trust_weights(views: FitViews, distance: torch.Tensor, step: int, iterations: int, falloff: float) -> torch.Tensor:
    """Loss weight of every view at ``step``: the base weight, times ``exp(-b s^2)`` for generated views with ``s``
    their ``distance`` to the nearest observed camera and ``b`` rising linearly from 0 to ``falloff`` (CAT3D)."""
    b = falloff * step / max(iterations - 1, 1)
    return views.weights * torch.where(views.observed, torch.ones_like(distance), torch.exp(-b * distance ** 2))


@dataclass
class Batch:
    """One step's views: indices, the crop's top-left corner per view (x0, y0), and the common render size."""

    index: torch.Tensor  # [n] long
    corner: torch.Tensor  # [n, 2] long (x0, y0)
    width: int
    height: int

    def intrinsics(self, K: torch.Tensor) -> torch.Tensor:
        """``K`` of the batch's views moved to their crops (principal point shifted by the corner)."""
        out = K[self.index].clone()
        out[:, :2, 2] -= self.corner.to(out)
        return out

    def targets(self, views: FitViews, device: torch.device) -> torch.Tensor:
        """The cropped images ``[n, 3, height, width]``."""
        crops = [views.images[i][:, y : y + self.height, x : x + self.width]
                 for i, (x, y) in zip(self.index.tolist(), self.corner.tolist())]
        return torch.stack(crops).to(device)


class BatchSampler:
    """Cycles through shuffled observed and generated views; observed batches every ``observed_every`` steps and
    at every step from ``polish_from`` on (every step when there are no generated views, never when there are no
    observed ones)."""

    def __init__(self, views: FitViews, views_per_step: int, patch: int, observed_every: int,
                 generator: torch.Generator, polish_from: int | None = None) -> None:
        self.views, self.per_step, self.patch, self.every, self.gen = views, views_per_step, patch, observed_every, generator
        self.polish_from = polish_from
        self.pools = {kind: torch.nonzero(views.observed == kind).flatten() for kind in (True, False)}
        self.queues = {True: torch.zeros(0, dtype=torch.long), False: torch.zeros(0, dtype=torch.long)}
        self.sizes = torch.tensor(views.sizes())  # [V, 2] (h, w)

    def _kind(self, step: int) -> bool:
        if not len(self.pools[False]):
            return True
        if not len(self.pools[True]):
            return False
        if self.polish_from is not None and step >= self.polish_from:
            return True
        return step % self.every == 0

    def next(self, step: int) -> Batch:
        """The views of ``step``, with random crops of a common size."""
        kind = self._kind(step)
        pool, n = self.pools[kind], min(self.per_step, len(self.pools[kind]))
        while len(self.queues[kind]) < n:
            self.queues[kind] = torch.cat([self.queues[kind], pool[torch.randperm(len(pool), generator=self.gen)]])
        index, self.queues[kind] = self.queues[kind][:n], self.queues[kind][n:]
        size = self.sizes[index]
        height, width = min(self.patch, int(size[:, 0].min())), min(self.patch, int(size[:, 1].min()))
        room = size - torch.tensor([height, width])  # [n, 2] (h, w) slack
        corner = (torch.rand(n, 2, generator=self.gen) * (room.flip(-1) + 1)).long()  # (x0, y0)
        return Batch(index, corner, width, height)
