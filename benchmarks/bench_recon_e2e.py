"""Time the whole reconstruction (what ``cameo-recon`` runs) on a procedural demo scene, per stage.

Defaults are the command's defaults (98 generated views, 50 DDIM steps, CFG 2, 1000 fitting iterations). The model is
``--checkpoint``, else the bundled ``assets/model``, else an untrained ``demo-cpu`` model written to a temp folder:
the table then says ``random weights`` (timings are still those of the real architecture; the images are noise).

    python benchmarks/bench_recon_e2e.py                          # defaults (long on 2 CPU cores)
    python benchmarks/bench_recon_e2e.py --views 14 --steps 10 --fit-iterations 100
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from cameo.data.demo import make_demo_scenes
from cameo.model import build_model, get_spec, small_autoencoder
from cameo.pretrained import default_model_dir, load_pretrained, save_model_folder
from cameo.sampling import default_training_schedule
from cameo.scene import load_scene
from cameo.train.config import load_config
from recon.pipeline import ReconOptions, run_reconstruction


def random_demo_model(folder: Path) -> Path:
    """Untrained demo-cpu UNet + small autoencoder with the shipped demo-cpu training config (64 px, F = 4)."""
    torch.manual_seed(0)
    cfg = load_config("demo-cpu")
    spec = get_spec(cfg.model.preset)
    model = build_model(spec)
    return save_model_folder(folder, model, default_training_schedule(model.config.prediction_type), cfg,
                             vae=small_autoencoder(spec))


def main() -> None:
    d = ReconOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="exported model folder (default: bundled, else random)")
    parser.add_argument("--kind", default="object", help="demo scene kind (object or room)")
    parser.add_argument("--inputs", type=int, default=2, choices=(1, 2), help="input views of the demo scene")
    parser.add_argument("--resolution", type=int, default=128, help="demo scene image size")
    parser.add_argument("--views", type=int, default=d.num_views)
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--fit-iterations", type=int, default=d.fit_iterations)
    parser.add_argument("--fit-points", type=int, default=d.fit_points)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="output folder (default: a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_recon_"))
    out.mkdir(parents=True, exist_ok=True)

    checkpoint, weights = args.checkpoint, "trained (given)"
    if checkpoint is None and default_model_dir().is_dir():
        checkpoint, weights = default_model_dir(), "bundled"
    if checkpoint is None:
        checkpoint, weights = random_demo_model(out / "random-demo-cpu"), "random weights (untrained demo-cpu)"
    scene_file = make_demo_scenes(out / "demo", count=1, kinds=(args.kind,), num_inputs=args.inputs,
                                  resolution=args.resolution)[0]
    start = time.perf_counter()
    pretrained = load_pretrained(checkpoint, args.device)
    load_s = time.perf_counter() - start
    options = ReconOptions(num_views=args.views, steps=args.steps, fit_iterations=args.fit_iterations,
                           fit_points=args.fit_points, checkpoint=checkpoint, device=args.device)
    result = run_reconstruction(load_scene(scene_file), out / "splat.ply", options, pretrained=pretrained)
    total = time.perf_counter() - start

    print(f"\nmodel: {checkpoint} ({weights}); image {pretrained.image_size}px, F = {pretrained.frames_per_group}")
    print(f"scene: {scene_file} ({args.inputs} inputs, {args.resolution}px); {args.views} views, {args.steps} steps, "
          f"{args.fit_iterations} fit iterations, {args.fit_points} initial Gaussians -> {len(result.splats)}")
    print(f"machine: {platform.processor() or platform.machine()}, {args.device}, torch threads {args.threads}\n")
    print("| stage | seconds |\n|---|---|")
    print(f"| load model | {load_s:.2f} |")
    for name, seconds in result.stage_seconds.items():
        if name != "load":
            print(f"| {name} | {seconds:.2f} |")
    print(f"| **total** | **{total:.2f}** |")


if __name__ == "__main__":
    main()
