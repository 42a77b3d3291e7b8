"""``cameo-recon scene.json --out splat.ply``: few-view 3D reconstruction from the command line.

Thin argparse front end over :func:`recon.pipeline.run_reconstruction`: reads the scene (``scene.json``, a
nerfstudio ``transforms.json``, a COLMAP sparse model folder or an LLFF ``poses_bounds.npy``), runs the pipeline with progress bars, prints per-stage timings, optionally opens
the viser viewer. Exit codes: 0 success, 2 bad input or options (one line on stderr naming file and field, nothing
written), 1 any other failure (no traceback unless ``--debug``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from cameo.model_folder import bundled_model_missing, default_model_dir
from cameo.scene import SCENE_FORMAT_HELP, Scene, SceneError, load_scene
from recon.pipeline import (
    ONE_VIEW_KINDS, TWO_VIEW_MODES, ReconError, ReconOptions, ReconResult,
    run_reconstruction,
)

PROG = "cameo-recon"
CAMERA_HELP = """\
Camera convention: OpenCV camera-to-world (x right, y down, z forward into the scene), pixel intrinsics with the
image's top-left corner at (0, 0). The ply comes out in the world frame and units of the input cameras.
"""
MODEL_HELP = """\
Model: --checkpoint is a folder exported by cameo-train (unet/, scheduler/, vae/ or autoencoder/, train_config.yaml).
Default: $CAMEO_MODEL, else the bundled assets/model/ of the source checkout / editable install. Make one with
`cameo-train --config demo-cpu` (exports runs/demo-cpu/model).

Outputs: the ply (written last, atomically: absent if any stage fails) and a work folder (default
<ply stem>_views/ next to it) with frames/NNNN.png (inputs at their fitting size + generated views, path order),
transforms.json (nerfstudio, e.g. for `ns-train splatfacto --data <work folder>`), views.json (input frames and
path cameras, read by cameo-view), flythrough.mp4 (the Gaussians along the path at the inputs' size) and
generated.mp4 (the generated views).
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``cameo-recon`` argument parser (its --help documents the input format and conventions)."""
    d = ReconOptions()
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reconstruct 3D Gaussians (.ply) from 1-2 posed images: a multi-view diffusion model generates "
                    "views along a camera path, then Gaussians are fitted to inputs + generated views.",
        epilog=f"{SCENE_FORMAT_HELP}\n{CAMERA_HELP}\n{MODEL_HELP}",
    )
    parser.add_argument("scene", type=Path,
                        help="scene.json (format below), a nerfstudio transforms.json, a COLMAP sparse model folder "
                             "(cameras + images .txt or .bin, e.g. sparse/0) or an LLFF poses_bounds.npy")
    parser.add_argument("--out", type=Path, required=True, help="output .ply (standard 3D Gaussian splatting)")
    parser.add_argument("--frames", type=int, nargs="+", metavar="I",
                        help="nerfstudio / COLMAP / LLFF input: indices of the 1 or 2 frames to use, in file order "
                             "(COLMAP: images sorted by name), e.g. --frames 0 12")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="COLMAP / LLFF input: the image folder (default: COLMAP <sparse>/../images or "
                             "<sparse>/../../images; LLFF images/ next to poses_bounds.npy, e.g. --images "
                             "<scene>/images_4 for the downsampled copies)")
    gen = parser.add_argument_group("view generation")
    gen.add_argument("--views", type=int, default=d.num_views,
                     help="views to generate along the path (default: %(default)s)")
    gen.add_argument("--steps", type=int, default=d.steps, help="DDIM steps (default: %(default)s)")
    gen.add_argument("--cfg", type=float, default=d.cfg, help="classifier-free guidance scale (default: %(default)s)")
    gen.add_argument("--anchor", type=float, default=d.anchor,
                     help="pull generated views toward the inputs' pixels warped through their depth where those "
                          "land, 0 (off) to 1 (kept as warped) (default: %(default)s)")
    gen.add_argument("--anchor-until", type=float, default=d.anchor_until,
                     help="fraction of the DDIM steps that are anchored (default: %(default)s)")
    gen.add_argument("--stop", type=float, default=d.stop,
                     help="fraction of the DDIM steps run, the last giving its clean estimate; 1 runs the full "
                          "sampler (default: %(default)s)")
    gen.add_argument("--draws", type=int, default=d.draws,
                     help="samples averaged per generated view, each from its own noise; each costs one generation "
                          "(default: %(default)s)")
    gen.add_argument("--no-depth-net", dest="depth_net", action="store_false",
                     help="photos without depth (one photo, or a pair stereo cannot match) get the proxy plane "
                          "instead of the model folder's one-photo depth network (which knows the procedural "
                          "training scenes only)")
    gen.add_argument("--seed", type=int, default=d.seed,
                     help="seed of diffusion noise and fitting (default: %(default)s)")
    gen.add_argument("--path-mode", default=d.path_mode, choices=sorted(set(TWO_VIEW_MODES + ONE_VIEW_KINDS)),
                     help="2 views: auto, orbit or linear; 1 view: auto (=circle), circle, orbit, forward or "
                          "sideways (default: %(default)s)")
    gen.add_argument("--path-size", type=float, default=d.path_size,
                     help="1 view: motion relative to the look-at depth (default: %(default)s)")
    gen.add_argument("--checkpoint", type=Path, help="exported model folder (default: bundled assets/model)")
    fit = parser.add_argument_group("Gaussian fitting")
    fit.add_argument("--fit-iterations", type=int, default=d.fit_iterations,
                     help="optimisation steps (default: %(default)s)")
    fit.add_argument("--fit-points", type=int, default=d.fit_points,
                     help="initial Gaussians when the inputs give no point cloud (default: %(default)s)")
    fit.add_argument("--max-gaussians", type=int, default=d.fit_max_gaussians,
                     help="most Gaussians kept: the inputs' point cloud is subsampled to it and densification stops "
                          "there (default: %(default)s)")
    fit.add_argument("--fit-patch", type=int, default=d.fit_patch,
                     help="views larger than this are fitted through random patches of this size; the default fits "
                          "whole inputs of the default --input-max-side, which re-renders the photos faithfully; 96 "
                          "fits 2-3x faster (default: %(default)s)")
    fit.add_argument("--input-max-side", type=int, default=d.input_max_side,
                     help="input photos are fitted at their own aspect ratio and field of view, the shorter side "
                          "resized to at most this many pixels (the fly-through too; default: %(default)s)")
    fit.add_argument("--distance-falloff", type=float, default=d.distance_falloff,
                     help="CAT3D trust: a generated view's weight falls as exp(-b s^2) with its distance s to the "
                          "nearest input camera (cameras' radius = 1), b rising from 0 to this (default: "
                          "%(default)s)")
    fit.add_argument("--lpips-weight", type=float, default=d.lpips_weight,
                     help="LPIPS (AlexNet) weight in the fitting loss; > 0 needs `cameo-eval install-lpips` once "
                          "(default: %(default)s, L1 + SSIM only: on both demo scenes 0.1 fitted worse)")
    fit.add_argument("--generated-weight", type=float, default=d.generated_weight,
                     help="loss weight of a generated view relative to an input view; below 1 trusts the inputs "
                          "more (default: %(default)s)")
    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: %(default)s")
    run.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    run.add_argument("--workdir", type=Path,
                     help="folder for frames, transforms.json, video (default: <ply stem>_views)")
    run.add_argument("--no-video", action="store_true", help="skip flythrough.mp4")
    run.add_argument("--inputs-only", action="store_true",
                     help="no view generation: fit Gaussians to the input views alone (also what runs, with a "
                     "notice, while no model is bundled and no --checkpoint is given)")
    run.add_argument("--view", action="store_true", help="open the viser viewer on the result (Ctrl-C to stop)")
    run.add_argument("--port", type=int, default=8080, help="viewer port (default: %(default)s)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--debug", action="store_true", help="show the traceback of unexpected errors")
    return parser


def _is_nerfstudio(path: Path) -> bool:
    """A JSON object with ``frames`` and no ``version``: nerfstudio's transforms.json, not our scene.json."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # load_scene reports the problem with the file and field
    return isinstance(data, dict) and "frames" in data and "version" not in data


def load_input(path: Path, frames: Sequence[int] | None, images: Path | None = None) -> Scene:
    """The scene from ``scene.json``, or from ``frames`` of a nerfstudio ``transforms.json``, a COLMAP sparse model
    folder or an LLFF ``poses_bounds.npy`` (``images``: their image folder, default next to the cameras)."""
    if path.is_dir() or path.suffix.lower() == ".npy":
        from cameo.importers import import_colmap, import_llff

        return (import_colmap if path.is_dir() else import_llff)(path, frames, images)
    if images is not None:
        raise SceneError(path, "--images", "only for a COLMAP sparse model folder or an LLFF poses_bounds.npy")
    if _is_nerfstudio(path):
        from cameo.importers import import_nerfstudio

        return import_nerfstudio(path, frames)
    if frames is not None:
        raise SceneError(path, "frames", "--frames selects frames of a nerfstudio transforms.json, a COLMAP model "
                                         "or an LLFF poses_bounds.npy; this is a scene.json")
    return load_scene(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cameo-recon``; returns the exit code."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        if args.out.suffix.lower() != ".ply":
            raise SceneError(args.out, "--out", "the output must be a .ply file")
        scene = load_input(args.scene, args.frames, args.images)
        return _run(args, scene, start)
    except (SceneError, ReconError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI turns any failure into one line unless --debug
        if args.debug:
            raise
        print(f"{PROG}: failed: {type(err).__name__}: {err} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, scene: Scene, start: float) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    options = ReconOptions(
        num_views=args.views, steps=args.steps, cfg=args.cfg, anchor=args.anchor,
        anchor_until=args.anchor_until, stop=args.stop, draws=args.draws, depth_net=args.depth_net, seed=args.seed,
        fit_iterations=args.fit_iterations,
        fit_points=args.fit_points, fit_max_gaussians=args.max_gaussians, fit_patch=args.fit_patch,
        input_max_side=args.input_max_side,
        distance_falloff=args.distance_falloff, lpips_weight=args.lpips_weight, generated_weight=args.generated_weight,
        path_mode=args.path_mode, path_size=args.path_size, checkpoint=args.checkpoint, device=args.device, write_video=not args.no_video,
        show_progress=not args.quiet, generate=not (args.inputs_only or _no_model(args)),
    )
    announced: set[str] = set()

    def progress(stage: str, fraction: float) -> None:
        if stage not in announced and not args.quiet:
            announced.add(stage)
            print(f"[{len(announced)}/{4 if options.generate else 2}] {stage}", file=sys.stderr, flush=True)

    result = run_reconstruction(scene, args.out, options, args.workdir, progress)
    rows = "\n".join(f"  {name:<9}{seconds:9.2f} s" for name, seconds in result.stage_seconds.items())
    print(f"stages:\n{rows}\n  {'total':<9}{time.perf_counter() - start:9.2f} s")
    print(f"wrote {result.ply} ({len(result.splats)} Gaussians); views, transforms.json"
          f"{', flythrough.mp4' if result.video else ''} in {result.workdir}")
    if args.view:
        _view(result, args.port)
    return 0


def _no_model(args: argparse.Namespace) -> bool:
    """No --checkpoint and no bundled model yet: say so, and run the stages that exist (fitting the inputs)."""
    if args.checkpoint is not None or args.inputs_only or not bundled_model_missing():
        return False
    print(f"{PROG}: note: no trained model is bundled yet ({default_model_dir()} is missing) and no --checkpoint "
          "was given: skipping view generation and fitting Gaussians to the input views only. For the full "
          "pipeline pass --checkpoint PATH (a folder exported by `cameo-train`, e.g. runs/demo-cpu/model).",
          file=sys.stderr)
    return True


def _view(result: ReconResult, port: int) -> None:
    """Serve the result in viser (input and path cameras as frustums, opening at the first input) until Ctrl-C."""
    from recon.viewer import launch_viewer, result_cameras

    session = launch_viewer(result.splats, result_cameras(result), port=port)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping viewer", flush=True)
    finally:
        session.stop()


if __name__ == "__main__":
    sys.exit(main())
