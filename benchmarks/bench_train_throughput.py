"""Training throughput of cameo-train's step (forward + CAMEO loss + backward + AdamW) on synthetic batches.

Prints seconds per optimiser step and peak memory for a model preset with CAMEO off/on and fp32/bf16, so the
cost of the CAMEO loss and of mixed precision can be read off one table. The data is random (no I/O): it measures
the model step only. Example:
  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python benchmarks/bench_train_throughput.py \
      --preset demo-cpu --resolution 64 --batch-size 4 --steps 3
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import set_seed

from cameo.cameras import look_at
from cameo.model import build_model, get_spec
from cameo.train.model_setup import cameo_layer_name
from cameo.train.objective import CameoObjective, multiview_forward
from cameo.train.config import TrainConfig
from cameo.train.loop import _losses, make_noise_scheduler
from cameo.train.step import step_generator


def synthetic_batch(batch: int, views: int, size: int) -> dict:
    """Random images; cameras on an arc looking at a plane whose pointmaps give real correspondences."""
    angles = torch.linspace(-0.4, 0.4, views)
    eye = torch.stack([3 * angles.sin(), torch.zeros(views), -3 * angles.cos()], -1)
    c2w = look_at(eye, torch.zeros(views, 3), torch.tensor([0.0, -1.0, 0.0]).expand(views, 3))
    K = torch.tensor([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1.0]]).expand(views, 3, 3)
    v, u = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    plane = torch.stack([u, v, torch.zeros_like(u)], 0)
    return {
        "images": torch.rand(batch, views, 3, size, size),
        "K": K.expand(batch, -1, -1, -1).clone(),
        "c2w": c2w.expand(batch, -1, -1, -1).clone(),
        "pointmaps": plane.expand(batch, views, -1, -1, -1).clone(),
        "ref_mask": (torch.arange(views) < 1).expand(batch, -1).clone(),
    }


def measure(preset: str, resolution: int, batch: int, cameo: bool, precision: str, steps: int) -> tuple[float, float]:
    """(seconds per step after one warm-up step, peak memory in GB) of one step on precomputed latents.

    On CPU the peak is the process's maximum RSS so far (it never decreases between settings)."""
    cfg = TrainConfig(mixed_precision=precision)
    cfg.model.preset, cfg.data.resolution, cfg.cameo.enabled = preset, resolution, cameo
    set_seed(0)
    # random weights (sd21 too: the throughput does not depend on them, so no SD2.1 folder is needed)
    spec = dataclasses.replace(get_spec(preset), cameo_layer=cameo_layer_name(cfg.cameo.layer) if cameo else None)
    accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())
    model = build_model(spec, cameo_head=cfg.cameo.head).to(accelerator.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = make_noise_scheduler(cfg)
    latent = resolution // spec.latent_downsample

    class Parts:  # what _losses reads: forward, and a codec-free path with precomputed latents
        forward = staticmethod(multiview_forward(spec.cameo_layer))
        codec = None

    objective = CameoObjective(accelerator.unwrap_model(model), cfg.cameo.tau, cfg.cameo.loss) if cameo else None
    data = synthetic_batch(batch, cfg.data.num_views, resolution)
    data["latents"] = torch.randn(batch, cfg.data.num_views, spec.latent_channels, latent, latent)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        terms = _losses(cfg, Parts, model, objective, data, step_generator(0, step, 0), scheduler, accelerator,
                        cameo)
        accelerator.backward(terms["loss"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 1e9
    return sum(times[1:]) / steps, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo-cpu", help="cameo.model preset (tiny, demo-cpu, sd21)")
    parser.add_argument("--resolution", type=int, default=64, help="image size in pixels")
    parser.add_argument("--batch-size", type=int, default=4, help="samples of 4 views per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--precisions", nargs="+", default=["no", "bf16"], choices=["no", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {args.threads} threads"
    print(f"preset {args.preset}, {args.resolution}px, batch {args.batch_size} x 4 views, {device}")
    print(f"| CAMEO | precision | s/step | peak memory (GB{', GPU' if torch.cuda.is_available() else ', RSS'}) |")
    print("|---|---|---|---|")
    for precision in args.precisions:
        for cameo in (False, True):
            seconds, peak = measure(args.preset, args.resolution, args.batch_size, cameo, precision, args.steps)
            print(f"| {'on' if cameo else 'off'} | {precision} | {seconds:.3f} | {peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
