"""``cameo-app``: start the Gradio web demo on this machine (127.0.0.1 by default, no share link, offline)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from app.examples import DEFAULT_EXAMPLES_DIR
from app.inputs import DEFAULT_MAX_PIXELS
from recon.pipeline import ReconOptions

PROG = "cameo-app"
MAX_FILE_SIZE = "200mb"


def build_parser() -> argparse.ArgumentParser:
    """The ``cameo-app`` argument parser."""
    d = ReconOptions()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Web demo of cameo-recon: upload 1-2 posed images, get generated views, a 3D Gaussian splat "
                    "(.ply), a video and a 3D viewer. Runs offline: gradio analytics and Hugging Face telemetry "
                    "are switched off; nothing is downloaded.",
        epilog="The page lists the demo scenes of --examples (make them with `cameo-data demo assets/demo`). "
               "Runs are queued one at a time; each browser session's files are removed when it closes or after "
               "--session-ttl seconds idle.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to serve on (default: %(default)s, this machine only; 0.0.0.0 = all)")
    parser.add_argument("--port", type=int, default=7860, help="port of the page (default: %(default)s)")
    parser.add_argument("--share", action="store_true",
                        help="also open a public gradio.live link (contacts gradio's share servers; off by default)")
    parser.add_argument("--checkpoint", type=Path,
                        help="exported model folder (default: $CAMEO_MODEL, else the bundled assets/model)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: %(default)s")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--examples", type=Path, default=DEFAULT_EXAMPLES_DIR,
                        help="folder of demo scenes (<name>/scene.json) offered as examples (default: %(default)s)")
    parser.add_argument("--views", type=int, default=d.num_views,
                        help="initial 'generated views' (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=d.steps, help="initial DDIM steps (default: %(default)s)")
    parser.add_argument("--fit-iterations", type=int, default=d.fit_iterations,
                        help="initial fitting iterations (default: %(default)s)")
    parser.add_argument("--fit-points", type=int, default=d.fit_points,
                        help="initial Gaussians of the fit (default: %(default)s)")
    parser.add_argument("--max-image-mp", type=float, default=DEFAULT_MAX_PIXELS / 1e6,
                        help="reject uploaded images above this many megapixels (default: %(default)s)")
    parser.add_argument("--session-ttl", type=float, default=3600.0,
                        help="seconds an idle session keeps its files and viewer (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cameo-app``; serves until Ctrl-C."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from app.ui import AppConfig, build_app  # imports gradio (after app/__init__ switched telemetry off)

    options = ReconOptions(num_views=args.views, steps=args.steps, fit_iterations=args.fit_iterations,
                           fit_points=args.fit_points, checkpoint=args.checkpoint, device=args.device,
                           show_progress=False)
    config = AppConfig(options=options, examples_dir=args.examples, max_image_pixels=int(args.max_image_mp * 1e6),
                       session_ttl=args.session_ttl)
    cameo = build_app(config)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` / service managers: shut down cleanly, like Ctrl-C
    try:
        cameo.workspaces.start_sweeper()
        cameo.demo.queue(max_size=32).launch(
            server_name=args.host, server_port=args.port, share=args.share, allowed_paths=cameo.allowed_paths(),
            max_file_size=MAX_FILE_SIZE, ssr_mode=False,
        )
    except KeyboardInterrupt:
        pass
    except OSError as err:
        print(f"{PROG}: error: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    finally:
        cameo.close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
