"""Fit Gaussians to real DTU views and report PSNR / SSIM on held-out views.

Data: a MonoSDF-style DTU scan (``NNNNNN_rgb.png`` + ``cameras.npz``, 384x384 crops of the 1600x1200 originals,
hence the pixel transform ``A`` of its SOURCE.md). Cameras are used in DTU's raw world frame and units (mm), so the
run also checks the fitter's internal normalisation. Every ``--holdout-every``-th view (offset by half) is held out.

    python benchmarks/bench_fit_dtu.py [--data /work/shared/data/dtu_scan24] [--size 96] [--iterations 800]
    python benchmarks/bench_fit_dtu.py --pair 22 25 --held-out 23 24 --size 256 --iterations 400

``--pair A B`` fits two views only (the product's case), initialised from their stereo point cloud
(``recon.pipeline.input_point_cloud``; random without one), and scores ``--held-out`` views between them and the two
inputs' re-render.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from cameo.cameras import resize_with_intrinsics
from cameo.eval.metrics import psnr, ssim
from cameo.importers import read_cameras_npz
from recon.fit import FitConfig, fit_gaussians
from recon.pipeline import input_point_cloud
from recon.splats import export_ply, render

DTU_CROP = np.array([[0.32, 0.0, -64.0], [0.0, 0.32, 0.0], [0.0, 0.0, 1.0]])  # 1600x1200 -> crop 1200 -> 384


def load_dtu(folder: Path, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``[V,3,size,size]`` in [0,1], ``K [V,3,3]``, OpenCV ``c2w [V,4,4]`` in DTU world units."""
    files = sorted(folder.glob("*_rgb.png"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *_rgb.png images")
    images = torch.stack([torch.from_numpy(iio.imread(f)[..., :3].copy()) for f in files]).permute(0, 3, 1, 2)
    K, c2w = read_cameras_npz(folder / "cameras.npz", range(len(files)), DTU_CROP, use_scale_mat=False)
    images, K = resize_with_intrinsics(images.float() / 255.0, K.float(), (size, size))
    return images.clamp(0, 1), K, c2w.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/dtu_scan24"))
    parser.add_argument("--size", type=int, default=96, help="square resolution to fit at (pixels)")
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--points", type=int, default=20_000, help="random initial Gaussians")
    parser.add_argument("--holdout-every", type=int, default=8)
    parser.add_argument("--lpips-weight", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the fitted splats to this .ply")
    parser.add_argument("--pair", type=int, nargs=2, metavar="I", help="fit these two views only (stereo init)")
    parser.add_argument("--held-out", type=int, nargs="+", default=[], metavar="I", help="with --pair: views to score")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, K, c2w = load_dtu(args.data, args.size)
    V = images.shape[0]
    test = [i for i in range(V) if i % args.holdout_every == args.holdout_every // 2]
    train = [i for i in range(V) if i not in test]
    cloud = None
    if args.pair:
        train, test = list(args.pair), args.held_out
        cloud = input_point_cloud(images[train], K[train], c2w[train])
    cfg = FitConfig(iterations=args.iterations, num_points=args.points, lpips_weight=args.lpips_weight)
    t0 = time.perf_counter()
    splats = fit_gaussians(images[train], K[train], c2w[train], cfg, cloud=cloud)
    fit_s = time.perf_counter() - t0
    if args.out:
        export_ply(splats, args.out)
    results = {}
    for name, idx in (("train", train), ("held-out", test)):
        pred = render(splats, K[idx], c2w[idx], args.size, args.size)
        results[name] = (psnr(pred, images[idx]).mean().item(), ssim(pred, images[idx]).mean().item())
    print(f"DTU {args.data.name}: {len(train)} train / {len(test)} held-out views at {args.size}x{args.size}, "
          f"{args.iterations} iterations, {args.threads} threads, init "
          f"{'point cloud' if cloud is not None else 'random'}")
    print("| split | PSNR (dB) | SSIM (colour) | Gaussians | fit time (s) |")
    print("|---|---|---|---|---|")
    for name, (p, s) in results.items():
        print(f"| {name} | {p:.2f} | {s:.3f} | {len(splats)} | {fit_s:.0f} |")


if __name__ == "__main__":
    main()
