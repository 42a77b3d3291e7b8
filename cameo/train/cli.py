"""cameo-train: train the multi-view diffusion model (baseline or CAMEO), the small latent autoencoder, or the
one-photo depth network.

Examples:
  cameo-train --config demo-cpu                         # the bundled model (pixel space: no autoencoder)
  cameo-train --config bench-cameo                      # latent presets: autoencoder first if missing, then the UNet
  cameo-train autoencoder --config bench-cameo          # only the codec stage
  cameo-train depth --config demo-cpu-proxy             # the one-photo depth net -> runs/demo-cpu-proxy/depth
  cameo-train --config bench-baseline --optim.max-steps 200 --output-dir runs/try
  cameo-train --config demo-cpu --resume                # continue from the newest complete checkpoint
  cameo-train --config demo-cpu --model.preset tiny --model.init-from None --data.resolution 16 \
      --data.source dtu --data.path DTU_SCAN --data.val-scenes 0 --data.pointmaps stereo   # a real capture, CAMEO on
  cameo-train export --config demo-cpu --out assets/model --half   # export the newest checkpoint (fp16 weights)
  cameo-train reproduce --config demo-cpu-proxy --out assets/model --half   # every stage of the bundled model
  accelerate launch --num_processes 2 -m cameo.train.cli --config sd21-re10k --model.pretrained /models/sd21
"""

from __future__ import annotations

import argparse
import sys

import tyro

from cameo.train.config import ConfigError, TrainConfig, load_config, shipped_configs


STAGES = ("train", "autoencoder", "depth", "export", "reproduce")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cameo-train",
        description=__doc__.split("\n\n")[0] + "\n\nstages: train (default) trains the diffusion model, after "
        "training the small autoencoder when a latent preset lacks it; autoencoder trains only that codec; depth "
        "trains the one-photo depth network (<output_dir>/depth, carried by exports as depth/); export copies the "
        "newest complete checkpoint of the run into a standalone model folder; reproduce trains, in order, every "
        "config the given one warm-starts from (its model.init_from is another config's <output_dir>/model) and "
        "then the config itself, each unless already trained (an interrupted one resumes), then its depth network, "
        "and exports it (--out, --half).",
        epilog="Every other option overrides a config field, e.g. --optim.lr 1e-4 --cameo.no-enabled "
        "--data.path DIR. `cameo-train --config NAME --help` lists them all with the config's values. "
        "Real captures (--data.source dtu|nerfstudio|colmap|realestate10k|co3d; lens distortion is undistorted on "
        "load): --data.pointmaps names where CAMEO's correspondences come from: dataset (its own depth), stereo (the "
        "project's two-view stereo with each frame's best posed neighbour, cached in --data.pointmap-cache, default "
        "<output_dir>/pointmaps), vggt (--data.vggt-checkpoint, a local VGGT-1B model.pt) or auto (depth if the "
        "dataset has it, else stereo). "
        f"Shipped configs: {', '.join(shipped_configs())} (or a YAML path).",
        usage="cameo-train [train|autoencoder|depth|export|reproduce] --config CONFIG [--resume] [--out DIR] [--half] "
        "[--section.field VALUE ...]",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="shipped config name or path to a YAML config")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in output_dir from its newest complete checkpoint")
    parser.add_argument("--out", help="export, reproduce: the model folder to write (default: <output_dir>/model)")
    parser.add_argument("--half", action="store_true",
                        help="export, reproduce: store weights as float16 (half the size)")
    parser.add_argument("-h", "--help", action="store_true", help="show this help (with --config: all fields)")
    return parser


def parse(argv: list[str] | None = None) -> tuple[str, TrainConfig, argparse.Namespace]:
    """(stage, config with overrides applied, the stage options) from the command line."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    stage = argv.pop(0) if argv and argv[0] in STAGES else "train"
    args, rest = parser.parse_known_args(argv)
    if args.config is None:
        parser.print_help()
        raise SystemExit(0 if args.help else 2)
    base = load_config(args.config)
    if stage == "reproduce" and rest and not args.help:
        parser.error(f"reproduce trains each config of the chain as it is written; {' '.join(rest)}: change "
                     "the YAML files instead (or train a stage alone with cameo-train --config ... --resume)")
    overrides = rest + (["--help"] if args.help else [])
    cfg = tyro.cli(TrainConfig, default=base, args=overrides, prog=f"cameo-train --config {args.config}",
                   description="Config fields (defaults shown are this config's values).")
    return stage, cfg, args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cameo-train`` console script."""
    try:
        stage, cfg, args = parse(argv)
        if stage == "export":
            from cameo.train.loop import export_run

            print(f"model -> {export_run(cfg, args.out, half=args.half)}", file=sys.stderr)
            return 0
        if stage == "reproduce":
            from cameo.train.chain import StageFailed, reproduce

            try:
                print(f"model -> {reproduce(args.config, args.out, half=args.half)}", file=sys.stderr)
            except StageFailed as error:  # the stage printed its own error above
                print(f"cameo-train: error: {error}", file=sys.stderr)
                return 2
            return 0
        from accelerate import PartialState

        if stage == "depth":
            from cameo.train.data import ensure_data
            from cameo.train.mono_depth import train_depth_net

            state = PartialState(cpu=not _cuda())
            ensure_data(cfg.data, state)
            print(f"depth net -> {train_depth_net(cfg, state, resume=args.resume)}", file=sys.stderr)
            return 0

        from cameo.train.autoencoder import train_autoencoder
        from cameo.train.assemble import build_components
        from cameo.train.codec_setup import autoencoder_dir
        from cameo.train.model_setup import model_spec
        from cameo.train.validation import psnr_validation
        from cameo.train.data import ensure_data
        from cameo.train.loop import train

        model_spec(cfg)  # fail fast on model settings (missing --model.pretrained, bad resolution or layer)
        folder = autoencoder_dir(cfg)
        if stage == "autoencoder" or (folder is not None and not (folder / "config.json").is_file()):
            # process state only (device, rank); the diffusion stage builds its Accelerator with its precision
            state = PartialState(cpu=not _cuda())
            ensure_data(cfg.data, state)  # all processes, before only the main one trains the codec
            if state.is_main_process:
                print(f"autoencoder -> {train_autoencoder(cfg, state)}", file=sys.stderr)
            state.wait_for_everyone()
            if stage == "autoencoder":
                return 0
        export = train(cfg, build_components, resume=args.resume, validate=psnr_validation)
        print(f"model -> {export}", file=sys.stderr)
        return 0
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, KeyError) as error:
        print(f"cameo-train: error: {error}", file=sys.stderr)
        return 2


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
