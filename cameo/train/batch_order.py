"""A stateless, resumable stream of training batches.

The items of micro-step k on rank r are a pure function of (seed, k, r): each epoch is a seeded permutation of the
training items, cut into consecutive batches dealt round-robin to the processes. Items are addressed as
``(epoch, index)`` so datasets can vary per pass (new view subsets). Resuming only needs k (the "data position"),
and no two ranks see the same batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class StreamBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batches of ``(epoch, index)`` keys, index in ``range(num_items)``, from micro-step ``start``."""

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0):
        if num_items < 1:
            raise ValueError("the training set is empty")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world, self.start = rank, world, start
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.num_items, generator=torch.Generator().manual_seed(
                self.seed * 7919 + epoch))}
        return self._perms[epoch]

    def keys(self, micro_step: int) -> list[tuple[int, int]]:
        """``(epoch, index)`` of the items of this rank's batch at ``micro_step``."""
        first = (micro_step * self.world + self.rank) * self.batch_size
        flat = torch.arange(first, first + self.batch_size)
        epochs, offsets = flat // self.num_items, flat % self.num_items
        return [(int(e), int(self._perm(int(e))[int(o)])) for e, o in zip(epochs, offsets)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while True:
            yield self.keys(step)
            step += 1
