"""Token correspondences per 4-view sample: KD-tree vs batched-matmul backend, at 32x32 and 64x64 tokens.

Usage: python benchmarks/bench_correspondence.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from cameo.cameras import unproject_depth
from cameo.correspondence import token_correspondences
from cameo.data.procedural import generate_scene


def timed(fn, repeat: int = 5) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return 1000 * (time.perf_counter() - start) / repeat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    s = generate_scene("object", 0, 1, views=4, resolution=256, supersample=1)
    pm = unproject_depth(torch.from_numpy(s.depth), torch.from_numpy(s.K), torch.from_numpy(s.c2w))
    pm = pm.permute(0, 3, 1, 2)[None]
    print("| tokens | kdtree backend (CPU default) ms | matmul backend ms |\n|---|---|---|")
    for side in (32, 64):
        hw = (side, side)
        print(f"| {side}x{side} | {timed(lambda: token_correspondences(pm, hw, backend='kdtree')):.1f} | "
              f"{timed(lambda: token_correspondences(pm, hw, backend='matmul')):.1f} |")


if __name__ == "__main__":
    main()
