"""Render speed per view (one thread) and dataset generation throughput; prints a table.

Usage: python benchmarks/bench_data_render.py [--scenes 40] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from cameo.data.procedural import build_scene
from cameo.data.render import render_views
from cameo.data.shards import DatasetConfig, generate_dataset


def per_view_ms(kind: str, resolution: int, supersample: int, scenes: int = 4, views: int = 8) -> float:
    total = 0.0
    for i in range(scenes):
        scene, c2w, K = build_scene(kind, 0, i, views, resolution)
        start = time.perf_counter()
        render_views(scene, c2w, K, resolution, resolution, supersample)
        total += time.perf_counter() - start
    return 1000 * total / (scenes * views)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scenes", type=int, default=40, help="scenes per kind for the generation throughput")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    print("| kind | resolution | supersample | ms / view (1 thread) |\n|---|---|---|---|")
    for kind in ("object", "room"):
        for res, ss in ((64, 1), (64, 2), (128, 1)):
            print(f"| {kind} | {res} | {ss} | {per_view_ms(kind, res, ss):.1f} |")
    print("\n| kind | scenes | views | workers | wall s | scenes / s |\n|---|---|---|---|---|---|")
    for kind in ("object", "room"):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate_dataset(tmp, DatasetConfig(kind=kind, num_scenes=args.scenes, shard_size=10), args.workers,
                             progress=False)
            wall = time.perf_counter() - start
        print(f"| {kind} | {args.scenes} | 8 | {args.workers} | {wall:.1f} | {args.scenes / wall:.2f} |")


if __name__ == "__main__":
    main()
