"""Seconds per trajectory (2 inputs + N generated views, paper Sec. G: N = 98) for a model config on this machine.

Uses trajectories.plan's two-pass anchor plan when it is importable, else a stand-in with the same shape (anchors
every `--anchor-every` path views generated with the inputs; then chunks conditioned on their two nearest anchors).
Random weights unless --checkpoint is given: timing does not depend on the weights.

    python benchmarks/bench_sampling.py --config demo-cpu --views 98 --steps 50
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from cameo.cameras import look_at
from cameo.model import build_codec, build_model, count_parameters, get_spec
from cameo.sampling import generate_trajectory


def standin_plan(num_inputs: int, num_path: int, anchor_every: int, chunk: int) -> SimpleNamespace:
    """Pass 1: anchors with the inputs; pass 2: the other path views in chunks, each with its 2 nearest anchors."""
    anchors = list(range(num_inputs + anchor_every // 2, num_inputs + num_path, anchor_every))
    rest = [i for i in range(num_inputs, num_inputs + num_path) if i not in anchors]
    groups = []
    for start in range(0, len(rest), chunk):
        targets = rest[start:start + chunk]
        centre = sum(targets) / len(targets)
        near = sorted(sorted(anchors, key=lambda a: abs(a - centre))[:2])
        groups.append(SimpleNamespace(cond=near, targets=targets))
    return SimpleNamespace(passes=[[SimpleNamespace(cond=list(range(num_inputs)), targets=anchors)], groups])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo-cpu")
    parser.add_argument("--views", type=int, default=98, help="generated path views")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cfg", type=float, default=2.0)
    parser.add_argument("--anchor-every", type=int, default=12)
    parser.add_argument("--chunk", type=int, default=6, help="targets per second-pass group (stand-in plan)")
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
    order = [0, n + args.views - 1] + list(range(1, n + args.views - 1))  # first and last cameras are the inputs
    c2w = c2w[order]
    K = torch.tensor([[size * 1.2, 0, size / 2], [0, size * 1.2, size / 2], [0, 0, 1]]).expand(len(c2w), 3, 3)
    images = torch.rand(n, 3, size, size)
    try:
        from trajectories.plan import two_pass_plan  # type: ignore[import-not-found]

        plan, plan_name = two_pass_plan(n, args.views), "trajectories.plan"
    except ImportError:
        plan, plan_name = standin_plan(n, args.views, args.anchor_every, args.chunk), "stand-in"
    groups = sum(len(p) for p in plan.passes)

    print(f"config {args.config} ({count_parameters(model) / 1e6:.1f}M params, {size}px, random weights), "
          f"{args.views} views, {args.steps} DDIM steps, CFG {args.cfg}, plan {plan_name} ({groups} groups), "
          f"{args.threads} threads")
    print("| groups per forward | seconds / trajectory | seconds / view |")
    print("|---|---|---|")
    for gpb in args.groups_per_batch:
        start = time.perf_counter()
        generate_trajectory(model, codec, images, K[:n], c2w[:n], K[n:], c2w[n:], plan, steps=args.steps,
                            cfg=args.cfg, groups_per_batch=gpb, show_progress=False)
        seconds = time.perf_counter() - start
        print(f"| {gpb} | {seconds:.1f} | {seconds / args.views:.2f} |")


if __name__ == "__main__":
    main()
