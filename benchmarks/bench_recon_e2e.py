"""Time the whole reconstruction (what ``cameo-recon`` runs) on a procedural demo scene, per stage, and score it.

Defaults are the command's defaults. The model is ``--checkpoint``, else the bundled ``assets/model``, else an
untrained ``demo-cpu`` model written to a temp folder: the table then says ``random weights`` (timings are still
those of the real architecture; the images are noise).

    python benchmarks/bench_recon_e2e.py                          # defaults
    python benchmarks/bench_recon_e2e.py --views 14 --steps 10 --fit-iterations 100
    python benchmarks/bench_recon_e2e.py --scene assets/demo/object_00/scene.json --inputs-only-too --out out/e2e
    python benchmarks/bench_recon_e2e.py --dtu 22 25 23 24 --inputs-only-too --out out/e2e-dtu

With ``--scene`` (a demo scene: its ``gt/`` holds every view of the capture) the ply is also scored on the views
that were not inputs: PSNR / SSIM at the model resolution (resized + centre-cropped, the numbers before the fit kept
the inputs' resolution) and at the inputs' fitting resolution (whole field of view), and the input views' re-render
PSNR at their fitting resolution. ``--inputs-only-too``, ``--also-generated-weights``, ``--also-falloffs`` and
``--also-fit`` (other FitConfig values) refit the same views (no new generation) and score each the same way; ``--out`` gets ``e2e.png`` (per held-out view the
ground truth and each arm's render). ``--cloud gt`` initialises from the demo scene's ground-truth depth
(``gt/depth.npy``, written by ``cameo-data demo``) instead of stereo, to separate the fit from stereo errors;
``--cloud matches`` keeps stereo's matches only (no depth interpolated into plain holes nor extrapolated beyond
the other view's frame).
``--dtu A B H...`` writes the same kind of scene from DTU scan24 (384 px crops): inputs A and B, held-out views H.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from cameo.cameras import center_crop_with_intrinsics, resize_with_intrinsics, unproject_depth
from cameo.data.demo import make_demo_scenes
from cameo.eval.metrics import ImageMetrics, psnr, ssim
from cameo.geometry.cloud import scene_point_cloud
from cameo.model import build_codec, build_model, get_spec
from cameo.model_folder import CameoModel, ModelConfig, default_model_dir
from cameo.sampling import default_training_schedule
from cameo.scene import Scene, load_scene, make_frames, save_scene
from cameo.train.config import load_config
from recon import pipeline
from recon.fit import FitConfig, fit_gaussians
from recon.pipeline import ReconOptions, fit_config, fit_resolution, run_reconstruction, view_weights
from recon.splats import Splats, render

DTU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dtu_scan24"


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
    parser.add_argument("--dtu", type=int, nargs="+", metavar="I",
                        help="instead of --scene: DTU scan24 views A B (inputs) and held-out views to score")
    parser.add_argument("--inputs-only-too", action="store_true", help="also fit the inputs alone and score that")
    parser.add_argument("--generated-weight", type=float, default=d.generated_weight,
                        help="loss weight of a generated view (relative to an input view) in the main fit")
    parser.add_argument("--also-generated-weights", type=float, nargs="*", default=[], metavar="W",
                        help="with --scene: also fit the same generated views with these generated-view weights "
                             "and score each")
    parser.add_argument("--inputs", type=int, default=2, choices=(1, 2), help="input views of the demo scene")
    parser.add_argument("--resolution", type=int, default=128, help="demo scene image size")
    parser.add_argument("--cloud", choices=("stereo", "matches", "gt", "none"), default="stereo",
                        help="the inputs' point cloud (prior and fit start): the pipeline's stereo, its matches only "
                             "(no plain holes filled), the demo scene's gt depth, or none")
    parser.add_argument("--also-falloffs", type=float, nargs="*", default=[], metavar="B",
                        help="with --scene: also refit with these CAT3D distance falloffs and score each")
    parser.add_argument("--also-fit", nargs="*", default=[], metavar="FIELD=VALUE[,FIELD=VALUE]",
                        help="refit the same views with these recon.fit.FitConfig fields changed, one arm each "
                             "(e.g. iterations=400 patch=128,max_gaussians=40000)")
    parser.add_argument("--cfg", type=float, default=d.cfg)
    parser.add_argument("--anchor", type=float, default=d.anchor)
    parser.add_argument("--anchor-until", type=float, default=d.anchor_until)
    parser.add_argument("--stop", type=float, default=d.stop)
    parser.add_argument("--draws", type=int, default=d.draws)
    parser.add_argument("--no-depth-net", dest="depth_net", action="store_false",
                        help="photos without depth get the proxy plane, not the model folder's depth network")
    parser.add_argument("--distance-falloff", type=float, default=d.distance_falloff)
    parser.add_argument("--lpips-weight", type=float, default=d.lpips_weight)
    parser.add_argument("--input-max-side", type=int, default=d.input_max_side)
    parser.add_argument("--max-gaussians", type=int, default=d.fit_max_gaussians)
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
    if args.dtu:
        args.scene = dtu_scene(args.dtu, out / "dtu")
    scene_file = args.scene or make_demo_scenes(out / "demo", count=1, kinds=(args.kind,), num_inputs=args.inputs,
                                                resolution=args.resolution)[0]
    start = time.perf_counter()
    pretrained = CameoModel.from_pretrained(checkpoint, args.device)
    load_s = time.perf_counter() - start
    options = ReconOptions(num_views=args.views, steps=args.steps, cfg=args.cfg, anchor=args.anchor,
                           anchor_until=args.anchor_until, stop=args.stop, draws=args.draws,
                           depth_net=args.depth_net, fit_iterations=args.fit_iterations,
                           fit_points=args.fit_points, generated_weight=args.generated_weight,
                           distance_falloff=args.distance_falloff, lpips_weight=args.lpips_weight,
                           input_max_side=args.input_max_side, fit_max_gaussians=args.max_gaussians,
                           checkpoint=checkpoint, device=args.device)
    scene = load_scene(scene_file)
    if args.cloud != "stereo":
        cloud = {"gt": lambda: gt_depth_cloud(Path(scene_file)), "none": lambda: None,
                 "matches": lambda: scene_point_cloud(scene.load_images(), scene.K, scene.c2w, fill_holes=False)
                 }[args.cloud]()
        pipeline.input_point_cloud = lambda images, K, c2w, depths=None: cloud  # the fit's start, for every arm
    result = run_reconstruction(scene, out / "splat.ply", options, pretrained=pretrained)
    total = time.perf_counter() - start

    print(f"\nmodel: {checkpoint} ({weights}); image {pretrained.image_size}px, F = {pretrained.frames_per_group}")
    print(f"scene: {scene_file}; {args.views} views, {args.steps} steps, CFG {args.cfg:g}, anchor {args.anchor:g} "
          f"until {args.anchor_until:g}, stop {args.stop:g}, {args.draws} draw(s), {args.fit_iterations} fit "
          f"iterations, cloud {args.cloud}, {len(result.splats)} Gaussians, inputs fitted at "
          f"{tuple(result.images[result.input_indices[0]].shape[-2:])}")
    print(f"machine: {platform.processor() or platform.machine()}, {args.device}, torch threads {args.threads}\n")
    print("| stage | seconds |\n|---|---|")
    print(f"| load model | {load_s:.2f} |")
    for name, seconds in result.stage_seconds.items():
        if name != "load":
            print(f"| {name} | {seconds:.2f} |")
    print(f"| **total** | **{total:.2f}** |")
    if (Path(scene_file).parent / "gt" / "cameras.json").is_file():
        arms = {f"inputs + generated views (weight {args.generated_weight:g}, falloff {args.distance_falloff:g})":
                (result.splats, result.stage_seconds["fit"])}
        arms.update(refits(scene, result, options, args))
        score_against_ground_truth(Path(scene_file), result, arms, pretrained.image_size, out)


def dtu_scene(views: list[int], folder: Path) -> Path:
    """A demo-style scene of DTU scan24 (inputs ``views[:2]``, the rest held out in ``gt/``); its scene.json."""
    from bench_fit_dtu import load_dtu  # a sibling script (benchmarks/ is the script's import path)

    if len(views) < 3:
        raise SystemExit("--dtu needs two input views and at least one held-out view")
    images, K, c2w = load_dtu(DTU, 384)
    order = [views[0], *views[2:], views[1]]  # gt views; the inputs are the first and the last
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    for j, v in enumerate(order):
        Image.fromarray((images[v].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
            folder / "gt" / f"view_{j:02d}.png")
    (folder / "gt" / "cameras.json").write_text(json.dumps(
        {"convention": "opencv", "K": K[order].tolist(), "c2w": c2w[order].tolist(), "scene_id": f"dtu_scan24 {views}"}))
    inputs = []
    for j in (0, len(order) - 1):
        inputs.append(folder / f"input_{j:02d}.png")
        Image.open(folder / "gt" / f"view_{j:02d}.png").save(inputs[-1])
    picks = [0, len(order) - 1]
    save_scene(Scene(make_frames(inputs, K[order][picks].double().numpy(), c2w[order][picks].double().numpy(),
                                 [(384, 384)] * 2)), folder / "scene.json")
    return folder / "scene.json"


def held_out_views(scene_file: Path, size: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Ground-truth views of a demo scene that were not inputs, at the model resolution (resized + centre-cropped;
    ``size`` None: as stored): images, K, c2w, indices."""
    gt = scene_file.parent / "gt"
    cams = json.loads((gt / "cameras.json").read_text())
    inputs = {f["image"] for f in json.loads(scene_file.read_text())["frames"]}
    keep = [i for i in range(len(cams["K"])) if f"input_{i:02d}.png" not in inputs]
    images = torch.stack([torch.from_numpy(np.array(Image.open(gt / f"view_{i:02d}.png").convert("RGB")))
                          for i in keep]).permute(0, 3, 1, 2).float() / 255
    K = torch.tensor(cams["K"])[keep]
    c2w = torch.tensor(cams["c2w"])[keep]
    if size is None:
        return images, K, c2w, keep
    scale = size / min(images.shape[-2:])
    images, K = resize_with_intrinsics(images, K, (round(images.shape[-2] * scale), round(images.shape[-1] * scale)))
    images, K = center_crop_with_intrinsics(images, K, (size, size))
    return images.clamp(0, 1), K, c2w, keep


def gt_depth_cloud(scene_file: Path) -> SimpleNamespace:
    """The input views' ground-truth depth (``gt/depth.npy``) unprojected: points, colours, footprint radii."""
    gt = scene_file.parent / "gt"
    if not (gt / "depth.npy").is_file():
        raise SystemExit(f"{gt / 'depth.npy'}: missing (write the scene with `cameo-data demo`)")
    cams = json.loads((gt / "cameras.json").read_text())
    picks = [int(f["image"][6:8]) for f in json.loads(scene_file.read_text())["frames"]]  # input_NN.png
    depth = torch.from_numpy(np.load(gt / "depth.npy")[picks]).float()
    K, c2w = torch.tensor(cams["K"])[picks].float(), torch.tensor(cams["c2w"])[picks].float()
    rgb = torch.stack([torch.from_numpy(np.array(Image.open(gt / f"view_{i:02d}.png").convert("RGB"))) for i in picks])
    valid = torch.isfinite(depth)
    return SimpleNamespace(points=unproject_depth(depth, K, c2w)[valid], colors=rgb[valid].float() / 255,
                           sizes=(0.5 * depth / K[:, 0, 0, None, None])[valid])  # half a pixel, as stereo


def refits(scene, result, options: ReconOptions, args: argparse.Namespace) -> dict[str, tuple[Splats, float]]:
    """The same views refitted (inputs alone, other generated-view weights, distance falloffs, fit settings): per
    arm the splats and the fit's seconds."""
    cloud = pipeline.input_point_cloud(scene.load_images(), scene.K, scene.c2w, scene.load_depths())
    observed = torch.zeros(len(result.images), dtype=torch.bool)
    observed[list(result.input_indices)] = True

    def fit(weight: float, falloff: float, only_inputs: bool = False, **changes) -> tuple[Splats, float]:
        idx = list(result.input_indices) if only_inputs else list(range(len(result.images)))
        cfg = replace(fit_config(options), distance_falloff=falloff, **changes)
        start = time.perf_counter()
        splats = fit_gaussians([result.images[i] for i in idx], result.K[idx], result.c2w[idx], cfg, cloud=cloud,
                               observed=observed[idx], show_progress=True,
                               view_weights=view_weights(len(result.c2w), result.input_indices, weight)[idx])
        return splats, time.perf_counter() - start

    arms = {}
    for weight in args.also_generated_weights:
        arms[f"inputs + generated views (weight {weight:g}, falloff {args.distance_falloff:g})"] = \
            fit(weight, args.distance_falloff)
    for falloff in args.also_falloffs:
        arms[f"inputs + generated views (weight {args.generated_weight:g}, falloff {falloff:g})"] = \
            fit(args.generated_weight, falloff)
    for spec in args.also_fit:
        arms[f"inputs + generated views ({spec})"] = fit(args.generated_weight, args.distance_falloff,
                                                        **fit_changes(spec))
    if args.inputs_only_too:
        arms["input views only"] = fit(1.0, 0.0, only_inputs=True)
    return arms


def fit_changes(spec: str) -> dict:
    """``"iterations=400,patch=128"`` -> FitConfig field values, typed like the fields' defaults."""
    defaults = FitConfig()
    changes = {}
    for item in spec.split(","):
        name, _, value = item.partition("=")
        if not hasattr(defaults, name):
            raise SystemExit(f"--also-fit: FitConfig has no field {name!r}")
        changes[name] = type(getattr(defaults, name))(value)
    return changes


def held_out_full(scene_file: Path, max_side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Held-out ground-truth views at the inputs' fitting size (whole field of view): images, K, c2w."""
    images, K, c2w, _ = held_out_views(scene_file, None)
    images, K = fit_resolution(images, K.float(), max_side)
    return images, K, c2w


def score_against_ground_truth(scene_file: Path, result, arms: dict[str, tuple[Splats, float]], size: int,
                               out: Path) -> None:
    """PSNR / SSIM of each arm's renders at the held-out ground-truth cameras (model resolution, and full field of
    view at the inputs' fitting size with LPIPS too), the input views' re-render PSNR; a picture of the held-out
    views."""
    images, K, c2w, keep = held_out_views(scene_file, size)
    full, K_full, _ = held_out_full(scene_file, min(result.images[result.input_indices[0]].shape[-2:]))
    idx = list(result.input_indices)
    inputs = [result.images[i] for i in idx]
    print(f"\nheld-out ground-truth views {keep} of {scene_file}: at {size}px (model resolution, centre crop) and at "
          f"{tuple(full.shape[-2:])} (fitting resolution)\n")
    lpips = ImageMetrics(lpips_net="vgg").lpips
    print(f"| Gaussians fitted to | Gaussians | fit s | held-out PSNR / SSIM ({size}px) | held-out PSNR / SSIM / "
          "LPIPS-VGG (full) | input re-render PSNR |\n|---|---|---|---|---|---|")
    rows = {}
    for name, (splats, seconds) in arms.items():
        rows[name] = render(splats, K, c2w, size, size)
        wide = render(splats, K_full, c2w, full.shape[-1], full.shape[-2])
        again = render(splats, result.K[idx], result.c2w[idx], inputs[0].shape[-1], inputs[0].shape[-2])
        print(f"| {name} | {len(splats)} | {seconds:.0f} | {psnr(rows[name], images).mean():.2f} / "
              f"{ssim(rows[name], images).mean():.3f} | {psnr(wide, full).mean():.2f} / {ssim(wide, full).mean():.3f} / "
              f"{lpips(wide, full).mean():.3f} | "
              f"{psnr(again, torch.stack(inputs)).mean():.2f} |")
    strips = [torch.cat(list(images), -1)] + [torch.cat(list(r), -1) for r in rows.values()]
    grid = (torch.cat(strips, -2).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(out / "e2e.png")
    print(f"\npicture (rows: ground truth, {', '.join(rows)}): {out / 'e2e.png'}")


if __name__ == "__main__":
    main()
