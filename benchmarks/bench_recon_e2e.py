"""Time the whole reconstruction (what ``cameo-recon`` runs) on a procedural demo scene, per stage.

Defaults are the command's defaults (98 generated views, 50 DDIM steps, CFG 2, 1000 fitting iterations). The model is
``--checkpoint``, else the bundled ``assets/model``, else an untrained ``demo-cpu`` model written to a temp folder:
the table then says ``random weights`` (timings are still those of the real architecture; the images are noise).

    python benchmarks/bench_recon_e2e.py                          # defaults (long on 2 CPU cores)
    python benchmarks/bench_recon_e2e.py --views 14 --steps 10 --fit-iterations 100
    python benchmarks/bench_recon_e2e.py --scene assets/demo/object_00/scene.json --inputs-only-too --out out/e2e

With ``--scene`` (a bundled demo scene: its ``gt/`` holds every view of the capture) the ply is also scored on the
views that were not inputs (PSNR / SSIM of its renders at the model resolution) and ``--out`` gets ``e2e.png``:
per held-out view the ground truth, the ply render and, with ``--inputs-only-too``, the render of Gaussians fitted
to the input views alone (the no-diffusion reference, same fitting settings).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cameo.cameras import center_crop_with_intrinsics, resize_with_intrinsics
from cameo.data.demo import make_demo_scenes
from cameo.eval.metrics import psnr, ssim
from cameo.model import build_codec, build_model, get_spec
from cameo.model_folder import CameoModel, ModelConfig, default_model_dir
from cameo.sampling import default_training_schedule
from cameo.scene import load_scene
from cameo.train.config import load_config
from recon.fit import fit_gaussians
from recon.pipeline import ReconOptions, fit_config, run_reconstruction, view_weights
from recon.splats import render


def random_demo_model(folder: Path) -> Path:
    """Untrained UNet of the shipped demo-cpu training config (64 px, F = 4), with an untrained small autoencoder
    when its preset denoises latents."""
    torch.manual_seed(0)
    cfg = load_config("demo-cpu")
    spec = get_spec(cfg.model.preset)
    model = build_model(spec)
    config = ModelConfig.for_unet(model.config, cfg.data.resolution, cfg.data.num_views)
    schedule = default_training_schedule(model.config.prediction_type)
    return CameoModel(model, build_codec(spec), schedule, config).save_pretrained(folder)


def main() -> None:
    d = ReconOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="exported model folder (default: bundled, else random)")
    parser.add_argument("--kind", default="object", help="demo scene kind (object or room)")
    parser.add_argument("--scene", type=Path, help="scene.json with gt/ next to it (default: a new demo scene)")
    parser.add_argument("--inputs-only-too", action="store_true", help="also fit the inputs alone and score that")
    parser.add_argument("--generated-weight", type=float, default=d.generated_weight,
                        help="loss weight of a generated view (relative to an input view) in the main fit")
    parser.add_argument("--also-generated-weights", type=float, nargs="*", default=[], metavar="W",
                        help="with --scene: also fit the same generated views with these generated-view weights "
                             "and score each")
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
    scene_file = args.scene or make_demo_scenes(out / "demo", count=1, kinds=(args.kind,), num_inputs=args.inputs,
                                                resolution=args.resolution)[0]
    start = time.perf_counter()
    pretrained = CameoModel.from_pretrained(checkpoint, args.device)
    load_s = time.perf_counter() - start
    options = ReconOptions(num_views=args.views, steps=args.steps, fit_iterations=args.fit_iterations,
                           fit_points=args.fit_points, generated_weight=args.generated_weight,
                           checkpoint=checkpoint, device=args.device)
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
    if (Path(scene_file).parent / "gt" / "cameras.json").is_file():
        score_against_ground_truth(Path(scene_file), result, options, pretrained, out, args.inputs_only_too,
                                   args.also_generated_weights)


def held_out_views(scene_file: Path, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Ground-truth views of a demo scene that were not inputs, at the model resolution: images, K, c2w, indices."""
    gt = scene_file.parent / "gt"
    cams = json.loads((gt / "cameras.json").read_text())
    inputs = {f["image"] for f in json.loads(scene_file.read_text())["frames"]}
    keep = [i for i in range(len(cams["K"])) if f"input_{i:02d}.png" not in inputs]
    images = torch.stack([torch.from_numpy(np.array(Image.open(gt / f"view_{i:02d}.png").convert("RGB")))
                          for i in keep]).permute(0, 3, 1, 2).float() / 255
    K = torch.tensor(cams["K"])[keep]
    c2w = torch.tensor(cams["c2w"])[keep]
    scale = size / min(images.shape[-2:])
    images, K = resize_with_intrinsics(images, K, (round(images.shape[-2] * scale), round(images.shape[-1] * scale)))
    images, K = center_crop_with_intrinsics(images, K, (size, size))
    return images.clamp(0, 1), K, c2w, keep


def score_against_ground_truth(scene_file: Path, result, options: ReconOptions, pretrained, out: Path,
                               inputs_only_too: bool, other_weights: list[float]) -> None:
    """PSNR / SSIM of the ply's renders at the held-out ground-truth cameras; a picture of them. ``other_weights``:
    generated-view weights to refit the same views with, for comparison."""
    size = pretrained.image_size
    images, K, c2w, keep = held_out_views(scene_file, size)
    rows = {f"inputs + generated views (weight {options.generated_weight:g})":
            render(result.splats, K, c2w, size, size)}
    for weight in other_weights:
        splats = fit_gaussians(result.images, result.K, result.c2w, fit_config(options), show_progress=True,
                               view_weights=view_weights(len(result.c2w), result.input_indices, weight))
        rows[f"inputs + generated views (weight {weight:g})"] = render(splats, K, c2w, size, size)
    if inputs_only_too:
        alone = run_reconstruction(load_scene(scene_file), out / "inputs_only.ply",
                                   ReconOptions(**{**vars(options), "generate": False, "inputs_only_size": size}))
        rows["input views only"] = render(alone.splats, K, c2w, size, size)
    print(f"\nheld-out ground-truth views {keep} of {scene_file} at {size}px\n\n| Gaussians fitted to | PSNR | SSIM |")
    print("|---|---|---|")
    for name, renders in rows.items():
        print(f"| {name} | {psnr(renders, images).mean():.2f} | {ssim(renders, images).mean():.3f} |")
    strips = [torch.cat(list(images), -1)] + [torch.cat(list(r), -1) for r in rows.values()]
    grid = (torch.cat(strips, -2).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(out / "e2e.png")
    print(f"\npicture (rows: ground truth, {', '.join(rows)}): {out / 'e2e.png'}")


if __name__ == "__main__":
    main()
