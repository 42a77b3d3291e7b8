"""Seconds per trajectory (2 inputs + N generated views, paper Sec. G: N = 98) for a model config on this machine.

Uses trajectories.plan's two-pass anchor plan (inputs = first and last camera, F views per model call).
Random weights: timing does not depend on the weights.

    LD_PRELOAD=libtcmalloc_minimal.so.4 python benchmarks/bench_sampling.py --config demo-cpu --views 98 --steps 50
"""

from __future__ import annotations

import argparse
import time

import torch

from cameo.cameras import look_at
from cameo.model import build_codec, build_model, count_parameters, get_spec
from cameo.sampling import generate_trajectory
from trajectories.plan import plan_generation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo-cpu")
    parser.add_argument("--views", type=int, default=98, help="generated path views")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cfg", type=float, default=2.0)
    parser.add_argument("--frames", type=int, default=4, help="views per model call (F) in the plan; demo-cpu trains with 4")
    parser.add_argument("--groups-per-batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    spec = get_spec(args.config)
    model, codec = build_model(spec).eval(), build_codec(spec)
    n, size = 2, spec.image_size
    angles = torch.linspace(0, 1.5, n + args.views)
    eye = torch.stack([3 * angles.sin(), torch.zeros_like(angles), -3 * angles.cos()], -1)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, -1.0, 0.0]).expand_as(eye))
    K = torch.tensor([[size * 1.2, 0, size / 2], [0, size * 1.2, size / 2], [0, 0, 1]]).expand(len(c2w), 3, 3)
    images = torch.rand(n, 3, size, size)
    plan = plan_generation(n + args.views, (0, n + args.views - 1), args.frames, c2w=c2w)

    print(f"config {args.config} ({count_parameters(model) / 1e6:.1f}M params, {size}px, random weights), "
          f"{args.views} views, {args.steps} DDIM steps, CFG {args.cfg}, F={args.frames} ({plan.num_calls} groups), "
          f"{args.threads} threads")
    print("| groups per forward | seconds / trajectory | seconds / view |")
    print("|---|---|---|")
    for gpb in args.groups_per_batch:
        start = time.perf_counter()
        generate_trajectory(model, codec, images, K, c2w, plan, steps=args.steps,
                            cfg=args.cfg, groups_per_batch=gpb, show_progress=False)
        seconds = time.perf_counter() - start
        print(f"| {gpb} | {seconds:.1f} | {seconds / args.views:.2f} |")


if __name__ == "__main__":
    main()
