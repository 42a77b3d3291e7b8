"""Benchmark: time and peak memory of one multi-view training step, with and without the CAMEO loss.

A step = forward of the MultiViewUNet on B samples x F views (1 reference + noisy targets, v-prediction MSE on the
targets), optionally the CAMEO loss at the config's layer against synthetic correspondences, backward, AdamW.
Each mode runs in its own subprocess so that its peak RSS is its own. Prints a markdown table.

CPU allocator: glibc malloc returns large blocks to the OS and pays page faults every step; run with
``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4`` (Debian package libgoogle-perftools4) for
representative numbers. On a shared machine report the median and the load average printed with the table.

    python benchmarks/bench_train_step.py --config demo-cpu --batch 4 --views 4 --steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch


def _synthetic_batch(spec, batch: int, views: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    size = spec.latent_size
    latents = torch.randn(batch, views, spec.latent_channels, size, size, generator=generator)
    ref_mask = torch.zeros(batch, views, dtype=torch.bool)
    ref_mask[:, 0] = True
    timesteps = torch.randint(1, 1000, (batch, views), generator=generator).masked_fill(ref_mask, 0)
    plucker = torch.randn(batch, views, 6, spec.image_size, spec.image_size, generator=generator)
    return {"latents": latents, "timesteps": timesteps, "plucker": plucker, "ref_mask": ref_mask}


def run_mode(config: str, batch: int, views: int, steps: int, warmup: int, modes: list[bool], bf16: bool, threads: int) -> dict:
    """Time training steps cycling through ``modes`` (CAMEO on/off), ``steps`` per mode after ``warmup`` cycles.

    Alternating the modes in one process exposes both to the same background load (the machine is shared).
    Returns per-mode step times (seconds, in step order) and this process's peak RSS.
    """
    from cameo.cameo_loss import cameo_loss
    from cameo.model import build_model, count_parameters, get_spec, layer_downsample

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = get_spec(config)
    model = build_model(spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    data = _synthetic_batch(spec, batch, views, gen)
    layer = model.config.cameo_layer
    tokens = (spec.latent_size // layer_downsample(layer)) ** 2
    index = torch.stack([torch.randperm(tokens, generator=gen) for _ in range(batch * views * views)])
    index = index.reshape(batch, views, views, tokens)
    valid = torch.rand(batch, views, views, tokens, generator=gen) < 0.6
    valid &= ~torch.eye(views, dtype=torch.bool)[None, :, :, None]

    times: dict[bool, list[float]] = {mode: [] for mode in modes}
    for step, cameo in enumerate(modes * (warmup + steps)):
        start = time.perf_counter()
        noise = torch.randn_like(data["latents"])
        target_views = ~data["ref_mask"]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), model.attention_control(
            capture=[layer] if cameo else []
        ) as control:
            noisy = torch.where(target_views[:, :, None, None, None], data["latents"] + noise, data["latents"])
            pred = model(noisy, data["timesteps"], data["plucker"], data["ref_mask"])
        loss = ((pred.float() - noise) ** 2)[target_views].mean()
        if cameo:
            loss = loss + 0.02 * cameo_loss(control.store[layer], index, valid, model.cameo_head)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup * len(modes):
            times[cameo].append(time.perf_counter() - start)
    return {
        "params": count_parameters(model),
        "times": {"cameo" if mode else "plain": t for mode, t in times.items()},
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo-cpu", help="model config name (cameo.model.MODEL_CONFIGS)")
    parser.add_argument("--batch", type=int, default=4, help="samples per step")
    parser.add_argument("--views", type=int, default=4, help="views per sample (1 reference + targets)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per mode (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the UNet (CAMEO stays fp32)")
    parser.add_argument("--worker", choices=["plain", "paired"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        modes = [False] if args.worker == "plain" else [False, True]
        result = run_mode(args.config, args.batch, args.views, args.steps, args.warmup, modes, args.bf16, args.threads)
        print(json.dumps(result))
        return

    runs = {}
    for worker in ("plain", "paired"):  # plain-only process: its peak RSS is the baseline's
        cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", worker]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs[worker] = json.loads(out.strip().splitlines()[-1])
    paired = runs["paired"]["times"]
    tcmalloc = "tcmalloc" in os.environ.get("LD_PRELOAD", "")
    print(
        f"config {args.config}, {runs['plain']['params'] / 1e6:.2f}M params, batch {args.batch} x {args.views} views, "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}, {args.threads} threads, tcmalloc {'on' if tcmalloc else 'off'}, "
        f"load average {os.getloadavg()[0]:.2f} (steps of both modes alternate in one process)\n"
    )
    print("| mode | median s/step | min s/step | peak RSS GB |")
    print("|---|---|---|---|")
    for mode, rss_run in (("plain", "plain"), ("cameo", "paired")):
        t = paired[mode]
        print(f"| {mode} | {statistics.median(t):.3f} | {min(t):.3f} | {runs[rss_run]['peak_rss_gb']:.2f} |")
    ratios = [c / p for c, p in zip(paired["cameo"], paired["plain"])]
    print(f"\nCAMEO overhead: {(statistics.median(ratios) - 1) * 100:+.1f}% (median of paired step ratios; "
          f"min-vs-min {(min(paired['cameo']) / min(paired['plain']) - 1) * 100:+.1f}%; target <= +15%)")

if __name__ == "__main__":
    main()
